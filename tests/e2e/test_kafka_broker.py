"""What a real Kafka broker makes possible (issue 15): a broker crash and restart on its log
dir, record size limits, compressed topics, a topic deleted and created again, members that
come and go. Each checks the outputs (and, where state changes, Redis) against a clean run."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.dev.kafka import LocalKafka
from streams.dev.stack import DevStack, StackEndpoints
from tests.collector import CollectorProcess, read_matching
from tests.conftest import needs_apache_kafka
from tests.e2e.test_sink_files import published_lines
from tests.faults import account, wait_for_output
from tests.pipeline import Pipeline, WorkerProcess
from tests.sinks import start_file_sink, wait_for
from tests.workload import messages_in, mixed_events

pytestmark = pytest.mark.e2e

RECORD_LIMIT = 1024 * 1024


@needs_apache_kafka()
def test_the_broker_sigkilled_twice_mid_stream_loses_nothing_and_applies_nothing_twice(
    own_stack: DevStack, tmp_path: Path
) -> None:
    """R34 across broker crashes: the worker, a sink and the collector each wait the outage
    out and carry on, without a restart of their own."""
    pipeline = Pipeline(own_stack.endpoints, tmp_path)
    events = mixed_events(6_000, 300, seed=31)
    total = messages_in(events)
    worker = pipeline.start_worker()
    files = tmp_path / "files"
    sink = start_file_sink(pipeline, files)
    collected = pipeline.topic("collected")  # the collector's own raw topic, checked apart
    collector = CollectorProcess.start(
        {**pipeline.env(), "ENRICHER_TOPIC_RAW": collected, "ENRICHER_COLLECTOR_ACK_TIMEOUT": "3"},
        tmp_path / "collector.log",
    )
    accepted: list[str] = []
    pipeline.produce_json(events[: len(events) // 2])
    for crash, rest in enumerate((events[len(events) // 2 :], [])):
        wait_for_output(pipeline, total * (crash + 1) // 3)
        own_stack.kill_broker()
        time.sleep(1.0)
        own_stack.start_broker()  # on its log dir: topics, offsets and groups survive
        if rest:
            pipeline.produce_json(rest)
        device = f"collector-{crash}-{uuid.uuid4().hex[:6]}"

        def posted(device: str = device) -> bool:
            message = {"type": "track", "event": "After crash", "anonymousId": device}
            return collector.post("/v1/track", message).status == 200

        assert wait_for(posted, 90), "the collector did not recover after the broker came back"
        accepted.append(device)

    account("broker SIGKILL x2", pipeline, events, pipeline.redis_url)
    found = read_matching(
        own_stack.endpoints.bootstrap,
        collected,
        lambda value: value.get("anonymousId") in accepted,
        count=len(accepted),
    )
    assert sorted(r.json()["anonymousId"] for r in found) == sorted(accepted)
    destinations = {r.json()["messageId"] for r in pipeline.read("destinations", total)}

    def sink_caught_up() -> bool:
        return destinations <= {str(line["messageId"]) for line in published_lines(files)}

    assert wait_for(sink_caught_up, 120), sink.log()[-3000:]
    for process in (worker, sink, collector):
        assert process.process.poll() is None, f"{process.what} exited: {process.log()[-2000:]}"


def test_a_dead_letter_of_a_record_that_inflates_when_escaped_fits_the_broker(
    pipeline: Pipeline,
) -> None:
    """900 KB of control bytes is a record the broker takes; escaped in a JSON dead letter it
    would be 5 MB, which it refuses (and every retry with it). It is cut to fit instead."""
    pipeline.start_worker()
    huge = b"\x01" * 900_000
    after = orjson.dumps({"type": "track", "event": "After", "messageId": "after-huge"})
    pipeline.produce([(b"device-huge", huge), (b"device-huge", after)])
    [letter] = pipeline.read("deadletter", 1)
    document = letter.json()
    assert document["error"]["code"] == "too_large"
    assert document["payloadTruncated"] is True and document["payloadBytes"] == len(huge)
    assert len(letter.value) + len(letter.key or b"") <= RECORD_LIMIT
    [message] = pipeline.read("warehouse", 1)
    assert message.json()["messageId"] == "after-huge"  # the worker went on


def test_an_output_over_the_record_limit_becomes_a_dead_letter_and_the_rest_goes_on(
    pipeline: Pipeline,
) -> None:
    """R30 may fill context.traits from a user profile that grew past the record limit."""
    pipeline.extra_env["ENRICHER_CONTEXT_TRAITS"] = "*"
    pipeline.start_worker()
    # 40 devices of one user, 30 KB of traits each: the user profile holds 1.2 MB of traits
    identifies = [
        (
            f"dev-{n}",
            {
                "type": "identify",
                "userId": "big-user",
                "traits": {f"t{n}": "x" * 30_000},
                "messageId": f"identify-{n}",
            },
        )
        for n in range(40)
    ]
    pipeline.produce_json(identifies)
    assert len(pipeline.read("warehouse", 40)) == 40
    pipeline.produce_json(
        [
            ("dev-0", {"type": "track", "event": "Big", "messageId": "big-track"}),
            ("dev-x", {"type": "track", "event": "Small", "messageId": "small-track"}),
        ]
    )
    [letter] = pipeline.read("deadletter", 1)
    assert letter.json()["error"]["code"] == "output_too_large"
    assert orjson.loads(letter.json()["payload"])["messageId"] == "big-track"
    warehouse = {r.json()["messageId"] for r in pipeline.read("warehouse", 41)}
    assert "small-track" in warehouse and "big-track" not in warehouse
    # the destinations message carries no context.traits (R25): it fits, and is written
    destinations = {r.json()["messageId"] for r in pipeline.read("destinations", 42)}
    assert {"big-track", "small-track"} <= destinations


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_raw_records_in_any_compression_are_consumed_and_outputs_compressed_alike(
    pipeline: Pipeline, codec: str
) -> None:
    pipeline.extra_env["ENRICHER_OUTPUT_COMPRESSION"] = codec
    pipeline.start_worker()
    events = [
        (f"dev-{n % 7}", {"type": "track", "event": "Zipped", "messageId": f"{codec}-{n}"})
        for n in range(60)
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=pipeline.stack.bootstrap, compression_type=codec, linger_ms=20
        )
        await producer.start()
        try:
            pending = [
                await producer.send(pipeline.topic("raw"), orjson.dumps(body), key=key.encode())
                for key, body in events
            ]
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(produce())
    warehouse = {r.json()["messageId"] for r in pipeline.read("warehouse", 60)}
    assert warehouse == {body["messageId"] for _, body in events}
    assert len(pipeline.read("destinations", 60)) == 60


@needs_apache_kafka()
def test_a_raw_topic_deleted_and_created_again_has_its_new_records_processed(
    pipeline: Pipeline,
) -> None:
    """R34: the fence is keyed by the topic's id. Keyed by its name, the new topic's offsets
    (from 0 again) would be taken as applied, and its events silently lost."""
    raw = pipeline.topic("raw")

    def batch(name: str) -> list[tuple[str, dict[str, object]]]:
        return [
            (f"dev-{n % 5}", {"type": "track", "event": name, "messageId": f"{name}-{n}"})
            for n in range(30)
        ]

    worker = pipeline.start_worker()
    pipeline.produce_json(batch("before"))
    assert len(pipeline.read("warehouse", 30)) == 30
    worker.stop()

    async def recreate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.stack.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([raw])
            for _ in range(100):
                if raw not in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            for _ in range(100):  # the deletion completes in the background
                try:
                    await admin.create_topics([NewTopic(raw, 8, 1)])
                    return
                except Exception:
                    await asyncio.sleep(0.2)
        finally:
            await admin.close()

    asyncio.run(recreate())
    pipeline.produce_json(batch("after"))
    pipeline.start_worker()
    warehouse = {r.json()["messageId"] for r in pipeline.read("warehouse", 60)}
    assert {f"after-{n}" for n in range(30)} <= warehouse


def test_three_workers_joining_and_leaving_repeatedly_lose_nothing(pipeline: Pipeline) -> None:
    """R34 through six rebalances during a 100k-event stream."""
    events = mixed_events(100_000, 2_000, seed=41)
    total = messages_in(events)
    workers: list[WorkerProcess] = [pipeline.start_worker()]
    pipeline.produce_json(events)
    for step in range(6):
        wait_for_output(pipeline, total * (step + 1) // 8, timeout=180)
        if step % 2 == 0:
            workers.append(pipeline.start_worker(wait=False))
            workers.append(pipeline.start_worker(wait=False))
        else:
            workers.pop(0).stop()
            workers.pop(0).stop()
    account("3 workers joining and leaving x6", pipeline, events, pipeline.redis_url, 300)
    assert workers[-1].process.poll() is None


@needs_apache_kafka()
def test_a_kafka_4_broker_with_default_settings_serves_the_worker(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    """aiokafka speaks the classic consumer group protocol only (no KIP-848); a Kafka 4 broker
    with its defaults (no test tuning, beyond what a single node needs) still serves it."""
    kafka = LocalKafka(tmp_path / "kafka", defaults_only=True)
    bootstrap = kafka.start()
    own = StackEndpoints(f"kafka://{bootstrap}", bootstrap, stack.redis_url, "kafka")
    pipeline = Pipeline(own, tmp_path)
    # the worker's defaults: Kafka refuses session timeouts under group.min.session.timeout.ms
    # (6 s by default), so the tests' short ones are for the tuned broker only
    pipeline.extra_env.update(ENRICHER_SESSION_TIMEOUT="10", ENRICHER_REBALANCE_TIMEOUT="20")
    try:
        pipeline.start_worker()
        events = [
            (f"dev-{n % 9}", {"type": "page", "name": "Home", "messageId": f"default-{n}"})
            for n in range(50)
        ]
        pipeline.produce_json(events)
        assert len(pipeline.read("warehouse", 50, timeout=90)) == 50
    finally:
        pipeline.stop_all()
        kafka.stop()
