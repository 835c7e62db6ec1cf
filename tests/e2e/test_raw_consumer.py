"""The worker's raw consumer fetches and validates the next batch while the batch before waits
for the broker and Redis (issue 21). A revocation in between must not let that next batch run:
its records may belong to another member by then. The consumer, the batch code and the writer
are the worker's own, on a real broker and Redis; only the moment is chosen (the first batch's
produce waits at a gate while a second member joins the group)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.dev.stack import StackEndpoints
from streams.state.keys import KeySpace
from streams.state.redis_client import connect, unlink_matching
from streams.state.store import StateStore
from streams.worker.batch import BatchProcessor, OutputTopics
from streams.worker.consumer import RawConsumer
from streams.worker.groups import member_consumer
from streams.worker.records import OutRecord
from streams.worker.topics import ensure_topics
from streams.worker.writer import BatchWriter
from tests.e2e.test_regulation_race import GatedWriter, race_settings
from tests.pipeline import produce

pytestmark = pytest.mark.e2e

BATCH = 20
RECORDS = 400


class RecordingWriter(GatedWriter):
    """The gated writer, remembering the raw partition of every warehouse message written."""

    def __init__(self, writer: BatchWriter, warehouse: str) -> None:
        super().__init__(writer)
        self._warehouse = warehouse
        self.partitions: list[list[int]] = []  # per write

    async def write(self, records: Sequence[OutRecord]) -> None:
        await super().write(records)
        self.partitions.append(
            [
                int(orjson.loads(r.value)["_enrichment"]["source"].rsplit("/", 2)[1])
                for r in records
                if r.topic == self._warehouse
            ]
        )


async def revoked_while_a_batch_waits(stack: StackEndpoints) -> tuple[int, int, set[int], set[int]]:
    """(records fetched before the revocation, partitions the second member got, the
    consumer's partitions after the rebalance, the raw partitions it processed after the
    batch the revocation waited for)."""
    settings = race_settings(stack).with_overrides(
        app_id=f"prefetch-{uuid.uuid4().hex[:8]}",
        batch_max=BATCH,
        session_timeout=3.0,
        rebalance_timeout=6.0,
    )
    writer = BatchWriter(settings)
    writer.partitions = await ensure_topics(settings)
    await writer.start()
    client = connect(stack.redis_url)
    recording = RecordingWriter(writer, settings.topic_warehouse)
    processor = BatchProcessor(
        StateStore(client, KeySpace(settings.app_id), 86_400_000),
        recording,
        OutputTopics(
            settings.topic_warehouse, settings.topic_destinations, settings.topic_deadletter
        ),
        settings.policy,
    )
    events = [
        (f"dev-{i}".encode(), orjson.dumps({"type": "track", "event": "E", "messageId": f"m{i}"}))
        for i in range(RECORDS)
    ]
    await produce(stack.bootstrap, settings.topic_raw, events)
    recording.gate.clear()
    raw = RawConsumer(settings, processor)
    other: AIOKafkaConsumer | None = None
    try:
        await raw.start()
        await asyncio.wait_for(recording.reached.wait(), 60)  # the first batch is producing
        consumer = raw.consumer
        assert consumer is not None
        deadline = time.monotonic() + 10
        fetched = 0
        while fetched < 2 * BATCH and time.monotonic() < deadline:  # the next one is fetched
            await asyncio.sleep(0.1)
            fetched = sum([await consumer.position(tp) for tp in consumer.assignment()])
        other = member_consumer(settings, settings.app_id, 50)
        other.subscribe([settings.topic_raw])
        await other.start()
        joining = asyncio.ensure_future(other.getmany(timeout_ms=20_000))
        await asyncio.sleep(1.0)  # the group rebalances; the revocation waits for the batch
        recording.gate.set()
        deadline = time.monotonic() + 30
        while not other.assignment() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the consumer goes on with its own partitions
        joining.cancel()
        after = {p for partitions in recording.partitions[1:] for p in partitions}
        return fetched, len(other.assignment()), {p for _, p in raw.assigned or ()}, after
    finally:
        await raw.stop()
        if other is not None:
            await other.stop()
        await writer.stop()
        await unlink_matching(client, KeySpace(settings.app_id).pattern())
        await client.aclose()


def test_a_batch_fetched_before_a_revocation_is_not_processed_after_it(
    stack: StackEndpoints,
) -> None:
    fetched, others, mine, after = asyncio.run(revoked_while_a_batch_waits(stack))
    assert fetched >= 2 * BATCH, "the next batch was not fetched while the first one waited"
    assert others > 0 and mine, "the partitions were not shared out"
    assert after, "nothing was processed after the rebalance"
    assert after <= mine, f"partitions another member owns were processed: {sorted(after - mine)}"
