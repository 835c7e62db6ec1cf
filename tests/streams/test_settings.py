"""Settings: environment, config file, validation at start (CONTRACT "Running it")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from enrichers import IpPolicy
from streams.settings import Settings, SettingsError


def test_defaults_follow_the_contract() -> None:
    settings = Settings.load(environ={})
    assert settings.topic_raw == "events.raw"
    assert settings.topic_warehouse == "events.warehouse"
    assert settings.topic_destinations == "events.destinations"
    assert settings.topic_deadletter == "events.deadletter"
    assert settings.device_ttl_days == 730
    assert settings.ip_policy_warehouse == IpPolicy("keep")


def test_environment_sets_values() -> None:
    settings = Settings.load(
        environ={
            "ENRICHER_BROKER": "127.0.0.1:9093",
            "ENRICHER_APP_ID": "shop",
            "ENRICHER_COLLECT_IPV6": "true",
            "ENRICHER_IP_POLICY_DESTINATIONS": "truncate",
        }
    )
    assert settings.broker == "kafka://127.0.0.1:9093"
    assert settings.bootstrap_servers == "127.0.0.1:9093"
    assert settings.app_id == "shop"
    assert settings.collect_ipv6 is True
    assert settings.ip_policy_destinations == IpPolicy("truncate", 24, 48)


def test_config_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "enricher.toml"
    config.write_text('app_id = "from-file"\nENRICHER_DEVICE_TTL_DAYS = 30\n')
    settings = Settings.load(environ={"ENRICHER_APP_ID": "from-env"}, config_file=config)
    assert settings.app_id == "from-env"
    assert settings.device_ttl_days == 30


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ENRICHER_BROKER", "not a url"),
        ("ENRICHER_REDIS_URL", "http://x"),
        ("ENRICHER_APP_ID", "has{brace}"),
        ("ENRICHER_WEB_PORT", "70000"),
        ("ENRICHER_DEVICE_TTL_DAYS", "-1"),
        ("ENRICHER_COLLECT_IPV6", "maybe"),
        ("ENRICHER_IP_POLICY_WAREHOUSE", "blur"),
        ("ENRICHER_IP_POLICY_WAREHOUSE", "truncate:40:48"),
        ("ENRICHER_CONTEXT_TRAITS", "plan,*"),
    ],
)
def test_bad_value_is_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.load(environ={name: value})


def test_unknown_name_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "enricher.toml"
    config.write_text('colour = "blue"\n')
    with pytest.raises(SettingsError, match="colour"):
        Settings.load(environ={}, config_file=config)


def test_worker_refuses_to_start_with_a_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env={"ENRICHER_IP_POLICY_WAREHOUSE": "blur", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ENRICHER_IP_POLICY_WAREHOUSE" in result.stderr


def test_help_lists_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    for name in (
        "ENRICHER_BROKER",
        "ENRICHER_REDIS_URL",
        "ENRICHER_CONTEXT_TRAITS",
        "ENRICHER_IP_POLICY_DESTINATIONS",
        "ENRICHER_WEB_PORT",
    ):
        assert name in result.stdout


def test_settings_survive_the_trip_through_the_environment() -> None:
    settings = Settings.load(
        environ={
            "ENRICHER_BROKER": "h1:9092,h2:9093",
            "ENRICHER_COLLECT_IPV6": "true",
            "ENRICHER_CONTEXT_TRAITS": "plan,company",
            "ENRICHER_IP_POLICY_WAREHOUSE": "mask:2:3",
            "ENRICHER_DEVICE_TTL_DAYS": "12.5",
        }
    )
    assert Settings.load(environ=settings.to_environ()) == settings


def test_a_secret_setting_is_read_from_its_file_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = Settings.load(
        {
            "ENRICHER_BROKER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "ENRICHER_BROKER_SASL_USERNAME": "svc",
            "ENRICHER_BROKER_SASL_PASSWORD_FILE": str(secret),
            "ENRICHER_LOOKUP_TOKENS": "t1,t2",
        }
    )
    assert settings.broker_sasl_password == "from-a-file"
    assert settings.lookup_tokens == ("t1", "t2")
    assert "from-a-file" not in repr(settings) and "t1" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"ENRICHER_BROKER_SECURITY_PROTOCOL": "SASL_SSL"}, "ENRICHER_BROKER_SASL_USERNAME"),
        ({"ENRICHER_BROKER_SECURITY_PROTOCOL": "TLS"}, "ENRICHER_BROKER_SECURITY_PROTOCOL"),
        ({"ENRICHER_BROKER_SASL_MECHANISM": "GSSAPI"}, "ENRICHER_BROKER_SASL_MECHANISM"),
        ({"ENRICHER_BROKER_SSL_CAFILE": "/nonexistent/ca.pem"}, "ENRICHER_BROKER_SSL_CAFILE"),
        ({"ENRICHER_BROKER_SASL_PASSWORD_FILE": "/nonexistent"}, "ENRICHER_BROKER_SASL_PASSWORD"),
    ],
)
def test_broker_security_settings_are_checked_at_start(environ: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.load(environ)


def test_a_bad_secret_value_is_not_echoed_in_the_error(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(SettingsError) as error:
        Settings.load({"ENRICHER_BROKER_SSL_CAFILE": str(ca)})  # TLS file without TLS
    assert "ENRICHER_BROKER_SECURITY_PROTOCOL" in str(error.value)


def test_the_worker_and_its_regulation_store_share_one_digests_cache() -> None:
    """R39: the suppression list's digests are keyed by ENRICHER_REGULATION_KEY (else the app
    id); one ``Digests`` per settings, so recent ids are digested once per worker."""
    settings = Settings.load(environ={"ENRICHER_APP_ID": "shop"})
    digests = settings.regulation_digests
    assert settings.regulation_digests is digests
    digest = digests.of("userId", "u-1")
    assert (
        Settings.load(environ={"ENRICHER_APP_ID": "shop"}).regulation_digests.of("userId", "u-1")
        == digest
    )
    assert (
        Settings.load(environ={"ENRICHER_APP_ID": "other"}).regulation_digests.of("userId", "u-1")
        != digest
    )
