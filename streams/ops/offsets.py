"""Where a partition ends and which offset a point in time names.

Apache Kafka answers both: the high watermark is the end, and ``ListOffsets`` by time
(``offsets_for_times``) the first offset at or after a time. Some Kafka-compatible brokers
answer wrongly: the embedded development broker (Tansu) answers ``ListOffsets`` by time with
offset 0 and timestamp -1, and its high watermark may count produce requests rather than
records. Each broker is probed once per process (:func:`broker_answers`, logged); one that
answers wrongly gets the fallbacks, which read the records themselves: the end of a
partition is the first offset at which no record can be fetched (the high watermark is only
the first guess), and the offset of a time is found by binary search over record
timestamps. As with Kafka's own time index, timestamps are assumed to rise with offsets;
where producers set them out of order the answer is the first offset of the search's path
whose record is at or after the time.

Use :func:`probe_consumer` for a consumer suitable for probing (no group, short fetch waits);
the functions below take it and move its positions.
"""

from __future__ import annotations

import contextlib
import logging
import re
import weakref
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.settings import Settings
from streams.worker.clients import new_consumer
from streams.worker.clients import topic_partitions as partitions_of

EMPTY_FETCH_MS: Final = 400
"""How long a probe waits for a record before it takes the offset as past the end."""

READ_FORWARD_FETCHES: Final = 8
"""Fetches (up to 1 MB each) read past the high watermark before searching for the end."""

log = logging.getLogger(__name__)

_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class BrokerAnswers:
    """Whether a broker's offset answers can be used as they are."""

    by_time: bool
    """``ListOffsets`` by time gives the first offset at or after the time, with its stamp."""
    watermarks: bool
    """The high watermark is the offset after the last record."""

    @property
    def path(self) -> str:
        if self.by_time and self.watermarks:
            return "offsets by time and log ends from the broker's answers"
        return "offsets by time and log ends found by reading records (the broker answers wrongly)"


_PROBED: dict[str, BrokerAnswers] = {}
"""Verdicts by bootstrap servers: each broker is probed once per process."""
_BOOTSTRAP: weakref.WeakKeyDictionary[AIOKafkaConsumer, str] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def probe_consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group, for probing and reading ranges."""
    consumer = new_consumer(
        settings,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=1024 * 1024,
    )
    await consumer.start()
    _BOOTSTRAP[consumer] = settings.bootstrap_servers
    try:
        yield consumer
    finally:
        await consumer.stop()


async def broker_answers(consumer: AIOKafkaConsumer, tp: TopicPartition) -> BrokerAnswers:
    """Probe the broker behind ``consumer`` on ``tp`` (once per broker and process, as soon as
    a partition with records shows it): ``ListOffsets`` for time 0 must name the first record
    with its timestamp, ``ListOffsets`` for a time after the last record must name none, and
    the record before the high watermark must be the last one. A broker that cannot be
    judged yet (an empty partition) is read the safe way meanwhile."""
    bootstrap = _BOOTSTRAP.get(consumer, "")
    known = _PROBED.get(bootstrap)
    if known is not None:
        return known
    _ensure_assigned(consumer, [tp])
    start = int((await consumer.beginning_offsets([tp]))[tp])
    watermark = int((await consumer.end_offsets([tp]))[tp])
    found, stamp = await _first_at(consumer, tp, start)
    if found < 0:  # no record to judge by
        return BrokerAnswers(by_time=False, watermarks=False)
    last, last_stamp = await _last_record_from(consumer, tp, max(watermark - 1, start))
    answers = await consumer.offsets_for_times({tp: 0})
    first_right = answers[tp] is not None and (answers[tp].offset, answers[tp].timestamp) == (
        found,
        stamp,
    )
    after = (await consumer.offsets_for_times({tp: max(stamp, last_stamp) + 1}))[tp]
    # Tansu answers time 0 right but names offset 0 (timestamp -1) for a time past every record
    by_time = first_right and after is None
    # one partition can happen to have a right watermark on a broker whose watermarks are
    # wrong (Tansu's count produce requests): only a broker that also answers ListOffsets
    # by time right is trusted with them
    ends_right = watermark > start and last == watermark - 1
    verdict = BrokerAnswers(by_time=by_time, watermarks=by_time and ends_right)
    if bootstrap:
        _PROBED[bootstrap] = verdict
    log.info("broker %s: %s", bootstrap or "?", verdict.path)
    return verdict


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of an existing topic (never creates it: asks for all topics' metadata).
    Raises :class:`LookupError` when the topic does not exist."""
    partitions = await partitions_of(consumer, [topic])
    if not partitions:
        raise LookupError(f"no topic {topic!r} on the broker")
    return partitions


