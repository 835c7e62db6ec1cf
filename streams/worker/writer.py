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
        # per topic, a list of records per partition; a key's partition worked out once per
        # partition count (a message's two outputs share their key)
        groups: dict[str, list[list[OutRecord]]] = {}
        partition_of: dict[int, dict[bytes, int]] = {}
        for record in records:
            topic = record.topic
            partitions = groups.get(topic)
            if partitions is None:
                count = self.partitions.get(topic) or await self._partition_count(topic)
                partitions = groups[topic] = [[] for _ in range(count)]
            key = record.key
            if key is None:  # unkeyed (dead letters of keyless records): spread them
                partition = next(self._spread) % len(partitions)
            else:
                by_key = partition_of.get(len(partitions))
                if by_key is None:
                    by_key = partition_of[len(partitions)] = {}
                found = by_key.get(key)
                if found is None:
                    found = by_key[key] = partition_for(key, len(partitions))
                partition = found
            partitions[partition].append(record)
        pending: list[Any] = []
        for topic, partitions in groups.items():
            for partition, group in enumerate(partitions):
                if group:
                    await self._send_group(topic, partition, group, pending)
        await asyncio.gather(*pending)

    async def _send_group(
        self, topic: str, partition: int, group: list[OutRecord], pending: list[Any]
    ) -> None:
        """One partition's records as record batches, each batch's delivery in ``pending``."""
        batch = self._producer.create_batch()
        for record in group:
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                pending.append(await self._send(batch, topic, partition))
                batch = self._producer.create_batch()
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(record.value)} bytes fits no batch")
        pending.append(await self._send(batch, topic, partition))

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
