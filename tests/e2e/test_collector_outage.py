"""A broker outage makes the collector answer 503 (the client keeps the events and retries),
never 200 for events it could not write; it recovers when the broker is back (issue 9)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from streams.dev.stack import DevStack
from streams.settings import Settings
from streams.worker.topics import ensure_topics
from tests.collector import CollectorProcess, read_matching
from tests.pipeline import Pipeline

pytestmark = pytest.mark.e2e

ACK_TIMEOUT = 3.0


def test_a_broker_outage_gives_503_and_what_is_accepted_after_it_is_on_the_topic(
    own_stack: DevStack, tmp_path: Path
) -> None:
    stack = own_stack  # its own broker: this test stops it
    endpoints = stack.endpoints
    topics = Pipeline(endpoints, tmp_path)
    env = {**topics.env(), "ENRICHER_COLLECTOR_ACK_TIMEOUT": str(ACK_TIMEOUT)}
    try:
        collector = CollectorProcess.start(env, tmp_path / "collector.log")
    except BaseException:
        stack.stop()
        raise
    try:
        run = uuid.uuid4().hex[:8]

        def track(n: int) -> int:
            message = {"type": "track", "event": "E", "anonymousId": f"{run}-{n}"}
            return collector.post("/v1/track", message).status

        assert track(0) == 200
        stack.stop_broker()
        started = time.monotonic()
        assert track(1) == 503
        assert time.monotonic() - started < ACK_TIMEOUT + 5
        outage = collector.post("/v1/batch", {"batch": [{"type": "page", "userId": "u"}]})
        assert outage.status == 503 and outage.json()["code"] == "unavailable"
        assert outage.headers["Retry-After"]

        stack.start_broker()  # Tansu keeps nothing over a restart: create the topics again
        asyncio.run(ensure_topics(Settings.load(env)))
        accepted = []
        deadline = time.monotonic() + 60
        n = 2
        while len(accepted) < 3 and time.monotonic() < deadline:
            if track(n) == 200:
                accepted.append(f"{run}-{n}")
            n += 1
        assert len(accepted) == 3, "the collector did not recover after the broker came back"
        records = read_matching(
            endpoints.bootstrap,
            topics.topic("raw"),
            lambda value: value.get("anonymousId") in accepted,
            count=3,
        )
        assert sorted(r.json()["anonymousId"] for r in records) == sorted(accepted)
    finally:
        collector.stop()
        stack.stop()


def test_a_stopping_collector_answers_its_requests_in_flight_and_loses_none(
    pipeline: Pipeline,
) -> None:
    collector = CollectorProcess.start(pipeline.env(), pipeline.workdir / "collector.log")
    run = uuid.uuid4().hex[:8]
    answers: dict[str, int] = {}

    def send(n: int) -> None:
        batch = [
            {
                "type": "track",
                "event": "E",
                "anonymousId": f"{run}-{n}",
                "messageId": f"{run}-{n}-{i}",
            }
            for i in range(10)
        ]
        try:
            answers[f"{run}-{n}"] = collector.post("/v1/batch", {"batch": batch}).status
        except OSError:  # refused or reset once the collector stopped listening
            answers[f"{run}-{n}"] = 0

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(send, n) for n in range(400)]
        while len(answers) < 50:
            time.sleep(0.01)
        collector.process.send_signal(signal.SIGTERM)
        for future in futures:
            future.result()
    assert collector.process.wait(30) == 0
    accepted = {device for device, status in answers.items() if status == 200}
    assert accepted and set(answers.values()) <= {200, 0}
    records = read_matching(
        pipeline.stack.bootstrap,
        pipeline.topic("raw"),
        lambda value: value.get("anonymousId") in accepted,
        count=10 * len(accepted),
    )
    assert len({r.json()["messageId"] for r in records}) == 10 * len(accepted)
