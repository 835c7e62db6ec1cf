"""Device records in buckets (issue 21, layout 2), through the running worker: an app whose
records were written before (a key each, format 1 or 2) carries on with them after the
upgrade, and records idle past the expiry are reclaimed by the worker's sweep as a key's
expiry reclaimed them before. On the single Redis and on the Redis Cluster."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from enrichers import DeviceState
from enrichers.policy import DAY_MS
from streams.state.keys import DEVICE_BUCKETS, KeySpace
from streams.state.redis_client import connect
from streams.state.store import EXPIRY_MARGIN_MS, encode_device
from tests.pipeline import Pipeline
from tests.sinks import wait_for

pytestmark = pytest.mark.e2e


def write_records(url: str, keys: dict[str, bytes], fields: dict[tuple[str, str], bytes]) -> None:
    """Raw writes: records at Redis ``keys`` (layout 1), and at (bucket, device) ``fields``."""

    async def write() -> None:
        client = connect(url)
        try:
            for key, record in keys.items():
                await client.set(key, record, px=30 * DAY_MS)
            for (bucket, device), record in fields.items():
                await client.hset(bucket, device, record)
        finally:
            await client.aclose()

    asyncio.run(write())


def stored(url: str, keys: KeySpace, devices: list[str]) -> tuple[list[str], list[str], bytes]:
    """(devices with a layout-1 key, devices in their bucket, the recorded layout)."""

    async def read() -> tuple[list[str], list[str], bytes]:
        client = connect(url)
        try:
            legacy = [d for d in devices if await client.exists(keys.legacy_device(d))]
            bucketed = [d for d in devices if await client.hexists(keys.device_bucket(d), d)]
            return legacy, bucketed, await client.get(keys.layout()) or b""
        finally:
            await client.aclose()

    return asyncio.run(read())


@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)
def test_records_from_before_the_upgrade_carry_on_and_idle_ones_are_swept(
    pipeline: Pipeline,
) -> None:
    keys = KeySpace(pipeline.app_id, DEVICE_BUCKETS)
    now = int(time.time() * 1000)
    known = DeviceState(
        aid="aid-known", uid="user-known", utraits={"plan": "pro"}, last_seen_ms=now - 60_000
    )
    format_1 = b'~=7\n{"a":"aid-old","u":"user-old","s":%d,"n":1}' % (now - 60_000)
    idle = DeviceState(aid="aid-idle", last_seen_ms=now - DAY_MS - EXPIRY_MARGIN_MS - 1)
    write_records(
        pipeline.redis_url,
        {
            keys.legacy_device("dev-known"): encode_device(known, 3),
            keys.legacy_device("dev-old"): format_1,
        },
        {(keys.device_bucket("dev-idle"), "dev-idle"): encode_device(idle, 5)},
    )
    pipeline.extra_env.update(ENRICHER_DEVICE_TTL_DAYS="1", ENRICHER_DEVICE_SWEEP_SECONDS="1")
    pipeline.start_worker()
    pipeline.produce_json(
        [
            ("dev-known", {"type": "track", "event": "E", "messageId": "m-known"}),
            ("dev-old", {"type": "page", "messageId": "m-old"}),
        ]
    )
    warehouse = {r.json()["messageId"]: r.json() for r in pipeline.read("warehouse", 2)}
    assert warehouse["m-known"]["userId"] == "user-known"
    assert warehouse["m-known"]["anonymousId"] == "aid-known"
    assert warehouse["m-old"]["userId"] == "user-old"
    assert warehouse["m-old"]["anonymousId"] == "aid-old"
    devices = ["dev-known", "dev-old", "dev-idle"]
    assert wait_for(lambda: stored(pipeline.redis_url, keys, devices)[1] == devices[:2], 20)
    legacy, _, layout = stored(pipeline.redis_url, keys, devices)
    assert legacy == [] and layout == f"buckets={DEVICE_BUCKETS}".encode()
    worker = pipeline.workers[0]
    assert wait_for(lambda: "device sweep: 1 idle records removed" in worker.log(), 20)
    assert "device layout: 2 records moved into buckets=1024" in worker.log()
    assert "aid-known" not in worker.log() and "user-known" not in worker.log()


def test_a_worker_with_another_bucket_count_stops_with_a_clear_message(
    pipeline: Pipeline,
) -> None:
    client = redis.Redis.from_url(pipeline.stack.redis_url)
    client.set(KeySpace(pipeline.app_id).layout(), "buckets=64")
    client.close()
    worker = pipeline.start_worker(wait=False)
    assert wait_for(lambda: worker.process.poll() is not None, 60), "the worker kept running"
    assert "are in buckets=64, not buckets=1024: set ENRICHER_DEVICE_BUCKETS" in worker.log()
