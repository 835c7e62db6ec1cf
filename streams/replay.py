"""``enricher replay``: a range of the raw topic through the rules again.

- ``rebuild``: into a new app id (fresh state in Redis) and new output topics: a rules change
  or a blue/green cut-over. When every partition was replayed, the new app id's consumer group
  is committed at the range's end, so ``enricher worker`` with the new app id carries on
  from there.
- ``diff``: into scratch state (a throw-away app id, deleted afterwards) and in-memory
  outputs, then compared field by field with what the existing output topics hold, matched by
  messageId. Ids are deterministic (R32: derived from the source topic, partition and
  offset), so an unchanged replay of a range that starts where the state started has no
  differences; a rules change (IP policy, context traits) shows as the fields it changes.

Both run the worker's own :class:`~streams.batch.BatchProcessor`, with the settings in force
(so ``ENRICHER_IP_POLICY_WAREHOUSE=mask enricher replay --mode diff`` previews a change).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.batch import BatchProcessor, OutputTopics
from streams.diffing import TopicDiff
from streams.groups import GroupActiveError, commit_offsets
from streams.keys import KeySpace
from streams.offsets import (
    log_ends,
    log_start,
    offset_for_time,
    probe_consumer,
    read_ranges,
    topic_partitions,
)
from streams.progress import progress_bar
from streams.records import InRecord, OutRecord
from streams.redis_client import RedisClient, connect
from streams.settings import Settings
from streams.store import StateStore
from streams.topics import ensure_topics
from streams.writer import BatchWriter

OUTPUT_CLOCK_SKEW_MS = 10 * 60 * 1000
"""Outputs are stamped when produced, after their raw record: the existing outputs of a range
are looked for from its first raw timestamp less this margin."""

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


class CollectingWriter:
    """Scratch outputs kept in memory: each output topic's messages by messageId."""

    def __init__(self, topics: OutputTopics) -> None:
        self._topics = topics
        self.messages: dict[str, dict[str, bytes]] = {topics.warehouse: {}, topics.destinations: {}}
        self.dead_letters: Counter[str] = Counter()

    async def write(self, records: Sequence[OutRecord]) -> None:
        for record in records:
            if record.topic == self._topics.deadletter:
                self.dead_letters[orjson.loads(record.value)["error"]["code"]] += 1
            else:
                message_id = orjson.loads(record.value)["messageId"]
                self.messages[record.topic].setdefault(message_id, record.value)


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


