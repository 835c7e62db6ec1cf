"""Regulations on Kafka (SPEC R39, CONTRACT): ``events.regulations`` holds each regulation
(keyed by its id), ``events.regulations.status`` each outcome (keyed ``<id>/<who>``: ``state``
for the worker's, ``sink:<name>`` for a sink's). Both have one partition and are compacted,
so every worker and sink reads every regulation in order, and a regulation's status is the
fold of what was said of it. Outcomes hold counts and errors, never ids."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from enrichers.regulations import (
    InvalidRegulation,
    Regulation,
    RegulationIds,
    parse_regulation,
)
from enrichers.timestamps import format_iso_ms
from streams.settings import Settings
from streams.worker.clients import new_consumer, new_producer

log = logging.getLogger(__name__)

STATE: Final = "state"
"""Who applies a regulation to the stored state: the workers."""
STALLED_SECONDS: Final = 5.0
FINAL_STATES: Final = frozenset({"applied", "unsupported"})
"""An outcome after which nothing more is done (a failure is tried again on the next start)."""


def sink_outcome_name(sink_name: str) -> str:
    return f"sink:{sink_name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    regulation_id: str
    who: str
    state: str
    """applied, unsupported, failed."""
    at_ms: int
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "regulationId": self.regulation_id,
            "who": self.who,
            "state": self.state,
            "at": format_iso_ms(self.at_ms),
            "atMs": self.at_ms,
        }
        if self.error is not None:
            document["error"] = self.error
        if self.details:
            document["details"] = self.details
        return document

    @classmethod
    def from_json(cls, document: Any) -> Outcome | None:
        if not isinstance(document, dict):
            return None
        try:
            return cls(
                str(document["regulationId"]),
                str(document["who"]),
                str(document["state"]),
                int(document["atMs"]),
                document.get("error"),
                dict(document.get("details") or {}),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class RegulationStatus:
    regulation: Regulation
    received_at_ms: int
    """When the regulation's record reached the topic."""
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def done_by(self, who: str) -> bool:
        outcome = self.outcomes.get(who)
        return outcome is not None and outcome.state in FINAL_STATES

    def as_json(self) -> dict[str, Any]:
        """The regulation's state, as ``regulate status`` and ``GET /regulations/{id}`` show
        it: counts of ids, never the ids."""
        regulation = self.regulation
        state = self.outcomes.get(STATE)
        sinks = {
            who.removeprefix("sink:"): _outcome_json(outcome)
            for who, outcome in sorted(self.outcomes.items())
            if who.startswith("sink:")
        }
        return {
            "id": regulation.id,
            "type": regulation.type,
            "ids": regulation.counts(),
            "requestedAt": format_iso_ms(regulation.requested_at_ms),
            "receivedAt": format_iso_ms(self.received_at_ms),
            "state": _outcome_json(state) if state is not None else {"state": "pending"},
            "sinks": sinks,
        }


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    document: dict[str, Any] = {"state": outcome.state, "at": format_iso_ms(outcome.at_ms)}
    if outcome.error:
        document["error"] = outcome.error
    if outcome.details:
        document["details"] = outcome.details
    return document


class RegulationBook:
    """Every regulation read so far, in topic order, with its outcomes."""

    def __init__(self) -> None:
        self.statuses: dict[str, RegulationStatus] = {}
        self._early: dict[str, list[Outcome]] = {}
        """Outcomes read before their regulation (the two topics are read side by side)."""

    def add_regulation(self, value: bytes | None, timestamp_ms: int) -> RegulationStatus | None:
        try:
            regulation = parse_regulation(orjson.loads(value or b"null"))
        except (orjson.JSONDecodeError, InvalidRegulation) as exc:
            log.error("a regulation record is unreadable and ignored: %s", exc)
            return None
        status = self.statuses.get(regulation.id)
        if status is None:
            status = self.statuses[regulation.id] = RegulationStatus(regulation, timestamp_ms)
            for outcome in self._early.pop(regulation.id, ()):
                status.outcomes[outcome.who] = outcome
        return status

    def add_outcome(self, value: bytes | None) -> None:
        try:
            outcome = Outcome.from_json(orjson.loads(value or b"null"))
        except orjson.JSONDecodeError:
            outcome = None
        if outcome is None:
            return
        status = self.statuses.get(outcome.regulation_id)
        if status is None:
            self._early.setdefault(outcome.regulation_id, []).append(outcome)
        else:
            status.outcomes[outcome.who] = outcome

    def pending(self, who: str) -> list[RegulationStatus]:
        return [status for status in self.statuses.values() if not status.done_by(who)]

    def __len__(self) -> int:
        return len(self.statuses)


