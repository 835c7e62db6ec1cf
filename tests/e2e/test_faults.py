"""Faults inflicted on the real worker processes, broker and Redis while 50k events flow
(SPEC R34, CONTRACT): nothing lost, nothing applied twice, repeats identical, and the state
in Redis equal to a clean single run. Each test prints its FAULT-TABLE row."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.faults import RedisServer, account, read_every, stored_states, wait_for_output
from tests.pipeline import Pipeline, WorkerProcess
from tests.workload import messages_in, mixed_events

EVENTS = 50_000
DEVICES = 2_000


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)
@pytest.mark.tansu_smoke
def test_sigkill_at_random_points(pipeline: Pipeline) -> None:
    seed = random.randrange(1_000_000)
    print(f"\nseed {seed}")
    rng = random.Random(seed)
    events = mixed_events(EVENTS, DEVICES, seed=seed)
    total = messages_in(events)
    kill_points = sorted(int(total * rng.uniform(0.05, 0.85)) for _ in range(3))
    worker = pipeline.start_worker()
    pipeline.produce_json(events)
    for point in kill_points:
        wait_for_output(pipeline, point)
        worker.kill()
        worker = pipeline.start_worker(wait=False)
    account(f"SIGKILL x3 at {kill_points}", pipeline, events, pipeline.redis_url)


@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)
def test_second_worker_joins_and_first_leaves(pipeline: Pipeline) -> None:
    events = mixed_events(EVENTS, DEVICES, seed=11)
    total = messages_in(events)
    first = pipeline.start_worker()
    pipeline.produce_json(events)
    wait_for_output(pipeline, total // 5)
    every = set(range(8))
    second = pipeline.start_worker()  # joins: the partitions are shared out again
    second.wait_assigned(lambda partitions: 0 < len(partitions) < 8)
    wait_for_output(pipeline, total * 3 // 5)
    first.stop()  # leaves: its partitions move to the second worker
    second.wait_assigned(lambda partitions: partitions == every)
    account(
        f"rebalance: join at 20%, leave at 60% ({pipeline.redis_url.split(':')[0]})",
        pipeline,
        events,
        pipeline.redis_url,
    )
    assert second.process.poll() is None
    shared = first.assignments()
    # the first worker had them all, then gave some to the second
    assert shared[0] == every and any(0 < len(p) < 8 for p in shared[1:]), shared


def test_redis_restart_mid_stream(pipeline: Pipeline, private_redis: RedisServer) -> None:
    events = mixed_events(EVENTS, DEVICES, seed=12)
    pipeline.extra_env["ENRICHER_REDIS_URL"] = private_redis.url
    worker = pipeline.start_worker()
    pipeline.produce_json(events)
    wait_for_output(pipeline, messages_in(events) // 3)
    private_redis.stop()
    time.sleep(3)
    private_redis.start()
    account("Redis restart at 33%", pipeline, events, private_redis.url)
    worker.stop()
    assert "retrying" in worker.log()  # the outage is reported


def test_redis_unreachable_for_10_seconds(pipeline: Pipeline, private_redis: RedisServer) -> None:
    events = mixed_events(EVENTS, DEVICES, seed=13)
    pipeline.extra_env["ENRICHER_REDIS_URL"] = private_redis.url
    worker = pipeline.start_worker()
    pipeline.produce_json(events)
    wait_for_output(pipeline, messages_in(events) // 3)
    private_redis.freeze()
    time.sleep(10)
    status, stats = worker.get("/stats")  # the outage shows in the metrics while it lasts
    private_redis.thaw()
    assert status == 200 and sum(stats["retries"].values()) > 0, stats
    account("Redis unreachable 10 s at 33%", pipeline, events, private_redis.url)
    worker.stop()
    retries = re.findall(r"retries=\{([^}]*)\}", worker.log())
    assert retries and retries[-1], worker.log()[-3000:]


def test_one_devices_records_on_two_partitions_lose_no_update_with_two_workers(
    pipeline: Pipeline,
) -> None:
    """R34: records without a key (CONTRACT allows them) name their device by anonymousId, so
    one device's records land on several partitions, owned by two workers. Each worker saves a
    device only over the version it loaded; one that finds it saved meanwhile applies its
    events again on that state. Every identify adds a trait of its own: all must be cached."""
    workers = [pipeline.start_worker(), pipeline.start_worker()]
    workers[1].wait_assigned(lambda partitions: 0 < len(partitions) < 8)
    devices, per_device = 30, 24
    expected: dict[str, set[str]] = {}
    produced: Counter[int] = Counter()
    concurrent = 0
    for round_ in range(5):  # until the two workers did meet on a device (they nearly always do)
        records: list[tuple[int, bytes]] = []
        for n in range(per_device):
            for d in range(devices):
                device = f"shared-{round_}-{d}"
                trait = f"t{n}"
                expected.setdefault(device, set()).add(trait)
                body = {
                    "type": "identify",
                    "anonymousId": device,
                    "traits": {trait: n},
                    "messageId": f"{device}-{n}",
                }
                records.append((n % 8, orjson.dumps(body)))
        asyncio.run(produce_to_partitions(pipeline, records))
        produced.update(partition for partition, _ in records)
        ids = {f"{device}-{n}" for device in expected for n in range(per_device)}
        read_every(pipeline, "warehouse", ids, 120)
        # outputs are produced before a batch's state is saved, and a worker that finds a
        # device saved meanwhile produces and saves again: wait until both finished
        wait_processed(workers, produced)
        concurrent = sum(w.get("/stats")[1]["concurrentSaves"] for w in workers)
        if concurrent:
            break
    assert concurrent > 0, "the two workers never saved one device at the same time"
    stored = stored_states(pipeline.redis_url, pipeline.app_id, sorted(expected))
    lost = {
        d: expected[d] - set(stored[d].utraits)
        for d in expected
        if expected[d] - set(stored[d].utraits)
    }
    assert not lost, f"lost updates: {dict(list(lost.items())[:3])}"


def wait_processed(workers: list[WorkerProcess], produced: Counter[int]) -> None:
    """Until the workers together finished every record produced to each partition."""
    deadline = time.monotonic() + 60
    while True:
        done: Counter[int] = Counter()
        for worker in workers:
            for partition, offset in worker.positions().items():
                done[partition] = max(done[partition], offset)
        if all(done[p] >= count for p, count in produced.items()):
            return
        assert time.monotonic() < deadline, f"processed {dict(done)} of {dict(produced)}"
        time.sleep(0.2)


async def produce_to_partitions(pipeline: Pipeline, records: list[tuple[int, bytes]]) -> None:
    """Keyless records, each to the partition given."""
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.stack.bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = [
            await producer.send(pipeline.topic("raw"), value, partition=partition)
            for partition, value in records
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
