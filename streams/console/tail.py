"""Reading the pipeline's topics for the console: a tail of raw, warehouse, destinations and
dead letters (no consumer group, nothing committed), into the window; rates over the last
minutes; the worker group's lag per raw partition."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.console.window import Entry, Window
from streams.settings import Settings
from streams.worker.clients import new_consumer, topic_partitions

log = logging.getLogger(__name__)

SAMPLE_SECONDS: Final = 1.0
SAMPLES_KEPT: Final = 600
"""Ten minutes of one-second samples for the health strip's charts."""
LAG_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    counts: dict[str, int]


class ConsoleTail:
    def __init__(self, settings: Settings, window: Window) -> None:
        self._settings = settings
        self.window = window
        self._roles = {
            settings.topic_raw: "raw",
            settings.topic_warehouse: "warehouse",
            settings.topic_destinations: "destinations",
            settings.topic_deadletter: "deadletter",
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._group: AIOKafkaConsumer | None = None
        self._listeners: set[Callable[[list[Entry]], None]] = set()
        self.samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)
        self.lag: dict[int, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def listen(self, listener: Callable[[list[Entry]], None]) -> Callable[[], None]:
        """Call ``listener`` with the entries each fetch added or completed; returns the
        function that stops it."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    async def start(self) -> None:
        consumer = new_consumer(self._settings, enable_auto_commit=False, max_poll_records=5000)
        await consumer.start()
        partitions: list[TopicPartition] = []
        deadline = time.monotonic() + 60
        while not partitions and time.monotonic() < deadline:
            partitions = await topic_partitions(consumer, list(self._roles))
            if not partitions:
                await asyncio.sleep(0.5)
        consumer.assign(partitions)
        await self._seek_recent(consumer, partitions)
        self._consumer = consumer
        # a member of no group: asks the worker group's committed offsets, joins nothing
        self._group = new_consumer(
            self._settings, group_id=self._settings.app_id, enable_auto_commit=False
        )
        await self._group.start()
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._sample()),
            asyncio.create_task(self._follow_lag()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in (self._consumer, self._group):
            if consumer is not None:
                await consumer.stop()

    async def _seek_recent(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        """Start each partition a window's share before its end: the page has recent events
        from the start, and nothing older than the window is read."""
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        raw_partitions = sum(1 for tp in partitions if tp.topic == self._settings.topic_raw)
        share = max(1, self.window.size // max(1, raw_partitions))
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - share))

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            changed: dict[str, Entry] = {}
            # raw records first: outputs fetched with them find their entry
            for tp, messages in sorted(
                fetched.items(), key=lambda item: self._roles.get(item[0].topic) != "raw"
            ):
                role = self._roles.get(tp.topic)
                for message in messages:
                    entry: Entry | None
                    if role == "raw":
                        entry = self.window.add_raw(
                            tp.topic,
                            tp.partition,
                            message.offset,
                            message.key,
                            message.value,
                            message.timestamp,
                        )
                    elif role is not None:
                        entry = self.window.add_output(role, message.value)
                    else:
                        entry = None
                    if entry is not None:
                        changed[entry.id] = entry
            if changed:
                entries = list(changed.values())
                for listener in list(self._listeners):
                    listener(entries)

    async def _sample(self) -> None:
        while True:
            self.samples.append(Sample(time.time(), dict(self.window.counts)))
            await asyncio.sleep(SAMPLE_SECONDS)

    async def _follow_lag(self) -> None:
        assert self._consumer is not None and self._group is not None
        raw = [tp for tp in self._consumer.assignment() if tp.topic == self._settings.topic_raw]
        while True:
            try:
                ends = await self._consumer.end_offsets(raw)
                committed = await asyncio.gather(*(self._group.committed(tp) for tp in raw))
                self.lag = {
                    tp.partition: max(0, ends[tp] - (done or 0))
                    for tp, done in zip(raw, committed, strict=True)
                }
            except Exception as exc:  # an outage: the strip shows the last known lag
                log.warning("reading the worker's lag: %r", exc)
            await asyncio.sleep(LAG_SECONDS)

    def health(self) -> dict[str, Any]:
        """Events per second in and out, dead letters per minute, lag per partition, and
        one-second series of the last minutes."""
        samples = list(self.samples)
        series = [
            {
                "at": later.at,
                "in": later.counts["raw"] - earlier.counts["raw"],
                "out": later.counts["warehouse"] - earlier.counts["warehouse"],
                "deadletters": later.counts["deadletter"] - earlier.counts["deadletter"],
            }
            for earlier, later in itertools.pairwise(samples)
        ]
        recent = series[-5:]
        minute = series[-60:]
        seconds = max(1, len(recent))
        return {
            "inPerSecond": sum(s["in"] for s in recent) / seconds,
            "outPerSecond": sum(s["out"] for s in recent) / seconds,
            "deadLettersPerMinute": sum(s["deadletters"] for s in minute)
            * 60
            / max(1, len(minute)),
            "lag": {str(p): lag for p, lag in sorted(self.lag.items())},
            "series": series[-300:],
            "window": len(self.window.entries),
            "counts": dict(self.window.counts),
        }
