"""The webhook sink end to end: raw events -> worker -> events.destinations -> ``enricher sink
run webhook`` -> a local HTTP server answering 200, 500, 429 (Retry-After) and 400 in turn."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request
from typing import Any

import orjson
import pytest

from streams.dev.processes import free_port
from tests.pipeline import Pipeline, read_topic
from tests.sinks import SinkProcess, WebhookServer, wait_for

pytestmark = pytest.mark.e2e


def sent_ids(requests: list[Any], status: int) -> list[str]:
    return [m["messageId"] for r in requests if r.status == status for m in r.body["batch"]]


def test_webhook_retries_5xx_and_429_dead_letters_4xx_and_honours_integrations(
    pipeline: Pipeline,
) -> None:
    context = {"ip": "54.242.102.43", "traits": {"plan": "pro"}}
    routed: list[tuple[str, dict[str, Any]]] = [
        (
            f"dev-{n % 4}",
            {"type": "track", "event": "Viewed", "properties": {"n": n}, "context": context},
        )
        for n in range(12)
    ]
    routed.append(
        (
            "dev-0",
            {
                "type": "track",
                "event": "Enabled By Name",
                "integrations": {"All": False, "webhook": True},
            },
        )
    )
    skipped: list[tuple[str, dict[str, Any]]] = [
        ("dev-1", {"type": "track", "event": "Not Here", "integrations": {"webhook": False}}),
        ("dev-2", {"type": "track", "event": "Not Here", "integrations": {"Webhook": False}}),
        (
            "dev-3",
            {
                "type": "track",
                "event": "Not Here",
                "integrations": {"All": False, "Mixpanel": True},
            },
        ),
    ]
    pipeline.start_worker()
    metrics_port = free_port()
    with WebhookServer([200, 500, 429, 400], retry_after="2") as server:
        sink = SinkProcess.start(
            pipeline,
            "webhook",
            {
                "ENRICHER_SINK_WEBHOOK_URL": server.url,
                "ENRICHER_SINK_WEBHOOK_HEADERS": '{"X-Api-Key": "secret"}',
                "ENRICHER_SINK_WEBHOOK_BATCH_SIZE": "4",
                "ENRICHER_SINK_WEBHOOK_TIMEOUT": "5",
                "ENRICHER_SINK_WEBHOOK_IP_POLICY": "mask:3:5",
                "ENRICHER_SINK_WEBHOOK_BATCH_WITHIN": "0.05",
                "ENRICHER_SINK_METRICS_PORT": str(metrics_port),
            },
            "webhook.log",
        )
        sink.wait_ready()
        pipeline.produce_json(routed + skipped)
        destinations = pipeline.read("destinations", 15)
        by_event = {r.json()["messageId"]: r.json()["event"] for r in destinations}
        expected = {m for m, event in by_event.items() if event != "Not Here"}
        assert len(expected) == 13

        def settled() -> bool:
            done = set(sent_ids(server.requests, 200)) | set(sent_ids(server.requests, 400))
            return done >= expected

        assert wait_for(settled, 90), sink.log()[-3000:]
        dead = asyncio.run(
            read_topic(
                pipeline.stack.bootstrap,
                f"{pipeline.topic('deadletter')}.sink.webhook",
                len(sent_ids(server.requests, 400)),
                30,
            )
        )

        def scrape() -> dict[str, float]:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
            return {
                line.split("{")[0]: float(line.split()[-1])
                for line in text.decode().splitlines()
                if line.startswith("enricher_sink_") and 'sink="webhook"' in line
            }

        def counted() -> dict[str, float] | None:
            found = scrape()
            done = found.get("enricher_sink_records_written_total", 0) + found.get(
                "enricher_sink_records_dead_lettered_total", 0
            )
            return found if done >= 13 else None

        counters = wait_for(counted, 30)
        assert counters, scrape()
        sink.stop()
        requests = list(server.requests)

    delivered = sent_ids(requests, 200)
    rejected = sent_ids(requests, 400)
    assert set(delivered) | set(rejected) == expected
    assert not set(delivered) & set(rejected)
    assert len(delivered) == len(set(delivered))  # a delivered batch is not sent again
    assert 400 in {r.status for r in requests}, "the cycle reached a 400"
    for request in requests:
        assert request.headers["X-Api-Key"] == "secret"
        assert request.headers["Content-Type"] == "application/json"
        assert 1 <= len(request.body["batch"]) <= 4
        for message in request.body["batch"]:
            assert message["event"] != "Not Here"  # integrations: false / All false (R29)
            assert "traits" not in message["context"]  # R25
            if message["event"] == "Viewed":
                assert message["context"]["ip"] == "54.x.x.x"  # the sink's own policy (R28)
    # a 5xx or 429 is retried with the same batch; the retry after a 429 waits Retry-After
    for before, after in itertools.pairwise(requests):
        if before.status in (500, 429):
            assert after.body["batch"] == before.body["batch"]
        if before.status == 429:
            assert after.at - before.at >= 1.9
    # the runner's counters, as Prometheus metrics labelled by sink
    assert counters["enricher_sink_records_in_total"] == 16
    assert counters["enricher_sink_records_skipped_total"] == 3
    assert counters["enricher_sink_records_written_total"] == len(delivered)
    assert counters["enricher_sink_records_dead_lettered_total"] == len(rejected)
    retried = sum(1 for r in requests if r.status in (500, 429))
    assert counters["enricher_sink_retries_total"] == retried
    # a 400 is permanent: the batch is dead-lettered with the error and the message
    assert sorted(orjson.loads(r.json()["payload"])["messageId"] for r in dead) == sorted(rejected)
    for record in dead:
        document = record.json()
        assert document["sink"] == "webhook"
        assert document["error"]["code"] == "sink_permanent"
        assert "HTTP 400" in document["error"]["message"]
        assert document["source"]["topic"] == pipeline.topic("destinations")
