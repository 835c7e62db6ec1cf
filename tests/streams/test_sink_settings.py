"""Sink settings: ENRICHER_SINK_<NAME>_<OPTION> from the environment or the config file, typed
and validated at start; the list of every known sink setting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from enrichers import IpPolicy
from streams.settings import Settings, SettingsError
from streams.sinks import Sink, SinkOption, SinkRecord, sink_setting_names
from streams.sinks.options import load_sink_config, metrics_port, positive_int


class Example(Sink):
    name: ClassVar[str] = "example"
    options: ClassVar[Sequence[SinkOption]] = (
        SinkOption("endpoint", str, required=True, help="where to"),
        SinkOption("limit", positive_int, 10, help="how many"),
    )

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        return None


def test_defaults_apply_to_options_not_set() -> None:
    config = load_sink_config("example", Example, {"ENRICHER_SINK_EXAMPLE_ENDPOINT": "x"})
    assert config["endpoint"] == "x" and config["limit"] == 10
    assert config["ip_policy"] == IpPolicy("keep") and config["batch_max"] == 500


def test_options_are_parsed_to_their_types() -> None:
    config = load_sink_config(
        "example",
        Example,
        {
            "ENRICHER_SINK_EXAMPLE_ENDPOINT": "x",
            "ENRICHER_SINK_EXAMPLE_LIMIT": "3",
            "ENRICHER_SINK_EXAMPLE_IP_POLICY": "truncate",
            "ENRICHER_SINK_EXAMPLE_BATCH_MAX": "7",
        },
    )
    assert config["limit"] == 3 and config["batch_max"] == 7
    assert config["ip_policy"] == IpPolicy("truncate", 24, 48)


def test_a_bad_value_is_named_in_the_error() -> None:
    with pytest.raises(SettingsError, match="ENRICHER_SINK_EXAMPLE_LIMIT='0'"):
        load_sink_config(
            "example",
            Example,
            {"ENRICHER_SINK_EXAMPLE_ENDPOINT": "x", "ENRICHER_SINK_EXAMPLE_LIMIT": "0"},
        )
    with pytest.raises(SettingsError, match="ENRICHER_SINK_EXAMPLE_IP_POLICY"):
        load_sink_config(
            "example",
            Example,
            {"ENRICHER_SINK_EXAMPLE_ENDPOINT": "x", "ENRICHER_SINK_EXAMPLE_IP_POLICY": "blur"},
        )


def test_a_sink_option_is_read_from_its_file_and_its_value_not_echoed(tmp_path: Path) -> None:
    dsn = tmp_path / "dsn"
    dsn.write_text("postgresql://loader:s3cret@db/warehouse\n")
    config = load_sink_config("example", Example, {"ENRICHER_SINK_EXAMPLE_ENDPOINT_FILE": str(dsn)})
    assert config["endpoint"] == "postgresql://loader:s3cret@db/warehouse"
    bad = tmp_path / "limit"
    bad.write_text("not a number")
    with pytest.raises(SettingsError) as error:
        load_sink_config(
            "example",
            Example,
            {"ENRICHER_SINK_EXAMPLE_ENDPOINT": "x", "ENRICHER_SINK_EXAMPLE_LIMIT_FILE": str(bad)},
        )
    assert "ENRICHER_SINK_EXAMPLE_LIMIT" in str(error.value)
    assert "not a number" not in str(error.value)


def test_a_required_option_must_be_set() -> None:
    with pytest.raises(SettingsError, match="ENRICHER_SINK_EXAMPLE_ENDPOINT is required"):
        load_sink_config("example", Example, {})


def test_the_config_file_holds_sink_settings_flat_or_as_tables_and_the_environment_wins(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "enricher.toml"
    config_file.write_text(
        'app_id = "shop"\n'
        "ENRICHER_SINK_EXAMPLE_LIMIT = 4\n"
        "sink_example_batch_max = 9\n"
        "[sink.example]\n"
        'endpoint = "from-file"\n'
        'ip_policy = "drop"\n'
    )
    config = load_sink_config(
        "example", Example, {"ENRICHER_SINK_EXAMPLE_IP_POLICY": "mask"}, config_file
    )
    assert config["endpoint"] == "from-file" and config["limit"] == 4 and config["batch_max"] == 9
    assert config["ip_policy"] == IpPolicy("mask", 1, 5)
    # the worker's settings accept the same file (sink names are not its business)
    assert Settings.load({}, config_file).app_id == "shop"


def test_the_metrics_port_is_optional_and_checked() -> None:
    assert metrics_port({}) is None
    assert metrics_port({"ENRICHER_SINK_METRICS_PORT": "9100"}) == 9100
    with pytest.raises(SettingsError, match="ENRICHER_SINK_METRICS_PORT"):
        metrics_port({"ENRICHER_SINK_METRICS_PORT": "http"})


def test_every_built_in_sink_setting_is_listed() -> None:
    names = set(sink_setting_names())
    assert {
        "ENRICHER_SINK_POSTGRES_DSN",
        "ENRICHER_SINK_WEBHOOK_URL",
        "ENRICHER_SINK_WEBHOOK_HEADERS",
        "ENRICHER_SINK_WEBHOOK_TIMEOUT",
        "ENRICHER_SINK_WEBHOOK_BATCH_SIZE",
        "ENRICHER_SINK_FILE_DIR",
        "ENRICHER_SINK_FILE_ROTATE_BYTES",
        "ENRICHER_SINK_FILE_ROTATE_SECONDS",
        "ENRICHER_SINK_METRICS_PORT",
    } <= names
    for sink in ("POSTGRES", "WEBHOOK", "FILE"):
        assert f"ENRICHER_SINK_{sink}_IP_POLICY" in names
        assert f"ENRICHER_SINK_{sink}_BATCH_MAX" in names
