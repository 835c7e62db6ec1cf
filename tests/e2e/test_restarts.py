"""Stopping the worker in the middle of the stream loses nothing and applies nothing twice
(CONTRACT, SPEC R34): every accepted raw event reaches both outputs at least once, repeats
carry the same messageId and content, and the state in Redis equals a clean single run."""

from __future__ import annotations

import re
import time
from collections import defaultdict

import orjson
import pytest

from tests.faults import identity, read_every, stored_states
from tests.pipeline import Pipeline, WorkerProcess
from tests.workload import mixed_events, reference_states

EVENTS = 20_000
DEVICES = 400


def wait_for_progress(worker: WorkerProcess, batches: int) -> None:
    """Until the worker has finished ``batches`` batches (its ``/stats``): it is mid-stream.
    Asked of the worker, not read from the outputs: reading a topic took longer than the
    worker now needs for the whole stream (the stop then came too late to test anything)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, stats = worker.get("/stats")
        if status == 200 and stats["batches"] >= batches:
            return
        assert worker.process.poll() is None, worker.log()[-3000:]
        time.sleep(0.02)
    raise AssertionError("the worker made no progress")


@pytest.mark.parametrize(
    ("stop", "pipeline"),
    [("sigterm", "single"), ("sigkill", "single"), ("sigkill", "cluster")],
    indirect=["pipeline"],
)
def test_stopping_mid_stream_loses_nothing(pipeline: Pipeline, stop: str) -> None:
    events = mixed_events(EVENTS, DEVICES)
    message_ids = {body["messageId"] for _, body in events if "messageId" in body}
    if stop == "sigkill":
        # no commit before the kill: the restarted worker re-reads everything, and the
        # offset fence must keep every state change from applying twice
        pipeline.extra_env["ENRICHER_COMMIT_INTERVAL"] = "600"
    first = pipeline.start_worker()
    pipeline.produce_json(events)
    wait_for_progress(first, 1)
    if stop == "sigterm":
        first.stop()
    else:
        first.kill()
    partial = pipeline.read("warehouse", 0, timeout=2)
    assert len(partial) < len(message_ids), "stopped too late to test anything"
    second = pipeline.start_worker(wait=False)

    warehouse = read_every(pipeline, "warehouse", message_ids, 180)
    destinations = read_every(pipeline, "destinations", message_ids, 60)
    print(
        f"{stop}: stopped after {len(partial)} warehouse records; "
        f"{len(warehouse) - len(message_ids)} repeated after the restart"
    )
    for output in (warehouse, destinations):
        copies: dict[str, list[bytes]] = defaultdict(list)
        for record in output:
            copies[orjson.loads(record.value)["messageId"]].append(record.value)
        assert set(copies) == message_ids  # every accepted event, on both outputs
        # repeats are the same message: the same messageId and the same content
        assert all(len(set(values)) == 1 for values in copies.values())

    second.stop()
    if stop == "sigkill":
        # the restarted worker saw events whose state was already saved, and skipped them
        skipped = [int(n) for n in re.findall(r"already_applied=(\d+)", second.log())]
        assert skipped and skipped[-1] > 0, second.log()[-2000:]
    keys = sorted({key for key, _ in events})
    expected = reference_states(events, pipeline.topic("raw"))
    stored = stored_states(pipeline.redis_url, pipeline.app_id, keys)
    mismatched = [k for k in keys if identity(stored[k]) != identity(expected[k])]
    assert not mismatched, [(k, identity(stored[k]), identity(expected[k])) for k in mismatched[:3]]
