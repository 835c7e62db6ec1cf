"""Pure parts of the operator's tools: times, field diffs, JSON log lines, metrics text."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest
from aiokafka import TopicPartition

from streams.observe.logs import JsonFormatter, batch_context
from streams.observe.metrics import WorkerMetrics, sample_values
from streams.ops.diffing import ABSENT, TopicDiff, field_differences
from streams.ops.offsets import parse_time
from streams.worker.batch import Counters


def test_times_are_iso_epoch_ms_or_ago() -> None:
    assert parse_time("2026-11-29T01:00:00Z") == 1795914000000
    assert parse_time("2026-11-29T01:00:00") == 1795914000000  # no zone: UTC
    assert parse_time("1795914000000") == 1795914000000
    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert parse_time("2h", now) == 1795914000000
    assert parse_time("90m", now) == 1795914000000 + 30 * 60_000
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday")


def test_field_differences_name_dotted_paths_and_absent_fields() -> None:
    existing = {"context": {"ip": "1.2.3.4", "traits": {"plan": "pro"}}, "event": "A"}
    replayed = {"context": {"ip": "x.2.3.4"}, "event": "A", "userId": "u"}
    assert field_differences(existing, replayed) == {
        "context.ip": ("1.2.3.4", "x.2.3.4"),
        "context.traits.plan": ("pro", ABSENT),
        "userId": (ABSENT, "u"),
    }
    assert field_differences(existing, existing) == {}


def test_topic_diff_counts_fields_and_keeps_a_few_examples() -> None:
    diff = TopicDiff("events.warehouse")
    for i in range(5):
        diff.compare(f"m{i}", {"a": i, "b": 1}, {"a": i + 1, "b": 1})
    diff.compare("same", {"a": 1}, {"a": 1})
    diff.missing("m9", "replay")
    report = diff.as_json()
    assert report["compared"] == 6 and report["identical"] == 1 and report["different"] == 5
    assert report["fields"]["a"]["count"] == 5 and len(report["fields"]["a"]["examples"]) == 3
    assert report["onlyInReplay"] == 1 and diff.differences == 6


def test_json_log_lines_carry_the_batch_partition_and_offset() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "streams.worker.batch", logging.WARNING, __file__, 1, "slow %s", ("x",), None
    )
    tp = TopicPartition("events.raw", 3)
    messages = [SimpleNamespace(offset=10), SimpleNamespace(offset=12)]
    with batch_context(7, {tp: messages}):
        line = orjson.loads(formatter.format(record))
    assert line["message"] == "slow x" and line["level"] == "warning"
    assert line["batch"] == 7 and line["partition"] == 3 and line["offset"] == 10
    assert line["partitions"] == [
        {"topic": "events.raw", "partition": 3, "offset": 10, "lastOffset": 12}
    ]
    assert "batch" not in orjson.loads(formatter.format(record))  # outside a batch


def test_metrics_read_the_counters_at_scrape_time() -> None:
    counters = Counters()
    metrics = WorkerMetrics(counters)
    metrics.watch_partitions(lambda: ({("raw", 0): 90, ("raw", 1): 5}, {("raw", 0): 100}))
    counters.events_in["track"] += 3
    counters.dead_letters["invalid_json"] += 1
    metrics.observe_batch(4, 0.02)
    text = metrics.exposition().decode()
    assert list(sample_values(text, "enricher_events_in_total")) == [({"type": "track"}, 3.0)]
    assert list(sample_values(text, "enricher_dead_letters_total")) == [
        ({"code": "invalid_json"}, 1.0)
    ]
    assert list(sample_values(text, "enricher_consumer_lag")) == [
        ({"topic": "raw", "partition": "0"}, 10.0)
    ]
    assert dict(
        (labels["partition"], value)
        for labels, value in sample_values(text, "enricher_consumer_position")
    ) == {"0": 90.0, "1": 5.0}
    assert list(sample_values(text, "enricher_batch_size_sum")) == [({}, 4.0)]


def test_partition_offsets_can_be_exported_under_a_sinks_name_over_http() -> None:
    from prometheus_client import CollectorRegistry

    from streams.dev.processes import free_port
    from streams.observe.metrics import PartitionOffsetsCollector, start_metrics_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        PartitionOffsetsCollector(
            lambda: ({("events.destinations", 2): 7}, {("events.destinations", 2): 9}),
            prefix="enricher_sink",
            labels={"sink": "webhook"},
        )
    )
    port = free_port()
    start_metrics_server(registry, port, "127.0.0.1")
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        text = response.read().decode()
    assert list(sample_values(text, "enricher_sink_consumer_lag")) == [
        ({"sink": "webhook", "topic": "events.destinations", "partition": "2"}, 2.0)
    ]
