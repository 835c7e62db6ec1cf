"""Configuration: one typed settings object, read once from the environment and an optional
config file, validated at start, passed down (CONTRACT "Running it")."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from enrichers import IpPolicy, Placeholders, Policy
from enrichers.hygiene import DEFAULT_PLACEHOLDERS
from enrichers.regulations import Digests
from streams.state.keys import DEVICE_BUCKETS, KeySpace

CONFIG_FILE_VARIABLE: Final = "ENRICHER_CONFIG"
_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting and what it accepts."""


def _text(value: str) -> str:
    return value.strip()


def _broker(value: str) -> str:
    value = value.strip()
    if not re.match(r"^(kafka://)?[^\s:/]+:\d+(,(kafka://)?[^\s:/]+:\d+)*$", value):
        raise ValueError("expected kafka://HOST:PORT (comma-separated for several brokers)")
    return ";".join(
        part if part.startswith("kafka://") else f"kafka://{part}" for part in value.split(",")
    )


def _redis_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^(redis|rediss|unix|redis\+cluster|rediss\+cluster)://", value):
        raise ValueError(
            "expected redis://HOST:PORT/DB, rediss://..., unix://PATH, or "
            "redis+cluster://HOST:PORT[,HOST:PORT...] for Redis Cluster"
        )
    return value


def _app_id(value: str) -> str:
    value = value.strip()
    if not _APP_ID.match(value):
        raise ValueError("letters, digits, '.', '_' and '-' only (it prefixes Redis keys)")
    return value


def _topic(value: str) -> str:
    value = value.strip()
    if not re.match(r"^[A-Za-z0-9._-]{1,249}$", value):
        raise ValueError("a Kafka topic name: letters, digits, '.', '_' and '-'")
    return value


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError("a TCP port, 1-65535")
    return port


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("a whole number of at least 1")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("a number above 0")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("true or false")


def _ip_policy(value: str) -> IpPolicy:
    return IpPolicy.parse(value)


