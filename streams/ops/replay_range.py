"""A range of the raw topic, read through a batch processor: which records (by time or
offset, some or all partitions), the result of reading them, and scratch state in Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.ops.diffing import TopicDiff
from streams.ops.offsets import (
    log_ends,
    log_start,
    offset_for_time,
    read_ranges,
    topic_partitions,
)
from streams.ops.progress import progress_bar
from streams.state.redis_client import RedisClient
from streams.worker.batch import BatchProcessor, OutputTopics
from streams.worker.records import InRecord

Ranges = dict[TopicPartition, tuple[int, int]]


@dataclass(frozen=True)
class RangeSpec:
    """Which records: ``[from, to)`` by time or offset, of some or all partitions."""

    topic: str
    partitions: Sequence[int] | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None


async def resolve_ranges(consumer: AIOKafkaConsumer, spec: RangeSpec) -> Ranges:
    partitions = await topic_partitions(consumer, spec.topic)
    if spec.partitions is not None:
        unknown = set(spec.partitions) - {tp.partition for tp in partitions}
        if unknown:
            raise LookupError(f"{spec.topic} has no partition(s) {sorted(unknown)}")
        partitions = [tp for tp in partitions if tp.partition in spec.partitions]
    ranges: Ranges = {}
    ends = await log_ends(consumer, partitions)
    for tp in partitions:
        first, end = await log_start(consumer, tp), ends[tp]
        start = first
        if spec.from_offset is not None:
            start = min(max(spec.from_offset, first), end)
        if spec.from_ms is not None:
            start = await offset_for_time(consumer, tp, spec.from_ms, start, end)
        if spec.to_offset is not None:
            end = max(min(spec.to_offset, end), start)
        if spec.to_ms is not None:
            end = await offset_for_time(consumer, tp, spec.to_ms, start, end)
        ranges[tp] = (start, end)
    return ranges


@dataclass
class ReplayResult:
    mode: str
    ranges: Ranges
    replayed: int = 0
    first_timestamp_ms: int | None = None
    sources: set[str] = field(default_factory=set)
    diffs: list[TopicDiff] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    app_id: str = ""
    outputs: OutputTopics | None = None
    committed: bool = False
    warmed: int = 0

    @property
    def differences(self) -> int:
        return sum(diff.differences for diff in self.diffs)

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "mode": self.mode,
            "appId": self.app_id,
            "replayed": self.replayed,
            "ranges": {
                f"{tp.topic}/{tp.partition}": [start, end]
                for tp, (start, end) in sorted(self.ranges.items())
            },
            "deadLetters": dict(self.dead_letters),
        }
        if self.mode == "diff":
            document["warmedUpWith"] = self.warmed
            document["differences"] = self.differences
            document["topics"] = [diff.as_json() for diff in self.diffs]
        elif self.outputs is not None:
            document["outputs"] = {
                "warehouse": self.outputs.warehouse,
                "destinations": self.outputs.destinations,
                "deadletter": self.outputs.deadletter,
            }
            document["groupCommitted"] = self.committed
        return document

    def summary(self) -> str:
        lines = [f"replayed {self.replayed} records ({self.mode}) of {len(self.ranges)} partitions"]
        if self.warmed:
            lines.append(f"state warmed up with the {self.warmed} records before the range")
        if self.dead_letters:
            lines.append(f"dead letters: {dict(self.dead_letters)}")
        if self.mode == "diff":
            for diff in self.diffs:
                lines.extend(diff.lines())
            lines.append(f"{self.differences} differences")
        elif self.outputs is not None:
            lines.append(
                f"app id {self.app_id}: outputs {self.outputs.warehouse}, "
                f"{self.outputs.destinations}, {self.outputs.deadletter}"
            )
            if self.committed:
                lines.append(
                    f"consumer group {self.app_id} committed at the range's end: start "
                    f"workers with ENRICHER_APP_ID={self.app_id} and these topics to carry on"
                )
        return "\n".join(lines)


async def replay_range(
    consumer: AIOKafkaConsumer,
    processor: BatchProcessor,
    ranges: Ranges,
    batch_max: int,
    result: ReplayResult,
    keep_sources: bool,
) -> None:
    with progress_bar(f"replay ({result.mode})", sum(e - s for s, e in ranges.values())) as bar:
        async for batch in read_ranges(consumer, ranges, batch_max):
            records = [
                InRecord(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
                for tp, messages in batch
                for m in messages
            ]
            await processor.process(records)
            for record in records:
                if result.first_timestamp_ms is None or record.timestamp_ms < (
                    result.first_timestamp_ms
                ):
                    result.first_timestamp_ms = record.timestamp_ms
                if keep_sources:
                    result.sources.add(f"{record.topic}/{record.partition}/{record.offset}")
            result.replayed += len(records)
            bar.advance(len(records))


async def keys_exist(client: RedisClient, app_id: str) -> bool:
    async for _ in client.scan_iter(match=f"{app_id}:*", count=1000):
        return True
    return False


async def delete_keys(client: RedisClient, app_id: str) -> None:
    batch: list[Any] = []
    async for key in client.scan_iter(match=f"{app_id}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)
