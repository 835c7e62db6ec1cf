"""``enricher replay --mode diff``: a range of the raw topic into scratch state (a throw-away
app id, deleted afterwards) and in-memory outputs, then compared field by field with what the
existing output topics hold, matched by messageId. Ids are deterministic (R32: derived from the
source topic, partition and offset), so an unchanged replay of a range that starts where the
state started has no differences; a rules change (IP policy, context traits) shows as the
fields it changes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer

from streams.ops.diffing import TopicDiff
from streams.ops.offsets import (
    log_ends,
    log_start,
    offset_for_time,
    probe_consumer,
    read_ranges,
    topic_partitions,
)
from streams.ops.progress import progress_bar
from streams.ops.replay_range import (
    Ranges,
    RangeSpec,
    ReplayResult,
    delete_keys,
    replay_range,
    resolve_ranges,
)
from streams.settings import Settings
from streams.state.keys import KeySpace
from streams.state.redis_client import connect_to
from streams.state.store import StateStore
from streams.worker.batch import BatchProcessor, OutputTopics
from streams.worker.records import OutRecord

OUTPUT_CLOCK_SKEW_MS = 10 * 60 * 1000
"""Outputs are stamped when produced, after their raw record: the existing outputs of a range
are looked for from its first raw timestamp less this margin."""


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
    processor = BatchProcessor.from_settings(settings, store, DiscardingWriter(), _NO_TOPICS)
    result = ReplayResult("warm-up", warm)
    await replay_range(consumer, processor, warm, settings.batch_max, result, False)
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
    client = connect_to(settings)
    try:
        store = StateStore(
            client, KeySpace(scratch, settings.device_buckets), settings.policy.device_ttl_ms
        )
        processor = BatchProcessor.from_settings(settings, store, writer, topics)
        async with probe_consumer(settings) as consumer:
            ranges = await resolve_ranges(consumer, spec)
            result = ReplayResult("diff", ranges, app_id=scratch)
            if warm:
                result.warmed = await _warm_up(consumer, store, settings, ranges, warm_from_ms)
            await replay_range(consumer, processor, ranges, settings.batch_max, result, True)
        result.dead_letters = writer.dead_letters
        for topic in (topics.warehouse, topics.destinations):
            result.diffs.append(
                await _compare(
                    settings, topic, writer.messages[topic], result, topic == topics.warehouse
                )
            )
        return result
    finally:
        await delete_keys(client, scratch)
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
        async with probe_consumer(settings) as consumer:
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
