"""R39's race: a regulation lands while a worker's batch on the user's devices is in flight
(loaded, producing its outputs to the broker, not yet saved). The worker's own batch code runs
on a real broker and a real Redis (and Redis Cluster); only the moment is chosen: the batch's
produce waits at a gate while the regulation is applied, as the applier does it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from enrichers.regulations import Regulation
from streams.dev.stack import StackEndpoints
from streams.settings import Settings
from streams.state.keys import KeySpace
from streams.state.redis_client import connect
from streams.state.regulations import RegulationStore
from streams.state.store import StateStore
from streams.worker.batch import BatchProcessor, OutputTopics
from streams.worker.records import InRecord, OutRecord
from streams.worker.topics import ensure_topics
from streams.worker.writer import BatchWriter
from tests.pipeline import broker_settings

pytestmark = pytest.mark.e2e

SETTLE = 2.0
USER = "user-in-flight"
AID = "aid-race-1"


class GatedWriter:
    """The worker's real writer, whose produce waits while the gate is shut."""

    def __init__(self, writer: BatchWriter) -> None:
        self._writer = writer
        self.gate = asyncio.Event()
        self.gate.set()
        self.reached = asyncio.Event()

    async def write(self, records: Sequence[OutRecord]) -> None:
        self.reached.set()
        await self.gate.wait()
        await self._writer.write(records)


def raw(offset: int, key: str, event: dict[str, Any]) -> InRecord:
    return InRecord("events.raw.race", 0, offset, key.encode(), orjson.dumps(event), 1_700_000_000)


async def contents(client: Any, app_id: str) -> str:
    parts = []
    async for key in client.scan_iter(match=f"{app_id}:*"):
        if b":suppressed:" in key:
            continue
        kind = (await client.type(key)).decode()
        if kind == "string":
            parts.append(f"{key!r} {await client.get(key)!r}")
        elif kind == "hash":
            parts.append(f"{key!r} {await client.hgetall(key)!r}")
        elif kind == "zset":
            parts.append(f"{key!r} {await client.zrange(key, 0, -1)!r}")
    return "\n".join(sorted(parts))


async def race(
    settings: Settings, redis_url: str, kind: str, hold: float
) -> tuple[str, str, BatchProcessor]:
    """History, then a batch in flight on the user's devices while ``kind`` lands; returns the
    app's Redis contents after the batch, after the applier's second pass, and the processor."""
    app_id = f"race-{uuid.uuid4().hex[:8]}"
    client = connect(redis_url)
    writer = BatchWriter(settings)
    writer.partitions = await ensure_topics(settings)
    await writer.start()
    try:
        store = StateStore(client, KeySpace(app_id), 86_400_000)
        gated = GatedWriter(writer)
        topics = OutputTopics(
            settings.topic_warehouse, settings.topic_destinations, settings.topic_deadletter
        )
        processor = BatchProcessor(
            store,
            gated,
            topics,
            settings.policy,
            digests=settings.regulation_digests,
            settle_seconds=SETTLE,
        )
        history = {"traits": {"email": "old@example.com"}, "anonymousId": "aid-race-1"}
        await processor.process(
            [raw(0, "dev-race-1", {"type": "identify", "userId": USER, **history})]
        )
        gated.gate.clear()
        gated.reached.clear()
        in_flight = asyncio.create_task(
            processor.process(
                [
                    raw(
                        1,
                        "dev-race-1",
                        {"type": "track", "event": "E", "anonymousId": "aid-race-1"},
                    ),
                    raw(2, "dev-race-2", {"type": "identify", "userId": USER, "traits": {"p": 1}}),
                ]
            )
        )
        await gated.reached.wait()  # loaded, checked, producing
        regulation = Regulation("r-race", kind, user_ids=(USER,))  # type: ignore[arg-type]
        applier = RegulationStore(client, store, settings.regulation_digests)
        if regulation.suppresses:
            await applier.suppress(regulation)
        await applier.erase(regulation)
        await asyncio.sleep(hold)
        gated.gate.set()
        await in_flight
        after_batch = await contents(client, app_id)
        await applier.erase(regulation)  # the applier's second pass, SETTLE later
        return after_batch, await contents(client, app_id), processor
    finally:
        await writer.stop()
        await client.aclose()


def race_settings(stack: StackEndpoints) -> Settings:
    name = uuid.uuid4().hex[:8]
    return broker_settings(stack).with_overrides(
        topic_raw=f"events.raw.race.{name}",
        topic_warehouse=f"events.warehouse.race.{name}",
        topic_destinations=f"events.destinations.race.{name}",
        topic_deadletter=f"events.deadletter.race.{name}",
        topic_regulations=f"events.regulations.race.{name}",
    )


@pytest.mark.parametrize("hold", [0.0, SETTLE])
def test_r39_a_delete_and_suppress_mid_batch_leaves_nothing_of_the_user(
    stack: StackEndpoints, redis_url: str, hold: float
) -> None:
    """Saved soon after its check, the batch finds its loaded device deleted (a version
    conflict): its events are applied again, and the suppression now drops them; a device new
    in the batch is removed by the second pass. Saved later than half the settle time, the
    batch checks the suppression list again and saves nothing."""
    after_batch, after_settle, processor = asyncio.run(
        race(race_settings(stack), redis_url, "delete-and-suppress", hold)
    )
    assert USER not in after_settle and "aid-race-1" not in after_settle
    assert "dev-race" not in after_settle and "old@example.com" not in after_settle
    assert "old@example.com" not in after_batch  # never written back, even for a moment
    assert sum(processor.counters.suppressed.values()) >= 1
    if hold:  # nothing was saved at all
        assert after_batch == after_settle == ""
        assert processor.counters.suppressed == {"device": 1, "userId": 1}  # linked, named


def test_r39_a_delete_mid_batch_never_writes_the_deleted_state_back(
    stack: StackEndpoints, redis_url: str
) -> None:
    """Without a suppression, the batch's events are new data and are applied (on the state
    after the deletion): the deleted traits and the device's link to the user do not return."""
    after_batch, _, processor = asyncio.run(race(race_settings(stack), redis_url, "delete", 0.0))
    assert "old@example.com" not in after_batch
    assert processor.counters.concurrent_saves >= 1
    assert processor.counters.suppressed == {}
