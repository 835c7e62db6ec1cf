"""Many workers on Redis Cluster state (SPEC R34): a worker that stalls mid-batch loses its
partitions to another worker; when it wakes up and finishes its old batch, the offset fence
refuses every device write the new owner already made, so nothing is applied twice."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults import account, wait_for_output
from tests.pipeline import Pipeline, WorkerProcess
from tests.workload import mixed_events

EVENTS = 45_000
DEVICES = 1_000
TRIES = 3


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