def _context_traits(value: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    if "*" in keys and len(keys) > 1:
        raise ValueError("either * (every trait) or a comma-separated list of trait keys")
    return keys


def _name_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _pattern(value: str) -> str:
    value = value.strip()
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


def _field_paths(value: str) -> tuple[str, ...]:
    paths = _name_list(value)
    for path in paths:
        if not re.match(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$", path):
            raise ValueError(f"{path!r} is not a dotted path such as traits.email")
    return paths


def _header_name(value: str) -> str:
    value = value.strip()
    if value and not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", value):
        raise ValueError("an HTTP header name such as X-Forwarded-For, or empty")
    return value


def _cookie_name(value: str) -> str:
    value = value.strip()
    if value and not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", value):
        raise ValueError("a cookie name (letters, digits and !#$%&'*+.^_`|~-), or empty")
    return value


def _record_limit(value: str) -> int:
    number = int(value)
    if number < 64 * 1024:
        raise ValueError("a number of bytes, at least 65536")
    return number


COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")


def _compression(value: str) -> str:
    value = value.strip().lower()
    if value not in COMPRESSION_TYPES:
        raise ValueError(", ".join(COMPRESSION_TYPES))
    return value


class Secret(str):
    """A secret setting's value (a password, a token): a string that never shows itself in a
    repr, a log line or a help text."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


def without_password(url: str) -> str:
    """A URL as a log line may show it: the password of its user part masked."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _secret(value: str) -> Secret:
    return Secret(value.strip())


def _secrets(value: str) -> tuple[Secret, ...]:
    return tuple(Secret(v.strip()) for v in value.replace("\n", ",").split(",") if v.strip())


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _security_protocol(value: str) -> str:
    value = value.strip().upper()
    if value not in SECURITY_PROTOCOLS:
        raise ValueError(", ".join(SECURITY_PROTOCOLS))
    return value


def _sasl_mechanism(value: str) -> str:
    value = value.strip().upper()
    if value not in SASL_MECHANISMS:
        raise ValueError(", ".join(SASL_MECHANISMS))
    return value


def _readable_file(value: str) -> str:
    value = value.strip()
    if value and not os.access(value, os.R_OK):
        raise ValueError("no readable file at that path")
    return value


def _dev_broker(value: str) -> str:
    value = value.strip().lower()
    if value not in ("tansu", "kafka"):
        raise ValueError("tansu or kafka")
    return value


def _log_format(value: str) -> str:
    value = value.strip().lower()
    if value not in ("text", "json"):
        raise ValueError("text or json")
    return value


def _setting(
    env: str, parse: Callable[[str], Any], default: Any, help: str, secret: bool = False
) -> Any:
    """One setting: its variable, parser, default and meaning. A ``secret`` one is also read
    from the file named by ``<variable>_FILE`` (a mounted secret), and never shown."""
    return field(
        default=default, metadata={"env": env, "parse": parse, "help": help, "secret": secret}
    )


@dataclass(frozen=True)
class Settings:
    broker: str = _setting(
        "ENRICHER_BROKER", _broker, "kafka://127.0.0.1:9092", "Kafka bootstrap servers"
    )
    redis_url: str = _setting(
        "ENRICHER_REDIS_URL", _redis_url, "redis://127.0.0.1:6379/0", "Redis for device state"
    )
    app_id: str = _setting(
        "ENRICHER_APP_ID", _app_id, "identity-enricher", "consumer group and Redis key prefix"
    )
    topic_raw: str = _setting("ENRICHER_TOPIC_RAW", _topic, "events.raw", "raw events in")
    topic_warehouse: str = _setting(
        "ENRICHER_TOPIC_WAREHOUSE", _topic, "events.warehouse", "every enriched message"
    )
    topic_destinations: str = _setting(
        "ENRICHER_TOPIC_DESTINATIONS",
        _topic,
        "events.destinations",
        "messages for downstream tools (no context.traits)",
    )
    topic_deadletter: str = _setting(
        "ENRICHER_TOPIC_DEADLETTER", _topic, "events.deadletter", "raw records that failed"
    )
    topic_regulations: str = _setting(
        "ENRICHER_TOPIC_REGULATIONS",
        _topic,
        "events.regulations",
        "R39: regulations (suppress, delete), kept; outcomes go to <this>.status",
    )
    topic_partitions: int = _setting(
        "ENRICHER_TOPIC_PARTITIONS", _positive_int, 8, "partitions of topics created on start"
    )
    topic_replication: int = _setting(
        "ENRICHER_TOPIC_REPLICATION", _positive_int, 1, "replication of topics created on start"
    )
    web_port: int = _setting("ENRICHER_WEB_PORT", _port, 6066, "the worker's HTTP port")
    device_ttl_days: float = _setting(
        "ENRICHER_DEVICE_TTL_DAYS", _positive_float, 730.0, "R1: device record lifetime"
    )
    collect_ipv6: bool = _setting(
        "ENRICHER_COLLECT_IPV6", _bool, False, "R27: collect IPv6 request addresses"
    )
    ip_policy_warehouse: IpPolicy = _setting(
        "ENRICHER_IP_POLICY_WAREHOUSE",
        _ip_policy,
        IpPolicy("keep"),
        "R28: keep | drop | truncate[:V4:V6] | mask[:V4:V6]",
    )
    ip_policy_destinations: IpPolicy = _setting(
        "ENRICHER_IP_POLICY_DESTINATIONS",
        _ip_policy,
        IpPolicy("keep"),
        "R28: as above, for events.destinations",
    )
    context_traits: tuple[str, ...] = _setting(
        "ENRICHER_CONTEXT_TRAITS",
        _context_traits,
        (),
        "R30: trait keys (comma-separated) or * for context.traits; empty: off",
    )
    blocked_ids: tuple[str, ...] = _setting(
        "ENRICHER_BLOCKED_IDS",
        _name_list,
        DEFAULT_PLACEHOLDERS,
        "R36: id values treated as not given (comma-separated, compared trimmed and ignoring "
        "case; replaces the list; empty with no pattern: R36 off)",
    )
    blocked_ids_pattern: str = _setting(
        "ENRICHER_BLOCKED_IDS_PATTERN",
        _pattern,
        "",
        "R36: a regular expression; a whole id it matches (ignoring case) is not given",
    )
    destinations_consent_categories: tuple[str, ...] = _setting(
        "ENRICHER_DESTINATIONS_CONSENT_CATEGORIES",
        _name_list,
        (),
        "R37: consent categories that must all be true for a message to reach "
        "events.destinations (comma-separated); empty: every message",
    )
    identity_consent_category: str = _setting(
        "ENRICHER_IDENTITY_CONSENT_CATEGORY",
        _text,
        "",
        "R37: without this consent category a device keeps no record (only the call's ids); "
        "empty: off",
    )
    pii_fields_warehouse: tuple[str, ...] = _setting(
        "ENRICHER_PII_FIELDS_WAREHOUSE",
        _field_paths,
        (),
        "R38: dotted paths (traits.email, context.traits.phone, userId) whose values "
        "events.warehouse gets as HMAC-SHA256 digests",
    )
    pii_fields_destinations: tuple[str, ...] = _setting(
        "ENRICHER_PII_FIELDS_DESTINATIONS",
        _field_paths,
        (),
        "R38: as above, for events.destinations",
    )
    pii_key: Secret = _setting(
        "ENRICHER_PII_KEY",
        _secret,
        Secret(""),
        "R38: the HMAC key of pseudonymised fields (or ENRICHER_PII_KEY_FILE); required when a "
        "field is named",
        secret=True,
    )
    regulation_key: Secret = _setting(
        "ENRICHER_REGULATION_KEY",
        _secret,
        Secret(""),
        "R39: the key of the suppression list's digests (or ENRICHER_REGULATION_KEY_FILE); "
        "unset: derived from ENRICHER_APP_ID (set one: a digest of a guessable id is then "
        "confirmable by whoever knows the app id)",
        secret=True,
    )
    regulation_settle: float = _setting(
        "ENRICHER_REGULATION_SETTLE_SECONDS",
        _positive_float,
        10.0,
        "R39: a deletion runs again this long after the first pass (what a batch in flight "
        "wrote meanwhile); a batch re-checks the suppression list if its save comes later than "
        "half of this after its check",
    )
    profile_max_ids: int = _setting(
        "ENRICHER_PROFILE_MAX_IDS",
        _positive_int,
        1000,
        "R35: most anonymousIds a user profile keeps (the most recent)",
    )
    device_buckets: int = _setting(
        "ENRICHER_DEVICE_BUCKETS",
        _positive_int,
        DEVICE_BUCKETS,
        "device records are fields of this many Redis hashes: about the devices expected over "
        "64 (fixed once the app has records)",
    )
    device_sweep_interval: float = _setting(
        "ENRICHER_DEVICE_SWEEP_SECONDS",
        _positive_float,
        3600.0,
        "how often one worker removes the device records idle past the TTL and a 30-day margin",
    )
    batch_max: int = _setting(
        "ENRICHER_BATCH_MAX", _positive_int, 2000, "most raw events in one batch"
    )
    batch_max_bytes: int = _setting(
        "ENRICHER_BATCH_MAX_BYTES",
        _positive_int,
        16 * 1024 * 1024,
        "raw bytes processed at once; a larger batch is split (bounds memory)",
    )
    batch_within: float = _setting(
        "ENRICHER_BATCH_WITHIN", _positive_float, 0.05, "seconds to wait to fill a batch"
    )
    fetch_max_wait_ms: int = _setting(
        "ENRICHER_FETCH_MAX_WAIT_MS",
        _positive_int,
        100,
        "longest a fetch waits at the broker for data (latency at low rates)",
    )
    session_timeout: float = _setting(
        "ENRICHER_SESSION_TIMEOUT",
        _positive_float,
        10.0,
        "consumer-group session timeout, seconds",
    )
    rebalance_timeout: float = _setting(
        "ENRICHER_REBALANCE_TIMEOUT",
        _positive_float,
        20.0,
        "consumer-group rebalance timeout, seconds",
    )
    commit_interval: float = _setting(
        "ENRICHER_COMMIT_INTERVAL",
        _positive_float,
        2.8,
        "seconds between offset commits (finished batches only)",
    )
    data_dir: str = _setting(
        "ENRICHER_DATA_DIR", _text, "", "Faust data directory (default: a temporary one)"
    )
    collector_host: str = _setting(
        "ENRICHER_COLLECTOR_HOST", _text, "0.0.0.0", "the collector's listening address"
    )
    collector_port: int = _setting(
        "ENRICHER_COLLECTOR_PORT", _port, 8088, "the collector's HTTP port (Tracking API)"
    )
    collector_write_keys: tuple[Secret, ...] = _setting(
        "ENRICHER_COLLECTOR_WRITE_KEYS",
        _secrets,
        (),
        "write keys the collector accepts (comma-separated, or ENRICHER_COLLECTOR_WRITE_KEYS_FILE; "
        "required to run it)",
        secret=True,
    )
    collector_ip_header: str = _setting(
        "ENRICHER_COLLECTOR_IP_HEADER",
        _header_name,
        "",
        "R27: trusted proxy header giving the client address (its last entry), "
        "e.g. X-Forwarded-For; empty: the socket's address",
    )
    collector_device_cookie: str = _setting(
        "ENRICHER_COLLECTOR_DEVICE_COOKIE",
        _cookie_name,
        "",
        "first-party cookie naming the device (the record key); empty: off",
    )
    collector_set_device_cookie: bool = _setting(
        "ENRICHER_COLLECTOR_SET_DEVICE_COOKIE",
        _bool,
        False,
        "issue the device cookie when a request has none (first-party collectors only)",
    )
    collector_cookie_domain: str = _setting(
        "ENRICHER_COLLECTOR_COOKIE_DOMAIN",
        _text,
        "",
        "Domain attribute of an issued device cookie; empty: the collector's host",
    )
    collector_cors_origins: tuple[str, ...] = _setting(
        "ENRICHER_COLLECTOR_CORS_ORIGINS",
        _name_list,
        ("*",),
        "origins allowed to post from browsers (comma-separated, or *)",
    )
    collector_ack_timeout: float = _setting(
        "ENRICHER_COLLECTOR_ACK_TIMEOUT",
        _positive_float,
        10.0,
        "seconds the collector waits for the broker's acknowledgement before answering 503",
    )
    max_record_bytes: int = _setting(
        "ENRICHER_MAX_RECORD_BYTES",
        _record_limit,
        1024 * 1024,
        "largest record written to any topic (at most the broker's message.max.bytes); a larger "
        "output becomes a dead letter, a dead letter's payload is cut to fit",
    )
    output_compression: str = _setting(
        "ENRICHER_OUTPUT_COMPRESSION",
        _compression,
        "none",
        "compression of the records the worker, collector and sinks write: none, gzip, snappy, "
        "lz4 or zstd",
    )
    broker_security_protocol: str = _setting(
        "ENRICHER_BROKER_SECURITY_PROTOCOL",
        _security_protocol,
        "PLAINTEXT",
        "Kafka: PLAINTEXT, SSL (TLS; mutual with a certificate), SASL_PLAINTEXT or SASL_SSL",
    )
    broker_sasl_mechanism: str = _setting(
        "ENRICHER_BROKER_SASL_MECHANISM",
        _sasl_mechanism,
        "PLAIN",
        "Kafka SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    broker_sasl_username: str = _setting(
        "ENRICHER_BROKER_SASL_USERNAME", _text, "", "Kafka SASL user"
    )
    broker_sasl_password: Secret = _setting(
        "ENRICHER_BROKER_SASL_PASSWORD",
        _secret,
        Secret(""),
        "Kafka SASL password (or ENRICHER_BROKER_SASL_PASSWORD_FILE)",
        secret=True,
    )
    broker_ssl_cafile: str = _setting(
        "ENRICHER_BROKER_SSL_CAFILE",
        _readable_file,
        "",
        "Kafka TLS: CA certificates (PEM) to trust; empty: the system's",
    )
    broker_ssl_certfile: str = _setting(
        "ENRICHER_BROKER_SSL_CERTFILE",
        _readable_file,
        "",
        "Kafka mutual TLS: this client's certificate (PEM)",
    )
    broker_ssl_keyfile: str = _setting(
        "ENRICHER_BROKER_SSL_KEYFILE",
        _readable_file,
        "",
        "Kafka mutual TLS: this client's private key (PEM, unencrypted: mount it as a secret)",
    )
    broker_ssl_check_hostname: bool = _setting(
        "ENRICHER_BROKER_SSL_CHECK_HOSTNAME",
        _bool,
        True,
        "Kafka TLS: check that the broker's certificate names its host",
    )
    redis_tls_cafile: str = _setting(
        "ENRICHER_REDIS_TLS_CAFILE",
        _readable_file,
        "",
        "Redis over TLS (rediss://): CA certificates (PEM) to trust; empty: the system's",
    )
    lookup_tokens: tuple[Secret, ...] = _setting(
        "ENRICHER_LOOKUP_TOKENS",
        _secrets,
        (),
        "bearer tokens that may read the worker's lookups (comma-separated, or "
        "ENRICHER_LOOKUP_TOKENS_FILE); none: the lookups answer 403",
        secret=True,
    )
    lookup_open: bool = _setting(
        "ENRICHER_LOOKUP_OPEN",
        _bool,
        False,
        "serve the lookups without a token (local development only: make run sets it)",
    )
    log_format: str = _setting(
        "ENRICHER_LOG_FORMAT", _log_format, "text", "text, or json: one JSON object per line"
    )
    dev_broker: str = _setting(
        "ENRICHER_DEV_BROKER",
        _dev_broker,
        "tansu",
        "make run / enricher demo without ENRICHER_BROKER: tansu (embedded) or kafka (local "
        "Apache Kafka; needs Java and Maven)",
    )
    console_port: int = _setting(
        "ENRICHER_CONSOLE_PORT", _port, 8099, "the live console's HTTP port (`enricher console`)"
    )
    console_host: str = _setting(
        "ENRICHER_CONSOLE_HOST", _text, "127.0.0.1", "address the live console binds"
    )
    console_window: int = _setting(
        "ENRICHER_CONSOLE_WINDOW",
        _positive_int,
        5000,
        "recent events the live console keeps in memory (raw records with their outputs)",
    )
    web_host: str = _setting(
        "ENRICHER_WEB_HOST",
        _text,
        "127.0.0.1",
        "address the web server binds (0.0.0.0 in containers, for probes and scrapes)",
    )

    @property
    def policy(self) -> Policy:
        return Policy(
            device_ttl_days=self.device_ttl_days,
            collect_ipv6=self.collect_ipv6,
            ip_warehouse=self.ip_policy_warehouse,
            ip_destinations=self.ip_policy_destinations,
            context_traits=self.context_traits,
            placeholders=Placeholders.of(self.blocked_ids, self.blocked_ids_pattern),
            destinations_consent=self.destinations_consent_categories,
            identity_consent=self.identity_consent_category,
            pii_warehouse=self.pii_fields_warehouse,
            pii_destinations=self.pii_fields_destinations,
            pii_key=str(self.pii_key).encode(),
        )

    @property
    def keys(self) -> KeySpace:
        """The app's Redis keys."""
        return KeySpace(self.app_id, self.device_buckets)

    @cached_property
    def regulation_digests(self) -> Digests:
        """R39: how the suppression list names ids (keyed by ENRICHER_REGULATION_KEY). One per
        settings: the worker's batches and its regulation store share its cache of digests."""
        secret = str(self.regulation_key) or f"app:{self.app_id}"
        return Digests.from_secret(secret.encode())

    @property
    def topic_regulation_status(self) -> str:
        """R39: each regulation's outcomes (state, sinks), keyed ``<id>/<who>``."""
        return f"{self.topic_regulations}.status"

    @property
    def bootstrap_servers(self) -> str:
        """The broker list in aiokafka's form."""
        return ",".join(url.removeprefix("kafka://") for url in self.broker.split(";"))

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, config_file: str | Path | None = None
    ) -> Settings:
        """Defaults, then the config file (``ENRICHER_CONFIG`` or ``config_file``), then the
        environment. Raises :class:`SettingsError` naming the first bad value."""
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        path = config_file or environ.get(CONFIG_FILE_VARIABLE)
        if path:
            values.update(_read_config_file(Path(path)))
        values.update({k: v for k, v in environ.items() if k in _ENV_NAMES})
        for env in _SECRET_NAMES:  # <NAME>_FILE: a mounted secret, unless NAME itself is set
            path = values.get(f"{env}_FILE") or environ.get(f"{env}_FILE")
            if path and env not in values:
                try:
                    values[env] = Path(path).read_text().strip()
                except OSError as exc:
                    raise SettingsError(f"{env}_FILE={path!r}: {exc.strerror}") from None
        parsed: dict[str, Any] = {}
        for spec in fields(cls):
            env = spec.metadata["env"]
            if env in values:
                try:
                    parsed[spec.name] = spec.metadata["parse"](values[env])
                except ValueError as exc:
                    shown = "***" if spec.metadata["secret"] else repr(values[env])
                    raise SettingsError(f"{env}={shown}: {exc}") from None
        settings = cls(**parsed)
        settings.check()
        return settings

    def check(self) -> None:
        """Settings that are each valid but do not go together. Raises SettingsError."""
        protocol = self.broker_security_protocol
        if protocol.startswith("SASL") and not (
            self.broker_sasl_username and self.broker_sasl_password
        ):
            raise SettingsError(
                f"ENRICHER_BROKER_SECURITY_PROTOCOL={protocol} needs "
                "ENRICHER_BROKER_SASL_USERNAME and ENRICHER_BROKER_SASL_PASSWORD (or _FILE)"
            )
        tls = protocol in ("SSL", "SASL_SSL")
        given = [
            name
            for name, value in (
                ("ENRICHER_BROKER_SSL_CAFILE", self.broker_ssl_cafile),
                ("ENRICHER_BROKER_SSL_CERTFILE", self.broker_ssl_certfile),
                ("ENRICHER_BROKER_SSL_KEYFILE", self.broker_ssl_keyfile),
            )
            if value
        ]
        if given and not tls:
            raise SettingsError(
                f"{given[0]} is set but ENRICHER_BROKER_SECURITY_PROTOCOL={protocol} uses no "
                "TLS: use SSL or SASL_SSL"
            )
        if (self.pii_fields_warehouse or self.pii_fields_destinations) and not self.pii_key:
            raise SettingsError(
                "ENRICHER_PII_FIELDS_* name fields to pseudonymise: set ENRICHER_PII_KEY (or "
                "ENRICHER_PII_KEY_FILE), the HMAC key"
            )
        if bool(self.broker_ssl_certfile) != bool(self.broker_ssl_keyfile):
            raise SettingsError(
                "mutual TLS needs both ENRICHER_BROKER_SSL_CERTFILE and ENRICHER_BROKER_SSL_KEYFILE"
            )

    def to_environ(self) -> dict[str, str]:
        """Every setting as the environment variable that :meth:`load` reads back."""
        environ = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, tuple):
                text = ",".join(value)
            elif spec.name == "broker":
                text = value.replace(";", ",")
            elif spec.name in ("lookup_tokens", "collector_write_keys"):
                text = ",".join(value)
            else:
                text = str(value)
            environ[spec.metadata["env"]] = text
        return environ

    def with_overrides(self, **changes: Any) -> Settings:
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


