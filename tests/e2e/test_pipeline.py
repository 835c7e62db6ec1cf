"""The running pipeline end to end: the real worker, broker and Redis (CONTRACT.md)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from streams.worker.groups import committed_offsets
from tests.pipeline import Pipeline, broker_settings

GOOD_EVENTS: list[tuple[str | None, dict[str, Any]]] = [
    ("dev-a", {"type": "track", "event": "Viewed", "messageId": "g-1", "properties": {"p": 1}}),
    ("dev-a", {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "g-2"}),
    (
        "dev-a",
        {
            "type": "page",
            "name": "Home",
            "messageId": "g-3",
            "options": {"traits": {"plan": "pro"}, "ip": "203.0.113.7"},
        },
    ),
    ("dev-a", {"type": "reset"}),
    ("dev-a", {"type": "screen", "name": "Cart", "messageId": "g-4"}),
    (
        None,
        {
            "type": "group",
            "groupId": "acme",
            "traits": {"size": 5},
            "anonymousId": "anon-b",
            "messageId": "g-5",
        },
    ),
    (None, {"type": "alias", "userId": "u9", "previousId": "old", "messageId": "g-6"}),
    (
        "dev-c",
        {"type": "track", "event": "Hidden", "integrations": {"All": False}, "messageId": "g-7"},
    ),
    ("dev-c", {"type": "expireCookies"}),
]
BAD_RECORDS: list[tuple[bytes | None, bytes, str]] = [
    (b"dev-x", b"{oops", "invalid_json"),
    (b"dev-x", b"[1,2,3]", "not_an_object"),
    (b"dev-x", b'{"type":"purchase"}', "invalid_type"),
    (b"dev-x", b'{"type":"track"}', "missing_event"),
    (b"dev-x", b'{"type":"identify","traits":"vip"}', "invalid_field"),
    (None, orjson.dumps({"type": "track", "event": "e", "p": "x" * 33_000}), "too_large"),
    (b"dev-x", b'{"type":"track","event":"\xff"}', "invalid_encoding"),
]


def run_sample(pipeline: Pipeline) -> tuple[list[Any], list[Any], list[Any]]:
    pipeline.start_worker()
    pipeline.produce_json(GOOD_EVENTS[:3])
    pipeline.produce((key, value) for key, value, _ in BAD_RECORDS)
    pipeline.produce_json(GOOD_EVENTS[3:])
    warehouse = pipeline.read("warehouse", 7)
    destinations = pipeline.read("destinations", 6)
    deadletter = pipeline.read("deadletter", len(BAD_RECORDS))
    return warehouse, destinations, deadletter


def test_pipeline_end_to_end(pipeline: Pipeline) -> None:
    warehouse, destinations, _ = run_sample(pipeline)

    # R29: one warehouse message per message event, none for control events
    assert len(warehouse) == 7
    by_id = {record.json()["messageId"]: record for record in warehouse}
    assert set(by_id) == {f"g-{i}" for i in range(1, 8)}

    track, identify, page, screen = (by_id[f"g-{i}"].json() for i in range(1, 5))
    assert track["userId"] is None and track["anonymousId"]
    assert identify["userId"] == "u1" and identify["anonymousId"] == track["anonymousId"]
    assert identify["traits"] == {"plan": "pro"}
    assert page["userId"] == "u1" and "traits" not in page  # R19
    assert page["context"] == {"traits": {"plan": "pro"}, "ip": "203.0.113.7"}  # R23, R24
    assert screen["userId"] is None  # R10: reset in between
    assert screen["anonymousId"] != track["anonymousId"]
    # records are keyed by the device (CONTRACT "Device key")
    assert by_id["g-1"].key == b"dev-a"
    assert by_id["g-5"].key == b"anon-b"
    assert by_id["g-6"].key == b"u9"
    group = by_id["g-5"].json()
    assert group["groupId"] == "acme" and group["traits"] == {"size": 5}
    assert group["anonymousId"] == "anon-b"
    alias = by_id["g-6"].json()
    assert alias["userId"] == "u9" and alias["previousId"] == "old"
    for record in warehouse:
        message = record.json()
        assert message["_enrichment"]["device"] == record.key.decode()
        assert message["_enrichment"]["source"].startswith(pipeline.topic("raw") + "/")
        for name in ("receivedAt", "timestamp", "originalTimestamp"):
            assert message[name].endswith("Z")
        assert not {"options", "value", "requestIp"} & message.keys()

    # R25, R29: destinations have no context.traits or _enrichment; All:false stays off
    assert len(destinations) == 6
    shipped = {record.json()["messageId"]: record.json() for record in destinations}
    assert "g-7" not in shipped
    assert shipped["g-3"]["context"] == {"ip": "203.0.113.7"}
    assert all("_enrichment" not in message for message in shipped.values())


def test_every_bad_record_becomes_one_dead_letter(pipeline: Pipeline) -> None:
    warehouse, _, deadletter = run_sample(pipeline)
    assert len(deadletter) == len(BAD_RECORDS)
    letters = [record.json() for record in deadletter]
    assert Counter(letter["error"]["code"] for letter in letters) == Counter(
        code for _, _, code in BAD_RECORDS
    )
    by_code = {letter["error"]["code"]: letter for letter in letters}
    for key, value, code in BAD_RECORDS:
        letter = by_code[code]
        assert letter["error"]["message"]
        assert letter["source"]["topic"] == pipeline.topic("raw")
        assert letter["source"]["key"] == (key.decode() if key else None)
        assert isinstance(letter["source"]["offset"], int)
        assert letter["failedAt"].endswith("Z")
        if letter["payloadEncoding"] == "base64":
            assert base64.b64decode(letter["payload"]) == value
        else:
            assert letter["payload"].encode() == value
    assert by_code["invalid_encoding"]["payloadEncoding"] == "base64"
    # the worker went on: the good events after the bad ones came through
    assert len(warehouse) == 7


def test_a_worker_that_caught_up_has_committed_everything(pipeline: Pipeline) -> None:
    """Monitoring reads the group's lag from its committed offsets (Kafka's
    kafka-consumer-groups, exporters): once the worker has caught up they reach the end, even
    with a commit interval far longer than the test."""
    pipeline.extra_env["ENRICHER_COMMIT_INTERVAL"] = "3600"
    run_sample(pipeline)
    raw = len(GOOD_EVENTS) + len(BAD_RECORDS)
    settings = broker_settings(pipeline.stack)
    deadline = time.monotonic() + 20
    while True:
        committed = asyncio.run(
            committed_offsets(settings, pipeline.app_id, [pipeline.topic("raw")])
        )
        if sum(committed.values()) == raw or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sum(committed.values()) == raw, committed
    assert pipeline.workers[0].process.poll() is None  # committed while running, not on exit


def test_topics_are_created_on_start(pipeline: Pipeline) -> None:
    pipeline.start_worker()

    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.stack.bootstrap)
        await admin.start()
        try:
            names = [pipeline.topic(r) for r in ("raw", "warehouse", "destinations", "deadletter")]
            found = await admin.describe_topics(names)
            return {t["topic"]: len(t["partitions"]) for t in found if t["error_code"] == 0}
        finally:
            await admin.close()

    partitions = asyncio.run(describe())
    assert partitions == {
        pipeline.topic(r): 8 for r in ("raw", "warehouse", "destinations", "deadletter")
    }
