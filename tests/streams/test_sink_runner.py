"""What the runner does to a consumed batch before the sink sees it (no broker needed): R29
routing by the sink's name, the sink's IP policy (R28), undecodable records dead-lettered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
import pytest

from enrichers import IpPolicy
from streams.settings import Settings
from streams.sinks import PermanentSinkError, RetryableSinkError, Sink, SinkRecord
from streams.sinks.options import COMMON_OPTIONS
from streams.sinks.runner import SinkRunner, consumer_group, deadletter_topic, source_topic
from streams.worker.records import InRecord


class Collect(Sink):
    name: ClassVar[str] = "collect"

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        return None


def runner(**config: Any) -> SinkRunner:
    defaults = {option.name: option.default for option in COMMON_OPTIONS}
    return SinkRunner(Settings(), "collect", Collect({**defaults, **config}))


def record(offset: int, value: Any) -> InRecord:
    data = value if isinstance(value, bytes) else orjson.dumps(value)
    return InRecord("events.destinations", 0, offset, b"dev", data, 1_000)


def test_a_sink_runs_as_its_own_group_with_its_own_dead_letters() -> None:
    settings = Settings(app_id="shop", topic_deadletter="dl")
    assert consumer_group(settings, "webhook") == "shop.sink.webhook"
    assert deadletter_topic(settings, "webhook") == "dl.sink.webhook"


def test_warehouse_sinks_read_the_warehouse_topic() -> None:
    from streams.sinks.postgres import PostgresSink
    from streams.sinks.webhook import WebhookSink

    assert source_topic(Settings(), PostgresSink) == "events.warehouse"
    assert source_topic(Settings(), WebhookSink) == "events.destinations"


def test_messages_are_skipped_when_integrations_do_not_enable_the_sink() -> None:
    sink = runner()
    records, failures = sink.prepare(
        [
            record(0, {"messageId": "a", "integrations": {}}),
            record(1, {"messageId": "b", "integrations": {"collect": False}}),
            record(2, {"messageId": "c", "integrations": {"All": False, "Other": True}}),
            record(3, {"messageId": "d", "integrations": {"All": False, "collect": {}}}),
        ]
    )
    assert [r.message_id for r in records] == ["a", "d"] and not failures
    assert sink.metrics.totals["skipped"] == 2


def test_the_sinks_ip_policy_applies_to_context_ip() -> None:
    sink = runner(ip_policy=IpPolicy.parse("truncate"))
    message = {"messageId": "a", "context": {"ip": "203.0.113.7", "locale": "fr"}}
    (prepared,), _ = sink.prepare([record(0, message)])
    assert prepared.message["context"] == {"ip": "203.0.113.0", "locale": "fr"}
    dropped = runner(ip_policy=IpPolicy.parse("drop")).prepare([record(0, message)])[0]
    assert dropped[0].message["context"] == {"locale": "fr"}


def test_records_that_are_not_json_objects_are_dead_lettered() -> None:
    records, failures = runner().prepare([record(0, b"{nope"), record(1, [1, 2])])
    assert not records
    assert [code for _, code, _ in failures] == ["invalid_json", "not_an_object"]


class Flaky(Sink):
    """Fails with the given errors in turn, then writes."""

    name: ClassVar[str] = "flaky"

    def __init__(self, config: Any, errors: list[Exception]) -> None:
        super().__init__(config)
        self.errors = errors
        self.calls = 0
        self.written: list[str | None] = []

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.written.extend(r.message_id for r in batch)


def flaky_runner(errors: list[Exception], retries: int = 3) -> tuple[SinkRunner, Flaky]:
    config = {option.name: option.default for option in COMMON_OPTIONS}
    config.update(retries=retries, retry_max_delay=0.05)
    sink = Flaky(config, errors)
    return SinkRunner(Settings(), "flaky", sink), sink


def chunk(*ids: str) -> list[SinkRecord]:
    return [SinkRecord({"messageId": i}, "t", 0, n, None, 0) for n, i in enumerate(ids)]


def test_retryable_errors_are_retried_until_the_write_succeeds() -> None:
    run, sink = flaky_runner([RetryableSinkError("down"), ConnectionError("reset")])
    failures = asyncio.run(run._write_chunk(chunk("a", "b")))
    assert failures == [] and sink.calls == 3 and sink.written == ["a", "b"]
    assert run.metrics.totals["retries"] == 2 and run.metrics.totals["written"] == 2


def test_exhausted_retries_dead_letter_the_batch() -> None:
    run, sink = flaky_runner([RetryableSinkError("down")] * 5, retries=2)
    failures = asyncio.run(run._write_chunk(chunk("a")))
    assert sink.calls == 3
    assert [(orjson.loads(r.value or b"")["messageId"], code) for r, code, _ in failures] == [
        ("a", "sink_retries_exhausted")
    ]


def test_a_retry_waits_at_least_the_destinations_retry_after() -> None:
    run, _ = flaky_runner([RetryableSinkError("slow down", retry_after=0.6)])
    started = time.monotonic()
    assert asyncio.run(run._write_chunk(chunk("a"))) == []
    assert time.monotonic() - started >= 0.6


def test_a_permanent_error_dead_letters_the_records_it_names_without_retrying() -> None:
    records = chunk("a", "b", "c")
    run, sink = flaky_runner([PermanentSinkError("bad b", [records[1]])])
    failures = asyncio.run(run._write_chunk(records))
    assert sink.calls == 1
    assert [(r.offset, code) for r, code, _ in failures] == [(1, "sink_permanent")]
    assert run.metrics.totals["written"] == 2


class Picky(Flaky):
    """Fails in a way no sink foresees on every chunk holding the message ``bad``."""

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        self.calls += 1
        if any(r.message_id == "bad" for r in batch):
            raise KeyError("bug")
        self.written.extend(r.message_id for r in batch)


def test_a_record_the_sink_cannot_write_is_isolated_and_dead_lettered_the_rest_written() -> None:
    config = {option.name: option.default for option in COMMON_OPTIONS}
    sink = Picky(config, [])
    run = SinkRunner(Settings(), "flaky", sink)
    failures = asyncio.run(run._write_chunk(chunk("a", "b", "bad", "c", "d")))
    assert [(r.offset, code) for r, code, _ in failures] == [(2, "sink_error")]
    assert sorted(str(m) for m in sink.written) == ["a", "b", "c", "d"]


def test_a_record_that_cannot_be_prepared_is_dead_lettered_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streams.sinks.runner as runner_module

    def broken(context: dict[str, object], policy: IpPolicy) -> None:
        if context.get("ip") == "boom":
            raise ValueError("a bug in a policy")

    monkeypatch.setattr(runner_module, "apply_ip_policy", broken)
    sink = runner(ip_policy=IpPolicy.parse("mask"))
    records, failures = sink.prepare(
        [
            record(0, {"messageId": "a", "context": {"ip": "1.2.3.4"}}),
            record(1, {"messageId": "b", "context": {"ip": "boom"}}),
            record(2, {"messageId": "c", "context": {}}),
        ]
    )
    assert [r.message_id for r in records] == ["a", "c"]
    assert [(r.offset, code) for r, code, _ in failures] == [(1, "sink_prepare_error")]


def test_a_zoned_ipv6_address_under_a_sinks_mask_is_masked_not_a_poison_pill() -> None:
    sink = runner(ip_policy=IpPolicy.parse("mask"))
    records, failures = sink.prepare(
        [record(0, {"messageId": "z", "context": {"ip": "fe80::1%eth0"}})]
    )
    assert failures == [] and records[0].message["context"]["ip"] == "fe80:0:0:x:x:x:x:x"


class LateStart(Flaky):
    async def start(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_a_destination_that_is_not_there_yet_is_waited_for_at_start() -> None:
    config = {option.name: option.default for option in COMMON_OPTIONS}
    config.update(retry_max_delay=0.05)
    sink = LateStart(config, [RetryableSinkError("no database yet"), ConnectionRefusedError()])
    run = SinkRunner(Settings(), "late", sink)
    assert asyncio.run(run.start_sink()) is True
    assert sink.calls == 3


def test_a_stop_while_waiting_for_the_destination_ends_the_wait() -> None:
    config = {option.name: option.default for option in COMMON_OPTIONS}
    sink = LateStart(config, [RetryableSinkError("down")] * 100)
    run = SinkRunner(Settings(), "late", sink)

    async def scenario() -> bool:
        asyncio.get_running_loop().call_later(0.2, run.stopping.set)
        return await run.start_sink()

    assert asyncio.run(scenario()) is False