async def _first_at(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> tuple[int, int]:
    """(offset, timestamp) of the first record at or after ``offset``; (-1, -1) if none."""
    consumer.seek(tp, offset)
    fetched = await consumer.getmany(tp, timeout_ms=EMPTY_FETCH_MS, max_records=1)
    for message in fetched.get(tp, []):
        return message.offset, message.timestamp
    return -1, -1


async def log_start(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    _ensure_assigned(consumer, [tp])
    return int((await consumer.beginning_offsets([tp]))[tp])


async def _last_record_from(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
) -> tuple[int, int]:
    """(offset, timestamp) of the last record one fetch from ``offset`` returns; (-1, -1)."""
    consumer.seek(tp, offset)
    fetched = await consumer.getmany(tp, timeout_ms=EMPTY_FETCH_MS, max_records=1_000_000)
    messages = fetched.get(tp, [])
    return (messages[-1].offset, messages[-1].timestamp) if messages else (-1, -1)


async def _last_from(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> int:
    """The last offset of what one fetch from ``offset`` returns; -1 if nothing is there."""
    consumer.seek(tp, offset)
    fetched = await consumer.getmany(tp, timeout_ms=EMPTY_FETCH_MS, max_records=1_000_000)
    messages = fetched.get(tp, [])
    return messages[-1].offset if messages else -1


async def log_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """The offset after the last record of ``tp`` (the next offset to be written)."""
    _ensure_assigned(consumer, [tp])
    if (await broker_answers(consumer, tp)).watermarks:
        return int((await consumer.end_offsets([tp]))[tp])
    start = await log_start(consumer, tp)
    guess = max(int((await consumer.end_offsets([tp]))[tp]), start)
    if guess > start and (await _first_at(consumer, tp, guess - 1))[0] < 0:
        # the watermark is too high: binary search below it
        low, high = start, guess - 1
        if (await _first_at(consumer, tp, start))[0] < 0:
            return start
    else:
        # too low (it counts produce requests): read forward a few fetches (the usual gap),
        # then gallop past the real end
        position = guess
        for _ in range(READ_FORWARD_FETCHES):
            last = await _last_from(consumer, tp, position)
            if last < 0:
                return position
            position = last + 1
        low, step = position - 1, 1024
        while (await _first_at(consumer, tp, low + step))[0] >= 0:
            low, step = low + step, step * 2
        high = low + step
    # low has a record at or after it, high has none
    while high - low > 1:
        middle = (low + high) // 2
        if (await _first_at(consumer, tp, middle))[0] >= 0:
            low = middle
        else:
            high = middle
    return high


async def offset_for_time(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    timestamp_ms: int,
    start: int | None = None,
    end: int | None = None,
) -> int:
    """The first offset of ``tp`` whose record timestamp is at or after ``timestamp_ms``;
    the end of the partition when every record is older."""
    _ensure_assigned(consumer, [tp])
    low = await log_start(consumer, tp) if start is None else start
    high = await log_end(consumer, tp) if end is None else end
    if (await broker_answers(consumer, tp)).by_time:
        answer = (await consumer.offsets_for_times({tp: max(timestamp_ms, 0)}))[tp]
        return high if answer is None else min(max(answer.offset, low), high)
    # invariant: every record before ``low`` is older; the answer is at most ``high``
    while low < high:
        middle = (low + high) // 2
        found, stamp = await _first_at(consumer, tp, middle)
        if found < 0 or found >= high or stamp >= timestamp_ms:
            high = middle  # nothing older between middle and the first newer record
        else:
            low = found + 1
    return low


async def offsets_for_time(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], timestamp_ms: int
) -> dict[TopicPartition, int]:
    ends = await log_ends(consumer, partitions)
    return {
        tp: await offset_for_time(consumer, tp, timestamp_ms, None, end) for tp, end in ends.items()
    }


async def log_ends(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """:func:`log_end` of many partitions at once: they are read forward from their
    watermarks together, so the wait that tells "nothing more" is paid once, not per
    partition; a partition that does not settle that way is searched on its own."""
    partitions = list(partitions)
    if not partitions:
        return {}
    _ensure_assigned(consumer, partitions)
    starts = await consumer.beginning_offsets(partitions)
    guesses = await consumer.end_offsets(partitions)
    for tp in partitions:
        if guesses[tp] > starts[tp]:  # a partition with records can tell how the broker answers
            if (await broker_answers(consumer, tp)).watermarks:
                return {tp: int(guesses[tp]) for tp in partitions}
            break
    seen: dict[TopicPartition, int] = {}  # partitions with a record at guess-1 or later
    for tp in partitions:
        consumer.seek(tp, max(int(guesses[tp]) - 1, int(starts[tp])))
    settled = False
    for _ in range(READ_FORWARD_FETCHES):
        fetched = await consumer.getmany(
            *partitions, timeout_ms=EMPTY_FETCH_MS, max_records=1_000_000
        )
        if not fetched:
            settled = True
            break
        for tp, messages in fetched.items():
            if messages:
                seen[tp] = messages[-1].offset + 1
    ends: dict[TopicPartition, int] = {}
    for tp in partitions:
        start, guess = int(starts[tp]), int(guesses[tp])
        if settled and tp in seen and seen[tp] >= guess:
            ends[tp] = seen[tp]
        elif settled and guess <= start:
            ends[tp] = start  # empty, and nothing arrived at the start
        else:
            ends[tp] = await log_end(consumer, tp)
    return ends


def _ensure_assigned(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    assigned = set(consumer.assignment())
    if not set(partitions) <= assigned:
        consumer.assign(sorted(assigned | set(partitions)))


def parse_time(text: str, now: datetime | None = None) -> int:
    """A point in time as epoch milliseconds: ISO 8601 (``2026-11-29T01:00:00Z``; no zone
    means UTC), epoch milliseconds (``1795000000000``), or a duration ago (``90m``, ``2h``,
    ``7d``). Raises :class:`ValueError` with what it accepts."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    relative = _RELATIVE.match(text)
    if relative:
        now = now or datetime.now(UTC)
        ago = timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
        return int((now - ago).timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use ISO 8601 (2026-11-29T01:00:00Z), epoch milliseconds, "
            "or a duration ago (30m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


async def read_ranges(
    consumer: AIOKafkaConsumer,
    ranges: dict[TopicPartition, tuple[int, int]],
    max_records: int = 2000,
) -> AsyncIterator[list[tuple[TopicPartition, list[ConsumerRecord]]]]:
    """Every record of each partition's ``[start, end)``, in batches, in offset order per
    partition; stops when each position reached its end."""
    todo = {tp: bounds for tp, bounds in ranges.items() if bounds[0] < bounds[1]}
    if not todo:
        return  # (an empty assignment leaves aiokafka's fetcher unable to stop)
    consumer.assign(sorted(todo))
    for tp, (start, _) in todo.items():
        consumer.seek(tp, start)
    while todo:
        fetched = await consumer.getmany(*todo, timeout_ms=1000, max_records=max_records)
        batch: list[tuple[TopicPartition, list[ConsumerRecord]]] = []
        for tp, messages in fetched.items():
            end = todo[tp][1]
            kept = [m for m in messages if m.offset < end]
            if kept:
                batch.append((tp, kept))
        for tp in list(todo):
            if await consumer.position(tp) >= todo[tp][1]:
                del todo[tp]
                consumer.pause(tp)
        if batch:
            yield batch
