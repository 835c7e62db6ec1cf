"""``enricher deadletter list|show|requeue``: dead letters summarised by code, shown, and put
back into the raw topic once the cause is fixed (a rules fix, or records edited by hand).

Selection: by code (``--code``, repeatable) and by time of failure (``--from``/``--to``,
record timestamps of the dead-letter topic). ``requeue --file`` takes dead-letter records
(JSON Lines, e.g. the output of ``show``, edited) instead. A requeued record carries its
original key and timestamp; it gets a new offset in the raw topic, so a raw event without
its own messageId gets a new derived one: requeue a selection once.

Dead letters whose payload was cut (over 512 KB: ``payloadTruncated``) or absent cannot be
requeued; they are counted and left out.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from enrichers.timestamps import parse_iso_ms
from streams.ops.offsets import (
    log_ends,
    log_start,
    offset_for_time,
    parse_time,
    probe_consumer,
    read_ranges,
    topic_partitions,
)
from streams.ops.progress import progress_bar
from streams.settings import Settings
from streams.worker.clients import new_producer


@dataclass(frozen=True)
class Selection:
    codes: frozenset[str] | None = None
    from_ms: int | None = None
    to_ms: int | None = None

    def matches(self, dead_letter: dict[str, Any]) -> bool:
        return self.codes is None or _code(dead_letter) in self.codes


def _code(dead_letter: dict[str, Any]) -> str:
    error = dead_letter.get("error")
    return str(error.get("code")) if isinstance(error, dict) else "unknown"


async def read_dead_letters(
    settings: Settings, topic: str, selection: Selection
) -> AsyncIterator[dict[str, Any]]:
    """The selected dead-letter records, partition by partition, in offset order."""
    async with probe_consumer(settings) as consumer:
        ranges = {}
        ends = await log_ends(consumer, await topic_partitions(consumer, topic))
        for tp, end in ends.items():
            start = await log_start(consumer, tp)
            if selection.from_ms is not None:
                start = await offset_for_time(consumer, tp, selection.from_ms, None, end)
            if selection.to_ms is not None:
                end = await offset_for_time(consumer, tp, selection.to_ms, start, end)
            ranges[tp] = (start, end)
        async for batch in read_ranges(consumer, ranges, settings.batch_max):
            for _, messages in batch:
                for message in messages:
                    try:
                        document = orjson.loads(message.value)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(document, dict) and selection.matches(document):
                        yield document


@dataclass
class CodeSummary:
    count: int = 0
    first_failed_at: str = ""
    last_failed_at: str = ""
    example: str = ""


async def list_dead_letters(
    settings: Settings, topic: str, selection: Selection
) -> dict[str, CodeSummary]:
    codes: dict[str, CodeSummary] = {}
    async for dead_letter in read_dead_letters(settings, topic, selection):
        summary = codes.setdefault(_code(dead_letter), CodeSummary())
        summary.count += 1
        failed_at = str(dead_letter.get("failedAt", ""))
        if not summary.first_failed_at or failed_at < summary.first_failed_at:
            summary.first_failed_at = failed_at
        summary.last_failed_at = max(summary.last_failed_at, failed_at)
        if not summary.example:
            summary.example = str((dead_letter.get("error") or {}).get("message", ""))
    return codes


def payload_bytes(dead_letter: dict[str, Any]) -> bytes | None:
    """The original raw value, or ``None`` when it cannot be restored (cut or absent)."""
    payload = dead_letter.get("payload")
    if dead_letter.get("payloadTruncated") or not isinstance(payload, str):
        return None
    if dead_letter.get("payloadEncoding") == "base64":
        return base64.b64decode(payload)
    return payload.encode("utf-8")


@dataclass
class RequeueResult:
    requeued: Counter[str] = field(default_factory=Counter)
    not_restorable: Counter[str] = field(default_factory=Counter)

    def summary(self, topic: str, dry_run: bool) -> str:
        verb = "would requeue" if dry_run else "requeued"
        text = f"{verb} {sum(self.requeued.values())} records into {topic}: {dict(self.requeued)}"
        if self.not_restorable:
            text += (
                f"\nleft out {sum(self.not_restorable.values())} whose payload was cut or "
                f"absent: {dict(self.not_restorable)}"
            )
        return text


async def requeue(
    settings: Settings,
    dead_letters: AsyncIterator[dict[str, Any]],
    topic: str,
    dry_run: bool = False,
) -> RequeueResult:
    result = RequeueResult()
    producer = new_producer(settings, linger_ms=20)
    if not dry_run:
        await producer.start()
    try:
        pending: list[Any] = []
        with progress_bar(f"requeue into {topic}") as bar:
            async for dead_letter in dead_letters:
                code = _code(dead_letter)
                value = payload_bytes(dead_letter)
                if value is None:
                    result.not_restorable[code] += 1
                    continue
                result.requeued[code] += 1
                bar.advance(1)
                if dry_run:
                    continue
                source = dead_letter.get("source") or {}
                key = source.get("key")
                pending.append(
                    await producer.send(
                        topic,
                        value,
                        key=key.encode("utf-8") if isinstance(key, str) else None,
                        timestamp_ms=parse_iso_ms(source.get("timestamp")),
                    )
                )
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
    finally:
        if not dry_run:
            await producer.stop()
    return result


async def _from_file(path: str, selection: Selection) -> AsyncIterator[dict[str, Any]]:
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
            if isinstance(document, dict) and selection.matches(document):
                yield document


def _table(codes: dict[str, CodeSummary]) -> Iterable[str]:
    if not codes:
        yield "no dead letters"
        return
    yield f"{'code':<20} {'count':>8}  {'first failed':<24} {'last failed':<24} example"
    for code, summary in sorted(codes.items(), key=lambda item: -item[1].count):
        yield (
            f"{code:<20} {summary.count:>8}  {summary.first_failed_at:<24} "
            f"{summary.last_failed_at:<24} {summary.example[:60]}"
        )
    yield f"{'total':<20} {sum(s.count for s in codes.values()):>8}"


async def _show(settings: Settings, topic: str, selection: Selection, limit: int) -> None:
    shown = 0
    async for dead_letter in read_dead_letters(settings, topic, selection):
        print(orjson.dumps(dead_letter).decode())
        shown += 1
        if shown >= limit:
            break


def run_deadletter(settings: Settings, args: Any) -> int:
    topic = args.topic or settings.topic_deadletter
    try:
        selection = Selection(
            frozenset(args.code) if args.code else None,
            parse_time(args.from_time) if args.from_time else None,
            parse_time(args.to_time) if args.to_time else None,
        )
        if args.action == "list":
            codes = asyncio.run(list_dead_letters(settings, topic, selection))
            print("\n".join(_table(codes)))
        elif args.action == "show":
            asyncio.run(_show(settings, topic, selection, args.limit))
        else:
            source = (
                _from_file(args.file, selection)
                if args.file
                else read_dead_letters(settings, topic, selection)
            )
            result = asyncio.run(requeue(settings, source, settings.topic_raw, args.dry_run))
            print(result.summary(settings.topic_raw, args.dry_run))
    except (ValueError, LookupError, OSError) as exc:
        print(f"enricher deadletter: {exc}", file=sys.stderr)
        return 2
    return 0