async def _process(
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


async def _keys_exist(client: RedisClient, app_id: str) -> bool:
    async for _ in client.scan_iter(match=f"{app_id}:*", count=1000):
        return True
    return False


async def _delete_keys(client: RedisClient, app_id: str) -> None:
    batch: list[Any] = []
    async for key in client.scan_iter(match=f"{app_id}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)


async def rebuild(
    settings: Settings,
    spec: RangeSpec,
    app_id: str,
    outputs: OutputTopics,
    resume: bool = False,
) -> ReplayResult:
    """``resume``: carry on an interrupted rebuild into the same app id. Safe: state is saved
    after the outputs were acknowledged and fenced by source offsets (R34), so the records
    already applied are skipped and the rest produce what they would have."""
    if app_id == settings.app_id:
        raise ValueError("a rebuild needs a new app id (--app-id), not the running one")
    target = settings.with_overrides(
        app_id=app_id,
        topic_warehouse=outputs.warehouse,
        topic_destinations=outputs.destinations,
        topic_deadletter=outputs.deadletter,
    )
    client = connect(settings.redis_url)
    try:
        if not resume and await _keys_exist(client, app_id):
            raise ValueError(
                f"app id {app_id!r} already has state in Redis: a rebuild starts from scratch "
                "(--resume carries on an interrupted rebuild into it)"
            )
        writer = BatchWriter(settings.bootstrap_servers)
        writer.partitions = await ensure_topics(target)
        await writer.start()
        try:
            store = StateStore(client, KeySpace(app_id), settings.policy.device_ttl_ms)
            processor = BatchProcessor(
                store, writer, outputs, settings.policy, settings.batch_max_bytes
            )
            async with probe_consumer(settings.bootstrap_servers) as consumer:
                ranges = await resolve_ranges(consumer, spec)
                result = ReplayResult("rebuild", ranges, app_id=app_id, outputs=outputs)
                await _process(consumer, processor, ranges, settings.batch_max, result, False)
                every = len(ranges) == len(await topic_partitions(consumer, spec.topic))
        finally:
            await writer.stop()
        result.dead_letters = processor.counters.dead_letters
        if every:
            await commit_offsets(
                settings.bootstrap_servers, app_id, {tp: end for tp, (_, end) in ranges.items()}
            )
            result.committed = True
        return result
    finally:
        await client.aclose()


class DiscardingWriter:
    """Outputs of the warm-up: state is what it is for."""

    async def write(self, records: Sequence[OutRecord]) -> None:
        return None


async def _warm_up(
    consumer: AIOKafkaConsumer,
    store: StateStore,
    settings: Settings,
    ranges: Ranges,
    warm_from_ms: int | None,
) -> int:
    """Build the scratch state from ``[warm_from, range start)`` of each partition (the log
    start when ``warm_from_ms`` is None), discarding the outputs; returns the records read."""
    warm: Ranges = {}
    for tp, (start, _) in ranges.items():
        first = await log_start(consumer, tp)
        if warm_from_ms is not None:
            first = await offset_for_time(consumer, tp, warm_from_ms, first, start)
        warm[tp] = (first, start)
    processor = BatchProcessor(
        store, DiscardingWriter(), _NO_TOPICS, settings.policy, settings.batch_max_bytes
    )
    result = ReplayResult("warm-up", warm)
    await _process(consumer, processor, warm, settings.batch_max, result, False)
    return result.replayed


_NO_TOPICS = OutputTopics("-", "-", "-")


async def diff(
    settings: Settings, spec: RangeSpec, warm: bool = False, warm_from_ms: int | None = None
) -> ReplayResult:
    scratch = f"{settings.app_id}.diff-{uuid.uuid4().hex[:8]}"
    topics = OutputTopics(
        settings.topic_warehouse, settings.topic_destinations, settings.topic_deadletter
    )
    writer = CollectingWriter(topics)
    client = connect(settings.redis_url)
    try:
        store = StateStore(client, KeySpace(scratch), settings.policy.device_ttl_ms)
        processor = BatchProcessor(store, writer, topics, settings.policy, settings.batch_max_bytes)
        async with probe_consumer(settings.bootstrap_servers) as consumer:
            ranges = await resolve_ranges(consumer, spec)
            result = ReplayResult("diff", ranges, app_id=scratch)
            if warm:
                result.warmed = await _warm_up(consumer, store, settings, ranges, warm_from_ms)
            await _process(consumer, processor, ranges, settings.batch_max, result, True)
        result.dead_letters = writer.dead_letters
        for topic in (topics.warehouse, topics.destinations):
            result.diffs.append(
                await _compare(
                    settings, topic, writer.messages[topic], result, topic == topics.warehouse
                )
            )
        return result
    finally:
        await _delete_keys(client, scratch)
        await client.aclose()


async def _compare(
    settings: Settings,
    topic: str,
    replayed: dict[str, bytes],
    result: ReplayResult,
    by_source: bool,
) -> TopicDiff:
    """Scan the existing output topic from the range's first timestamp (less a margin) to its
    end; messages of the range are matched by messageId. On the warehouse topic, a message
    whose ``_enrichment.source`` is in the range but that the replay did not produce is
    counted as only in the existing output."""
    report = TopicDiff(topic)
    pending = dict(replayed)
    seen: set[str] = set()
    if result.replayed:
        async with probe_consumer(settings.bootstrap_servers) as consumer:
            ranges: Ranges = {}
            since = (result.first_timestamp_ms or 0) - OUTPUT_CLOCK_SKEW_MS
            ends = await log_ends(consumer, await topic_partitions(consumer, topic))
            for tp, end in ends.items():
                ranges[tp] = (await offset_for_time(consumer, tp, since, None, end), end)
            with progress_bar(f"compare {topic}", sum(e - s for s, e in ranges.values())) as bar:
                async for batch in read_ranges(consumer, ranges, settings.batch_max):
                    for _, messages in batch:
                        for m in messages:
                            _compare_one(report, m.value, pending, seen, result, by_source)
                        bar.advance(len(messages))
    for message_id in pending:
        report.missing(message_id, "replay")
    return report


def _compare_one(
    report: TopicDiff,
    value: bytes,
    pending: dict[str, bytes],
    seen: set[str],
    result: ReplayResult,
    by_source: bool,
) -> None:
    try:
        existing = orjson.loads(value)
        message_id = existing["messageId"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return
    if message_id in pending:
        report.compare(message_id, existing, orjson.loads(pending.pop(message_id)))
        seen.add(message_id)
    elif by_source and message_id not in seen:
        source = (existing.get("_enrichment") or {}).get("source")
        if source in result.sources:
            seen.add(message_id)
            report.missing(message_id, "existing")


def run_replay(settings: Settings, args: Any) -> int:
    """The command: prints the summary (or JSON); exit 1 when a diff found differences."""
    from streams.offsets import parse_time

    try:
        spec = RangeSpec(
            topic=args.topic or settings.topic_raw,
            partitions=[int(p) for p in args.partitions.split(",")] if args.partitions else None,
            from_ms=parse_time(args.from_time) if args.from_time else None,
            to_ms=parse_time(args.to_time) if args.to_time else None,
            from_offset=args.from_offset,
            to_offset=args.to_offset,
        )
        if args.mode == "rebuild":
            if not args.app_id:
                raise ValueError("--mode rebuild needs --app-id NEW_APP_ID")
            outputs = OutputTopics(
                args.warehouse or f"{settings.topic_warehouse}.{args.app_id}",
                args.destinations or f"{settings.topic_destinations}.{args.app_id}",
                args.deadletter or f"{settings.topic_deadletter}.{args.app_id}",
            )
            result = asyncio.run(rebuild(settings, spec, args.app_id, outputs, args.resume))
        else:
            warm_from = args.warm_from
            result = asyncio.run(
                diff(
                    settings,
                    spec,
                    warm=warm_from is not None,
                    warm_from_ms=None if warm_from in (None, "start") else parse_time(warm_from),
                )
            )
    except (ValueError, LookupError, GroupActiveError) as exc:
        print(f"enricher replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(result.summary())
    return 1 if result.mode == "diff" and result.differences else 0