_ENV_NAMES: Final = frozenset(spec.metadata["env"] for spec in fields(Settings))
SECRET_FIELDS: Final = frozenset(spec.name for spec in fields(Settings) if spec.metadata["secret"])
"""Settings never shown: masked in ``enricher settings``, logs and the stats."""
SECRET_SETTINGS: Final = frozenset(
    spec.metadata["env"] for spec in fields(Settings) if spec.metadata["secret"]
)
"""The variables of secret settings (each also read from ``<variable>_FILE``)."""
_SECRET_NAMES: Final = SECRET_SETTINGS


def _read_config_file(path: Path) -> dict[str, str]:
    """A TOML file of ``ENRICHER_*`` names (or the same names lower-case without the prefix):
    ``ENRICHER_APP_ID = "shop"`` or ``app_id = "shop"``."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    values: dict[str, str] = {}
    for name, value in document.items():
        if name == "sink" or name.upper().startswith(("ENRICHER_SINK_", "SINK_")):
            continue  # the sinks' own settings, read by streams/sinks/options.py
        env = name if name.startswith("ENRICHER_") else f"ENRICHER_{name.upper()}"
        if env not in _ENV_NAMES and env.removesuffix("_FILE") not in _SECRET_NAMES:
            raise SettingsError(f"config file {path}: unknown setting {name!r}")
        values[env] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def broker_configured(config_file: str | Path | None = None) -> bool:
    """Whether a broker was named (CONTRACT: ``make run`` starts the embedded stack if not)."""
    if "ENRICHER_BROKER" in os.environ:
        return True
    path = config_file or os.environ.get(CONFIG_FILE_VARIABLE)
    return path is not None and "ENRICHER_BROKER" in _read_config_file(Path(path))


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, for ``--help`` and the README."""
    rows = []
    for spec in fields(Settings):
        default = spec.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((spec.metadata["env"], shown, spec.metadata["help"]))
    return rows
