"""Many workers on Redis Cluster state (SPEC R34, CONTRACT): a worker that stalls mid-batch
loses its partitions to another worker; when it wakes up and finishes its old batch, the
offset fence refuses every device write the new owner already made, so nothing is applied
twice. A cluster that stops answering is waited out, like a single Redis."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from streams.dev.cluster import DevCluster
from tests.faults import account, wait_for_output
from tests.pipeline import Pipeline
from tests.workload import messages_in, mixed_events

EVENTS = 45_000
DEVICES = 1_000
OUTAGE_LIMIT = 60.0


def test_a_stale_worker_is_stopped_by_the_fence(pipeline: Pipeline, tmp_path: Path) -> None:
    events = mixed_events(EVENTS, DEVICES, seed=21)
    with DevCluster(tmp_path / "cluster") as cluster:  # its own: its nodes are frozen
        pipeline.extra_env["ENRICHER_REDIS_URL"] = cluster.url
        stale = pipeline.start_worker()
        fresh = pipeline.start_worker()
        stale.wait_assigned(lambda partitions: 0 < len(partitions) < 8)
        fresh.wait_assigned(lambda partitions: 0 < len(partitions) < 8)
        producer = threading.Thread(target=pipeline.produce_json, args=(events,))
        producer.start()
        deadline = time.monotonic() + 60
        while stale.get("/stats")[1]["batches"] < 2:  # busy with a backlog
            assert time.monotonic() < deadline, stale.log()[-3000:]
            time.sleep(0.05)
        # Catch the stale worker mid-batch: with Redis not answering, no batch can finish,
        # so it is inside one (waiting for its load or its save) when it stalls.
        for pid in cluster.pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(stale.process.pid, signal.SIGSTOP)  # stalls (GC pause, swapped out, ...)
        for pid in cluster.pids:
            os.kill(pid, signal.SIGCONT)
        # its session expires; the fresh worker takes its partitions and redoes its batch
        fresh.wait_assigned(lambda partitions: partitions == set(range(8)))
        time.sleep(5)
        os.kill(stale.process.pid, signal.SIGCONT)  # wakes up and finishes its old batch
        producer.join()
        account("stale worker fenced (cluster)", pipeline, events, cluster.url)
        stats = stale.get("/stats")[1]
    # the fence stopped it: its writes were refused (or, had it loaded the state after the
    # fresh worker's writes, it found the events already applied)
    print(
        f"\nstale worker: {stats['fencedWrites']} writes refused, {stats['alreadyApplied']} skipped"
    )
    assert stats["fencedWrites"] + stats["alreadyApplied"] > 0, stale.log()[-3000:]


def test_a_cluster_outage_is_waited_out(pipeline: Pipeline, tmp_path: Path) -> None:
    events = mixed_events(20_000, DEVICES, seed=23)
    with DevCluster(tmp_path / "cluster") as cluster:  # its own: every node is frozen
        pipeline.extra_env["ENRICHER_REDIS_URL"] = cluster.url
        worker = pipeline.start_worker()
        pipeline.produce_json(events)
        wait_for_output(pipeline, messages_in(events) // 3)
        for pid in cluster.pids:
            os.kill(pid, signal.SIGSTOP)  # no node answers: connections hang
        frozen = time.monotonic()
        # redis-py retries (and re-reads the slot map) first; then the worker's own retry
        # loop takes over, and the outage shows in the metrics while it lasts
        stats: dict[str, Any] = {}
        while time.monotonic() - frozen < OUTAGE_LIMIT and not sum(
            stats.get("retries", {}).values()
        ):
            time.sleep(1)
            stats = worker.get("/stats")[1]
        outage = time.monotonic() - frozen
        for pid in cluster.pids:
            os.kill(pid, signal.SIGCONT)
        assert sum(stats["retries"].values()) > 0, stats
        account(f"Redis Cluster unreachable {outage:.0f} s at 33%", pipeline, events, cluster.url)
        assert worker.process.poll() is None, worker.log()[-3000:]
