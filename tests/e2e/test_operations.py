"""The operator's commands against the real broker and Redis (issue 8): replay (rebuild and
diff), import, dead-letter requeue, sink rewind."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.dev.stack import StackEndpoints
from streams.worker.groups import committed_offsets
from tests.pipeline import Pipeline, broker_settings

pytestmark = pytest.mark.e2e


def enricher(pipeline: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**pipeline.env(), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def session(device: str, n: int) -> list[tuple[str, dict[str, object]]]:
    events: list[tuple[str, dict[str, object]]] = [
        (device, {"type": "page", "name": "Home", "context": {"ip": "203.0.113.7"}}),
        (device, {"type": "identify", "userId": f"user-{device}", "traits": {"plan": "pro"}}),
    ]
    events += [
        (device, {"type": "track", "event": f"E{i}", "context": {"ip": "198.51.100.9"}})
        for i in range(n)
    ]
    return events


@pytest.fixture
def processed(pipeline: Pipeline) -> Pipeline:
    """A pipeline whose worker processed 5 devices' sessions (40 messages) and stopped."""
    events = [e for d in range(5) for e in session(f"dev-{d}", 6)]
    pipeline.produce_json(events)
    pipeline.start_worker()
    assert len(pipeline.read("warehouse", len(events))) == len(events)
    pipeline.stop_all()
    return pipeline


def test_unchanged_replay_diff_shows_no_differences(processed: Pipeline) -> None:
    run = enricher(processed, "replay", "--mode", "diff", "--json")
    assert run.returncode == 0, run.stderr
    report = orjson.loads(run.stdout)
    assert report["replayed"] == 40 and report["differences"] == 0
    warehouse, destinations = report["topics"]
    assert warehouse["compared"] == warehouse["identical"] == 40
    assert destinations["compared"] == destinations["identical"] == 40


def test_diff_reports_a_rules_change_field_by_field(processed: Pipeline) -> None:
    # R28: masking IPs on the warehouse changes context.ip there, nowhere else
    run = enricher(
        processed, "replay", "--mode", "diff", "--json", ENRICHER_IP_POLICY_WAREHOUSE="mask"
    )
    assert run.returncode == 1, run.stderr
    warehouse, destinations = orjson.loads(run.stdout)["topics"]
    assert warehouse["different"] == 40
    assert set(warehouse["fields"]) == {"context.ip", "_enrichment.policy"}
    example = warehouse["fields"]["context.ip"]["examples"][0]
    assert example["existing"] in ("203.0.113.7", "198.51.100.9")
    assert example["replay"] in ("x.113.7", "x.100.9") or "x" in example["replay"]
    assert destinations["identical"] == 40
    # R30: context traits on: the identified user's later events gain context.traits
    run = enricher(processed, "replay", "--mode", "diff", "--json", ENRICHER_CONTEXT_TRAITS="plan")
    warehouse, _ = orjson.loads(run.stdout)["topics"]
    assert warehouse["fields"]["context.traits.plan"]["count"] >= 30


def test_diff_of_some_partitions_by_offsets(processed: Pipeline) -> None:
    raw = processed.read("raw", 40)
    partition = raw[0].partition  # each device's whole history is on one partition
    mine = [r for r in raw if r.partition == partition]
    run = enricher(
        processed,
        "replay",
        "--mode",
        "diff",
        "--json",
        "--partitions",
        str(partition),
        "--from-offset",
        "0",
        "--to-offset",
        str(len(mine)),
    )
    report = orjson.loads(run.stdout)
    assert report["replayed"] == len(mine) and report["differences"] == 0, report
    assert report["topics"][0]["identical"] == len(mine)
    # an empty range replays nothing and finds nothing
    run = enricher(processed, "replay", "--mode", "diff", "--json", "--to-offset", "0")
    assert orjson.loads(run.stdout)["replayed"] == 0 and run.returncode == 0