class RegulationTail:
    """Reads both topics from their beginning, then follows them (no consumer group: every
    reader sees everything)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._regulations = TopicPartition(settings.topic_regulations, 0)
        self._outcomes = TopicPartition(settings.topic_regulation_status, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self.book = RegulationBook()

    async def start(self) -> None:
        consumer = new_consumer(self._settings, enable_auto_commit=False)
        await consumer.start()
        consumer.assign([self._regulations, self._outcomes])
        await consumer.seek_to_beginning(self._regulations, self._outcomes)
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def catch_up(self) -> None:
        """Read up to the ends the topics have now."""
        assert self._consumer is not None
        partitions = [self._regulations, self._outcomes]
        consumer = self._consumer
        ends = await consumer.end_offsets(partitions)

        async def positions() -> list[int]:
            return [await consumer.position(tp) for tp in partitions]

        stalled_since: float | None = None
        while any(at < ends[tp] for at, tp in zip(await positions(), partitions, strict=True)):
            before = await positions()
            await self.poll(0.5)
            if before != await positions():
                stalled_since = None
                continue
            # nothing came: an end offset past the last record (a broker counting produce
            # requests, a compacted tail) is not waited for beyond a few seconds
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > STALLED_SECONDS:
                return

    async def poll(self, timeout: float) -> list[RegulationStatus]:
        """What arrived within ``timeout`` seconds: the new regulations (outcomes are folded
        in the book)."""
        assert self._consumer is not None
        fetched = await self._consumer.getmany(timeout_ms=int(timeout * 1000))
        new: list[RegulationStatus] = []
        for message in fetched.get(self._regulations, ()):
            status = self.book.add_regulation(message.value, message.timestamp)
            if status is not None:
                new.append(status)
        for message in fetched.get(self._outcomes, ()):
            self.book.add_outcome(message.value)
        return new


async def read_book(settings: Settings) -> RegulationBook:
    """Every regulation and outcome on the topics now."""
    tail = RegulationTail(settings)
    await tail.start()
    try:
        await tail.catch_up()
    finally:
        await tail.stop()
    return tail.book


class RegulationWriter:
    """Produces regulations and outcomes (acknowledged by every in-sync replica)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = new_producer(self._settings)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, regulations: Sequence[Regulation]) -> None:
        assert self._producer is not None
        sent = [
            await self._producer.send(
                self._settings.topic_regulations,
                orjson.dumps(regulation.to_json()),
                key=regulation.id.encode(),
            )
            for regulation in regulations
        ]
        await asyncio.gather(*sent)

    async def report(self, outcomes: Iterable[Outcome]) -> None:
        assert self._producer is not None
        sent = [
            await self._producer.send(
                self._settings.topic_regulation_status,
                orjson.dumps(outcome.to_json()),
                key=f"{outcome.regulation_id}/{outcome.who}".encode(),
            )
            for outcome in outcomes
        ]
        await asyncio.gather(*sent)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_regulations(kind: str, ids: RegulationIds) -> list[Regulation]:
    """Regulations of these ids, with new ids and the time now (split past MAX_IDS ids)."""
    return ids.regulations(kind, iter(lambda: str(uuid.uuid4()), None), now_ms())
