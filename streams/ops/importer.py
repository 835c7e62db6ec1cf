"""``enricher import FILE``: historical or exported Segment events (JSON Lines, gzip accepted)
into the raw topic, in file order per device.

Each record is keyed by the device the worker would name it by (CONTRACT "Device key":
the raw ``anonymousId``, else ``userId``), so one device's events share a partition and keep
their order. The record timestamp is the event's own time (``receivedAt``, else
``timestamp``, else ``sentAt``), so time ranges of replays and rewinds mean event time and
R31 sees the original receipt time. A line that is not a JSON object is produced as it is:
the worker dead-letters it with its code and payload, so nothing in the file is lost.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Final

import orjson

from enrichers.devices import device_key
from enrichers.hygiene import Placeholders, placeholder_free
from enrichers.timestamps import parse_iso_ms
from streams.ops.progress import progress_bar
from streams.settings import Settings
from streams.worker.clients import new_producer
from streams.worker.topics import ensure_topics

IN_FLIGHT: Final = 5000
GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass
class ImportResult:
    records: int = 0
    keyed: int = 0
    not_objects: int = 0
    bad_lines: list[int] = field(default_factory=list)
    types: Counter[str] = field(default_factory=Counter)

    def summary(self, topic: str) -> str:
        text = (
            f"imported {self.records} records into {topic} ({self.keyed} keyed by device); "
            f"types: {dict(self.types.most_common())}"
        )
        if self.not_objects:
            text += (
                f"\n{self.not_objects} lines are not JSON objects (the worker dead-letters "
                f"them); first at line(s) {self.bad_lines}"
            )
        return text


def record_key(event: Any, placeholders: Placeholders) -> bytes | None:
    """The record key of a keyless line: its device key (CONTRACT "Device key"; R36: never a
    placeholder id)."""
    if not isinstance(event, dict):
        return None
    key = device_key(None, placeholder_free(event, placeholders))
    return None if key is None else key.encode("utf-8")


def event_time_ms(event: Any) -> int | None:
    if not isinstance(event, dict):
        return None
    for name in ("receivedAt", "timestamp", "sentAt"):
        parsed = parse_iso_ms(event.get(name))
        if parsed is not None:
            return parsed
    return None


def open_events(path: str) -> tuple[IO[bytes], io.BufferedReader, int | None]:
    """(lines to read, the underlying file for progress, its size): gzip by its magic."""
    raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    size = None if path == "-" else os.fstat(raw.fileno()).st_size
    if not isinstance(raw, io.BufferedReader):
        raw = io.BufferedReader(raw)
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw), raw, size  # type: ignore[return-value]
    return raw, raw, size


async def import_events(settings: Settings, path: str, topic: str) -> ImportResult:
    await ensure_topics(settings)
    result = ImportResult()
    lines, underlying, size = open_events(path)
    producer = new_producer(settings, linger_ms=20, enable_idempotence=False)
    await producer.start()
    try:
        with lines, progress_bar(f"import {os.path.basename(path)} (bytes)", size) as bar:
            pending: list[Any] = []
            done_bytes = 0
            for number, line in enumerate(lines, start=1):
                value = line.strip()
                if not value:
                    continue
                try:
                    event = orjson.loads(value)
                except orjson.JSONDecodeError:
                    event = None
                if not isinstance(event, dict):
                    result.not_objects += 1
                    if len(result.bad_lines) < 10:
                        result.bad_lines.append(number)
                else:
                    result.types[str(event.get("type"))] += 1
                key = record_key(event, settings.policy.placeholders)
                result.keyed += key is not None
                pending.append(
                    await producer.send(topic, value, key=key, timestamp_ms=event_time_ms(event))
                )
                result.records += 1
                if len(pending) >= IN_FLIGHT:
                    await asyncio.gather(*pending)
                    pending = []
                    if size is not None:
                        position = underlying.tell()
                        bar.advance(position - done_bytes)
                        done_bytes = position
            await asyncio.gather(*pending)
            if size is not None:
                bar.advance(size - done_bytes)
    finally:
        await producer.stop()
    return result


def run_import(settings: Settings, args: Any) -> int:
    topic = args.topic or settings.topic_raw
    try:
        result = asyncio.run(
            import_events(settings.with_overrides(topic_raw=topic), args.file, topic)
        )
    except OSError as exc:
        print(f"enricher import: {exc}", file=sys.stderr)
        return 2
    print(result.summary(topic))
    return 0
