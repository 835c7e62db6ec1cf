"""Many workers on Redis Cluster state (SPEC R34, CONTRACT): a worker that stalls mid-batch
loses its partitions to another worker; when it wakes up and finishes its old batch, the
offset fence refuses every device write the new owner already made, so nothing is applied
twice. A cluster that stops answering is waited out, like a single Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from streams.devcluster import DevCluster
from tests.faults import account, wait_for_output
from tests.pipeline import Pipeline, WorkerProcess
from tests.workload import mixed_events

EVENTS = 45_000
DEVICES = 1_000
TRIES = 3
OUTAGE_LIMIT = 60.0


def shared_out(worker: WorkerProcess) -> None:
    """Until the worker holds some but not all of the raw topic's partitions."""
    deadline = time.monotonic() + 60
    while not (worker.assignments() and 0 < len(worker.assignments()[-1]) < 8):
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.2)


@pytest.mark.parametrize("pipeline", ["cluster"], indirect=True)
def test_a_stale_worker_is_stopped_by_the_fence(pipeline: Pipeline) -> None:
    events = mixed_events(EVENTS, DEVICES, seed=21)
    chunk = len(events) // TRIES
    pipeline.extra_env["ENRICHER_BATCH_MAX"] = "2000"
    stale = pipeline.start_worker()
    fresh = pipeline.start_worker()
    fenced = sent = 0
    for attempt in range(TRIES):  # a stall lands mid-batch most of the time; retried if not
        shared_out(stale)
        shared_out(fresh)
        part = events[sent : sent + chunk] if attempt < TRIES - 1 else events[sent:]
        sent += len(part)
        pipeline.produce_json(part)
        wait_for_output(pipeline, messages_in(events[:sent]) - messages_in(part) * 3 // 4)
        os.kill(stale.process.pid, signal.SIGSTOP)  # stalls (GC pause, swapped out, ...)
        # its session expires; the fresh worker takes its partitions and redoes its batch
        time.sleep(12)
        os.kill(stale.process.pid, signal.SIGCONT)  # wakes up and saves its old batch
        time.sleep(2)
        fenced = stale.get("/stats")[1]["fencedWrites"]
        if fenced:
            print(f"\nstall {attempt + 1}: {fenced} stale device writes refused")
            break
    if sent < len(events):
        pipeline.produce_json(events[sent:])
    account("stale worker fenced (cluster)", pipeline, events, pipeline.redis_url)
    assert fenced > 0, (stale.log()[-3000:], fresh.log()[-3000:])


def messages_in(events: list[tuple[str, dict[str, object]]]) -> int:
    return sum("messageId" in body for _, body in events)


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
