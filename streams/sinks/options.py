"""Sink settings: ``ENRICHER_SINK_<NAME>_<OPTION>`` environment variables, or the same names in
the TOML config file (flat, or as a ``[sink.NAME]`` table), typed and validated at start like
``streams.settings`` does for the worker."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from enrichers import IpPolicy
from streams.settings import SettingsError
from streams.sinks.base import Sink, SinkOption

PREFIX: Final = "ENRICHER_SINK_"
METRICS_PORT_VARIABLE: Final = "ENRICHER_SINK_METRICS_PORT"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def text(value: str) -> str:
    return value.strip()


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("a whole number of at least 1")
    return number


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("a whole number, 0 or more")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("a number above 0")
    return number


def port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError("a TCP port, 1-65535")
    return number


def json_object(value: str) -> dict[str, str]:
    """A JSON object of strings, e.g. ``{"Authorization": "Bearer abc"}``."""
    try:
        document = orjson.loads(value) if value.strip() else {}
    except orjson.JSONDecodeError:
        raise ValueError('a JSON object of strings, e.g. {"Authorization": "Bearer abc"}') from None
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise ValueError('a JSON object of strings, e.g. {"Authorization": "Bearer abc"}')
    return document


def ip_policy(value: str) -> IpPolicy:
    return IpPolicy.parse(value)


def names(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


COMMON_OPTIONS: Final[tuple[SinkOption, ...]] = (
    SinkOption("ip_policy", ip_policy, IpPolicy("keep"), "R28: keep | drop | truncate | mask"),
    SinkOption("batch_max", positive_int, 500, "most records consumed and written at once"),
    SinkOption("batch_within", positive_float, 0.2, "seconds to wait to fill a batch"),
    SinkOption("retries", non_negative_int, 8, "retries of a failing batch before dead letters"),
    SinkOption("retry_max_delay", positive_float, 30.0, "longest backoff between retries, s"),
    SinkOption(
        "consent_categories",
        names,
        (),
        "R37: consent categories that must all be true on a message for this sink",
    ),
    SinkOption(
        "pii_fields",
        names,
        (),
        "R38: dotted paths this sink receives as HMAC-SHA256 digests (key: ENRICHER_PII_KEY)",
    ),
)
"""Options every sink has, whatever it declares."""


def check_sink_name(name: str) -> str:
    if not _NAME.match(name):
        raise SettingsError(
            f"sink name {name!r}: lower-case letters, digits and '_', starting with a letter"
        )
    return name


def variable(sink_name: str, option: str) -> str:
    """``ENRICHER_SINK_<NAME>_<OPTION>``."""
    return f"{PREFIX}{sink_name.upper()}_{option.upper()}"


def all_options(sink: type[Sink]) -> tuple[SinkOption, ...]:
    declared = tuple(sink.options)
    own = {option.name for option in declared}
    return tuple(o for o in COMMON_OPTIONS if o.name not in own) + declared


def load_sink_config(
    sink_name: str,
    sink: type[Sink],
    environ: Mapping[str, str],
    config_file: str | Path | None = None,
) -> dict[str, Any]:
    """Every option of ``sink`` parsed: defaults, then the config file, then the environment.
    Raises :class:`SettingsError` naming the first bad or missing value."""
    values = read_config_file(Path(config_file)) if config_file else {}
    values.update({k: v for k, v in environ.items() if k.startswith(PREFIX)})
    config: dict[str, Any] = {}
    for option in all_options(sink):
        name = variable(sink_name, option.name)
        from_file = name not in values and f"{name}_FILE" in values
        if from_file:  # <NAME>_FILE: a mounted secret (a DSN with a password, a header)
            try:
                values[name] = Path(values[f"{name}_FILE"]).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"{name}_FILE: {exc.strerror}") from None
        if name in values:
            try:
                config[option.name] = option.parse(values[name])
            except ValueError as exc:
                if from_file:  # the reason may quote the value: a secret, never shown
                    raise SettingsError(f"{name}_FILE holds a value {name} does not take") from None
                raise SettingsError(f"{name}={values[name]!r}: {exc}") from None
        elif option.required:
            raise SettingsError(f"{name} is required by the {sink_name} sink ({option.help})")
        else:
            config[option.name] = option.default
    return config


def metrics_port(environ: Mapping[str, str], config_file: str | Path | None = None) -> int | None:
    values = read_config_file(Path(config_file)) if config_file else {}
    values.update(environ)
    raw = values.get(METRICS_PORT_VARIABLE, "").strip()
    if not raw:
        return None
    try:
        return port(raw)
    except ValueError as exc:
        raise SettingsError(f"{METRICS_PORT_VARIABLE}={raw!r}: {exc}") from None


def read_config_file(path: Path) -> dict[str, str]:
    """The sink settings of a TOML config file: ``ENRICHER_SINK_WEBHOOK_URL = "..."``,
    ``sink_webhook_url = "..."`` or a ``[sink.webhook]`` table with ``url = "..."``."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    values: dict[str, str] = {}
    for key, value in document.items():
        if key == "sink" and isinstance(value, dict):
            for sink_name, table in value.items():
                if not isinstance(table, dict):
                    raise SettingsError(f"config file {path}: [sink.{sink_name}] is not a table")
                for option, option_value in table.items():
                    values[variable(sink_name, option)] = _as_text(option_value)
            continue
        env = key if key.startswith("ENRICHER_") else f"ENRICHER_{key.upper()}"
        if env.startswith(PREFIX):
            values[env] = _as_text(value)
    return values


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)
