"""Metrics, health endpoints and JSON logs of a running worker (issue 8)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import TypeVar

import orjson
import pytest

from streams.observe.metrics import sample_values
from tests.pipeline import Pipeline, WorkerProcess

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def scrape(worker: WorkerProcess) -> str:
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(response.read().decode())


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for found, value in sample_values(text, name)
        if all(found.get(k) == v for k, v in labels.items())
    )


def wait_for(check: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


def test_metrics_move_as_events_flow(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    before = scrape(worker)
    assert total(before, "enricher_events_in_total") == 0
    events = [(f"dev-{i % 5}", {"type": "track", "event": "Viewed"}) for i in range(40)]
    events += [("dev-0", {"type": "identify", "userId": "u-1"})]
    events += [("dev-9", {"type": "track"})]  # R: track without event -> missing_event
    events += [("dev-1", {"type": "track", "event": "Dup", "messageId": "m-1"})] * 2
    pipeline.produce_json(events)

    def settled() -> str | None:
        return scrape(worker) if sum(worker.positions().values()) == len(events) else None

    text = wait_for(settled)
    assert total(text, "enricher_events_in_total", type="track") == 42
    assert total(text, "enricher_events_in_total", type="identify") == 1
    assert total(text, "enricher_dead_letters_total", code="missing_event") == 1
    assert total(text, "enricher_duplicates_total") == 1
    warehouse = pipeline.topic("warehouse")
    assert total(text, "enricher_messages_out_total", topic=warehouse) == 42
    assert total(text, "enricher_batch_size_count") >= 1
    assert total(text, "enricher_batch_size_sum") == len(events)
    assert total(text, "enricher_batch_seconds_count") == total(text, "enricher_batch_size_count")
    assert total(text, "enricher_redis_seconds_count", operation="load") >= 1
    assert total(text, "enricher_redis_seconds_count", operation="save") >= 1
    # lag is exported per partition, one series for every partition the worker consumed
    lag_series = list(sample_values(text, "enricher_consumer_lag"))
    positions = list(sample_values(text, "enricher_consumer_position"))
    assert {tuple(sorted(s.items())) for s, _ in lag_series} <= {
        tuple(sorted(s.items())) for s, _ in positions
    }
    assert all(labels["topic"] == pipeline.topic("raw") for labels, _ in positions)


@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)
def test_health_and_readiness(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    status, body = worker.get("/healthz")
    assert status == 200 and body["status"] == "ok"

    def ready() -> dict[str, object] | None:
        code, answer = worker.get("/readyz")
        return answer if code == 200 else None

    body = wait_for(ready)
    assert body["redis"] == "ok" and body["broker"] == "ok"
    assert len(body["partitions"]) == 8  # alone in the group: every raw partition


def test_json_log_lines(pipeline: Pipeline) -> None:
    pipeline.extra_env["ENRICHER_LOG_FORMAT"] = "json"
    worker = pipeline.start_worker()
    pipeline.produce_json([("d", {"type": "track", "event": "E"})])
    pipeline.read("warehouse", 1)
    worker.stop()
    lines = [line for line in worker.log().splitlines() if line.startswith("{")]
    documents = [orjson.loads(line) for line in lines]
    assert any("raw partitions assigned" in d["message"] for d in documents)
    assert all({"time", "level", "logger", "message"} <= d.keys() for d in documents)


def test_readyz_fails_without_redis(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    wait_for(lambda: worker.get("/readyz")[0] == 200)
    # a second worker pointed at a Redis that is not there is alive but not ready
    pipeline.extra_env["ENRICHER_REDIS_URL"] = "redis://127.0.0.1:1/0"
    lonely = pipeline.start_worker()
    status, body = lonely.get("/readyz")
    assert status == 503 and body["redis"].startswith("failing")
    assert lonely.get("/healthz")[0] == 200