def test_diff_in_mid_history_compares_like_for_like_after_a_warm_up(processed: Pipeline) -> None:
    # from offset 3 on, every device was identified earlier (R: userId comes from state)
    cold = enricher(processed, "replay", "--mode", "diff", "--json", "--from-offset", "3")
    report = orjson.loads(cold.stdout)
    assert cold.returncode == 1 and "userId" in report["topics"][0]["fields"]
    warm = enricher(
        processed,
        "replay",
        "--mode",
        "diff",
        "--json",
        "--from-offset",
        "3",
        "--warm-from",
        "start",
    )
    report = orjson.loads(warm.stdout)
    assert warm.returncode == 0, report
    assert report["differences"] == 0 and report["warmedUpWith"] > 0
    assert report["replayed"] + report["warmedUpWith"] == 40


@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)
def test_rebuild_into_a_new_app_id_and_topics(processed: Pipeline) -> None:
    new_app = f"{processed.app_id}-v2"
    run = enricher(processed, "replay", "--mode", "rebuild", "--app-id", new_app, "--json")
    assert run.returncode == 0, run.stderr
    report = orjson.loads(run.stdout)
    assert report["replayed"] == 40 and report["groupCommitted"]
    rebuilt = asyncio.run(read_all(processed.stack, report["outputs"]["warehouse"], 40))
    original = processed.read("warehouse", 40)
    # deterministic ids: the same messages, field for field (policy unchanged)
    assert {m["messageId"]: m for m in rebuilt} == {
        orjson.loads(r.value)["messageId"]: orjson.loads(r.value) for r in original
    }
    # the new group carries on where the rebuild stopped
    committed = asyncio.run(committed_offsets(broker_settings(processed.stack), new_app))
    assert sum(committed.values()) == 40
    # state from scratch: a second rebuild into the same app id is refused
    again = enricher(processed, "replay", "--mode", "rebuild", "--app-id", new_app)
    assert again.returncode == 2 and "already has state" in again.stderr
    # resuming (here: after a complete run) applies nothing twice and produces nothing new
    resumed = enricher(
        processed, "replay", "--mode", "rebuild", "--app-id", new_app, "--resume", "--json"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert len(asyncio.run(read_all(processed.stack, report["outputs"]["warehouse"], 40))) == 40


def test_replay_by_time_range(processed: Pipeline) -> None:
    later = [("late", {"type": "track", "event": "Late"})] * 3
    stamp = int(time.time() * 1000) + 60_000
    processed.produce_json(later, timestamps_ms=[stamp] * 3)
    run = enricher(processed, "replay", "--mode", "diff", "--json", "--from", str(stamp - 1))
    report = orjson.loads(run.stdout)
    assert report["replayed"] == 3
    # never processed by a worker: they are only in the replay
    assert report["topics"][0]["onlyInReplay"] == 3


def test_import_jsonl_gzip_in_order_per_device(pipeline: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl.gz"
    lines = [
        orjson.dumps(
            {
                "type": "track",
                "event": f"E{i}",
                "anonymousId": f"a-{i % 3}",
                "receivedAt": f"2025-01-01T00:00:{i:02d}.000Z",
            }
        )
        for i in range(30)
    ] + [b"not json"]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    run = enricher(pipeline, "import", str(path))
    assert run.returncode == 0, run.stderr
    assert "imported 31 records" in run.stdout and "1 lines are not JSON" in run.stdout
    raw = pipeline.read("raw", 31)
    assert len(raw) == 31
    for device in ("a-0", "a-1", "a-2"):
        mine = [r for r in raw if r.key == device.encode()]
        assert len({r.partition for r in mine}) == 1  # one device, one partition
        events = [orjson.loads(r.value)["event"] for r in sorted(mine, key=lambda r: r.offset)]
        assert events == sorted(events, key=lambda e: int(e[1:]))
        assert all(r.timestamp_ms < 1_800_000_000_000 for r in mine)  # event time kept
    pipeline.start_worker()
    assert len(pipeline.read("deadletter", 1)) == 1


def test_deadletter_list_and_requeue_after_a_fix(pipeline: Pipeline, tmp_path: Path) -> None:
    bad = [("d1", {"type": "track"}), ("d2", {"type": "track"}), ("d3", {"type": "nope"})]
    pipeline.produce_json(bad)
    pipeline.start_worker()
    assert len(pipeline.read("deadletter", 3)) == 3
    listed = enricher(pipeline, "deadletter", "list")
    assert "missing_event" in listed.stdout and "invalid_type" in listed.stdout
    shown = enricher(pipeline, "deadletter", "show", "--code", "missing_event")
    records = [orjson.loads(line) for line in shown.stdout.splitlines()]
    assert len(records) == 2 and all(r["error"]["code"] == "missing_event" for r in records)
    # fix the records by hand and requeue the edited file
    edited = tmp_path / "fixed.jsonl"
    for record in records:
        record["payload"] = orjson.dumps(
            {**orjson.loads(record["payload"]), "event": "Fixed"}
        ).decode()
    edited.write_bytes(b"\n".join(orjson.dumps(r) for r in records))
    run = enricher(pipeline, "deadletter", "requeue", "--file", str(edited))
    assert run.returncode == 0 and "requeued 2 records" in run.stdout, run.stderr
    fixed = [r.json() for r in pipeline.read("warehouse", 2)]
    assert sorted(m["event"] for m in fixed) == ["Fixed", "Fixed"]
    assert sorted(m["_enrichment"]["device"] for m in fixed) == ["d1", "d2"]
    # requeue by code from the topic itself: the invalid_type one dead-letters again
    run = enricher(pipeline, "deadletter", "requeue", "--code", "invalid_type")
    assert "requeued 1 records" in run.stdout
    assert len(pipeline.read("deadletter", 4)) == 4


async def read_all(stack: StackEndpoints, topic: str, count: int) -> list[dict[str, object]]:
    from tests.pipeline import read_topic

    return [orjson.loads(r.value) for r in await read_topic(stack.bootstrap, topic, count, 60)]


def test_sink_rewind_redelivers_from_a_time(pipeline: Pipeline) -> None:
    """A plain aiokafka consumer in the sink's group stands in for a sink (issue 7)."""
    topic = pipeline.topic("destinations")
    group = f"{pipeline.app_id}.sink.webhook"
    base = int(time.time() * 1000) - 3_600_000
    events = [(f"k{i}", {"n": i}) for i in range(20)]
    # 4 partitions by topic creation below; timestamps one minute apart
    asyncio.run(create_topic(pipeline.stack, topic, 4))
    pipeline.produce_json(
        events, role="destinations", timestamps_ms=[base + i * 60_000 for i in range(20)]
    )
    asyncio.run(consume_all(pipeline.stack, topic, group, 20))

    # refused while the sink runs
    async def while_running() -> subprocess.CompletedProcess[str]:
        consumer = sink_consumer(pipeline.stack, topic, group)
        await consumer.start()
        try:
            deadline = time.monotonic() + 30
            while not consumer.assignment() and time.monotonic() < deadline:
                await consumer.getmany(timeout_ms=200)
            return await asyncio.to_thread(
                enricher, pipeline, "sink", "rewind", "webhook", "--to", str(base)
            )
        finally:
            await consumer.stop()

    refused = asyncio.run(while_running())
    assert refused.returncode == 2 and "is running" in refused.stderr
    run = enricher(pipeline, "sink", "rewind", "webhook", "--to", str(base + 10 * 60_000))
    assert run.returncode == 0, run.stderr
    again = asyncio.run(consume_all(pipeline.stack, topic, group, 10))
    assert sorted(v["n"] for v in again) == list(range(10, 20))


def sink_consumer(stack: StackEndpoints, topic: str, group: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=3000,
        rebalance_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    return consumer


async def consume_all(
    stack: StackEndpoints, topic: str, group: str, count: int
) -> list[dict[str, int]]:
    consumer = sink_consumer(stack, topic, group)
    await consumer.start()
    values: list[dict[str, int]] = []
    try:
        deadline = time.monotonic() + 60
        while len(values) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values += [orjson.loads(m.value) for ms in batch.values() for m in ms]
        await consumer.commit()
        extra = await consumer.getmany(timeout_ms=500)
        values += [orjson.loads(m.value) for ms in extra.values() for m in ms]
    finally:
        await consumer.stop()
    return values


async def create_topic(stack: StackEndpoints, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
