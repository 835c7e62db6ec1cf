"""The batch path alone, for profiling: the bench workload through the real BatchProcessor and
StateStore on a Redis, outputs discarded (no broker), reporting process CPU µs per event,
Redis commands per event and the Redis memory the state takes per device.

    python -m bench.batch_path [--policies] [--profile]
    # BENCH_REDIS_URL, BENCH_EVENTS, BENCH_DEVICES, BENCH_BATCH

``--profile`` prints cProfile's top functions (the pure build shows every Python function;
for the compiled build use py-spy --native). Issue 21's steps were measured with it, each
against the one before (README, Performance)."""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bench.workload import raw_events
from streams import build
from streams.settings import Settings
from streams.state.keys import KeySpace
from streams.state.redis_client import connect, unlink_matching
from streams.state.store import StateStore
from streams.worker.app import GC_THRESHOLDS
from streams.worker.batch import BatchProcessor, OutputTopics
from streams.worker.records import InRecord, OutRecord

POLICIES = {
    "ENRICHER_IP_POLICY_WAREHOUSE": "truncate",
    "ENRICHER_IP_POLICY_DESTINATIONS": "mask",
    "ENRICHER_CONTEXT_TRAITS": "*",
}
BATCH = int(os.environ.get("BENCH_BATCH", "2000"))
"""Events a batch (the worker's ENRICHER_BATCH_MAX is the default, 2,000)."""
DEVICES = int(os.environ.get("BENCH_DEVICES", "20000"))
"""Devices in the workload: fewer give each a longer history (a fuller R33 window)."""
PARTITIONS = 8


class Discard:
    async def write(self, records: Sequence[OutRecord]) -> None:
        return None


def _commands(stats: dict[str, Any]) -> int:
    return sum(int(v["calls"]) for v in stats.values())


async def run(events: int, environ: dict[str, str], profile: bool) -> None:
    settings = Settings.load(environ)
    client = connect(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    app_id = f"batch-path-{uuid.uuid4().hex[:6]}"
    store = StateStore(
        client, KeySpace(app_id, settings.device_buckets), settings.policy.device_ttl_ms
    )
    processor = BatchProcessor(store, Discard(), OutputTopics("w", "d", "x"), settings.policy)
    records = [
        InRecord("raw", int(key[-6:]) % PARTITIONS, n, key, value, 1_764_410_000_000 + n)
        for n, (key, value) in enumerate(raw_events(events, DEVICES))
    ]
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    memory_before = int((await client.info("memory"))["used_memory"])
    await processor.process(batches[0])  # warm: scripts loaded, caches filled
    gc.freeze()  # as the worker does once started
    gc.set_threshold(*GC_THRESHOLDS)
    before = _commands(await client.info("commandstats"))
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for batch in batches[1:]:
        await processor.process(batch)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    count = len(records) - len(batches[0])
    commands = _commands(await client.info("commandstats")) - before - 1  # the INFO
    devices = len({r.key for r in records})
    grown = int((await client.info("memory"))["used_memory"]) - memory_before
    # the run's keys go (each run has an app id of its own: left behind, they would slow
    # every later scan of this Redis, R39's erasure scans included)
    await unlink_matching(client, store.keys.pattern())
    await client.aclose()
    print(
        f"{build.describe()}: {count} events, CPU {cpu * 1e6 / count:.1f} µs/event, "
        f"wall {wall * 1e6 / count:.1f} µs/event, Redis commands/event {commands / count:.2f}, "
        f"used memory grew {grown / devices:.0f} bytes per device ({devices} devices)"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main() -> int:
    events = int(os.environ.get("BENCH_EVENTS", "60000"))
    environ = {**os.environ, **(POLICIES if "--policies" in sys.argv else {})}
    asyncio.run(run(events, environ, "--profile" in sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
