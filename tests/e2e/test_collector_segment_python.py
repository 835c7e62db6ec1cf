"""The official Segment Python library (PyPI ``segment-analytics-python``) pointed at the
collector: its batches go through the collector and the real worker to events.warehouse
with the identity the rules give (issue 9)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from segment.analytics.client import Client

from tests.collector import WRITE_KEY, CollectorProcess, read_matching
from tests.pipeline import Pipeline

pytestmark = pytest.mark.e2e


def test_the_segment_python_library_delivers_all_six_calls_through_the_worker(
    pipeline: Pipeline,
) -> None:
    worker = pipeline.start_worker(wait=False)
    collector = CollectorProcess.start(pipeline.env(), pipeline.workdir / "collector.log")
    errors: list[Any] = []
    try:
        worker.wait_ready()
        run = uuid.uuid4().hex[:8]
        anon, user, other = f"anon-{run}", f"user-{run}", f"user2-{run}"
        client = Client(
            WRITE_KEY,
            host=collector.url,
            upload_size=3,  # seven calls: several batch requests
            on_error=lambda error, batch: errors.append((error, batch)),
            max_retries=2,
        )
        ids = {
            "page": client.page(anonymous_id=anon, category="Docs", name="Home")[1],
            "identify": client.identify(user, {"plan": "pro"}, anonymous_id=anon)[1],
            "track": client.track(user, "Order Completed", {"revenue": 9}, anonymous_id=anon)[1],
            "screen": client.screen(user, name="Cart", anonymous_id=anon)[1],
            "group": client.group(user, "acme", {"size": 5}, anonymous_id=anon)[1],
            "alias": client.alias(anon, user)[1],
            "other": client.track(other, "Signed Up")[1],
        }
        client.shutdown()  # flushes every queued batch and waits for the uploads
        assert errors == []

        raw = read_matching(
            pipeline.stack.bootstrap,
            pipeline.topic("raw"),
            lambda value: run in str(value.get("anonymousId")) + str(value.get("userId")),
            count=7,
        )
        assert len(raw) == 7
        # sentAt is only on the batch request's top level: the records came as batches
        assert all(r.json()["sentAt"] and r.json()["requestIp"] == "127.0.0.1" for r in raw)

        out = {
            r.json()["messageId"]: r.json()
            for r in pipeline.read("warehouse", 7)
            if run in str(r.json()["anonymousId"]) + str(r.json()["userId"])
        }
        message = {name: out[ids[name]["messageId"]] for name in ids}  # messageIds kept
        assert len(out) == 7
        for name in ("page", "identify", "track", "screen", "group"):
            assert message[name]["type"] == name
            assert message[name]["anonymousId"] == anon
            assert message[name]["_enrichment"]["device"] == anon
            assert message[name]["context"]["ip"] == "127.0.0.1"  # R27 from the request
            assert message[name]["context"]["library"]["name"] == "analytics-python"
        assert message["page"]["userId"] is None
        assert message["page"]["name"] == "Home" and message["page"]["category"] == "Docs"
        assert message["identify"]["userId"] == user
        assert message["identify"]["traits"] == {"plan": "pro"}
        assert message["track"]["userId"] == user and message["track"]["event"] == (
            "Order Completed"
        )
        assert "traits" not in message["track"]  # R19
        assert message["screen"]["userId"] == user and message["screen"]["name"] == "Cart"
        assert message["group"]["groupId"] == "acme"
        assert message["group"]["traits"] == {"size": 5}
        # a server library's alias names no anonymousId: its device is the userId
        assert message["alias"]["userId"] == user
        assert message["alias"]["previousId"] == anon
        assert message["alias"]["_enrichment"]["device"] == user
        assert message["other"]["userId"] == other
        assert message["other"]["_enrichment"]["device"] == other
    finally:
        collector.stop()
