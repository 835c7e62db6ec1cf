"""Producing a batch's outputs: records grouped per topic partition into Kafka record batches,
sent together, every acknowledgement awaited.

One ``send`` per record costs more than the enrichment of the event (a future, a partitioner
call and an accumulator lookup each); building record batches directly costs one append per
record. Partitions follow Kafka's default partitioner (murmur2 of the key), so a device's
messages land on the partition its key names, in order."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from streams.settings import Settings
from streams.worker.clients import new_producer
from streams.worker.partitioning import partition_for
from streams.worker.records import OutRecord
from streams.worker.topic_ids import topic_ids


class BatchWriter:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._spread = itertools.count()
        self.partitions: dict[str, int] = {}

    async def start(self) -> None:
        """Connect (aiokafka producers are made inside the event loop that uses them)."""
        self._producer = new_producer(self._settings, linger_ms=0)
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def write(self, records: Sequence[OutRecord]) -> None:
        """Produce every record and return once the broker acknowledged all of them."""
        groups: dict[tuple[str, int], list[OutRecord]] = {}
        partition_of: dict[tuple[bytes | None, int], int] = {}
        for record in records:
            count = self.partitions.get(record.topic) or await self._partition_count(record.topic)
            if record.key is None:  # unkeyed (dead letters of keyless records): spread them
                partition = next(self._spread) % count
            else:
                slot = (record.key, count)
                if slot not in partition_of:
                    partition_of[slot] = partition_for(record.key, count)
                partition = partition_of[slot]
            groups.setdefault((record.topic, partition), []).append(record)
        pending: list[Any] = []
        for (topic, partition), group in groups.items():
            batch = self._producer.create_batch()
            for record in group:
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    pending.append(await self._send(batch, topic, partition))
                    batch = self._producer.create_batch()
                    if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                        raise ValueError(f"a record of {len(record.value)} bytes fits no batch")
            pending.append(await self._send(batch, topic, partition))
        await asyncio.gather(*pending)

    async def _send(self, batch: Any, topic: str, partition: int) -> Any:
        batch.close()
        return await self._producer.send_batch(batch, topic, partition=partition)

    async def topic_ids(self, topics: list[str]) -> dict[str, str]:
        """Kafka's id of each topic (R34's fence tells a recreated topic by it)."""
        return await topic_ids(self._producer.client, topics)

    async def _partition_count(self, topic: str) -> int:
        partitions = await self._producer.partitions_for(topic)
        self.partitions[topic] = len(partitions)
        return self.partitions[topic]
