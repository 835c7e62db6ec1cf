"""The batch loop's body: raw records in, outputs produced and acknowledged, state saved.

Order of effects per batch (CONTRACT, SPEC R34): outputs are written and acknowledged by the
broker first, then device state is saved (fenced by source offsets), and only then may the
caller commit the offsets. A crash at any point re-processes the batch: outputs repeat with
the same messageIds, and the fence keeps state changes from applying twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson

from enrichers import (
    EMPTY_DEVICE,
    DeviceRef,
    DeviceState,
    GroupProfileUpdate,
    Policy,
    RawEvent,
    RejectCode,
    Rejection,
    Source,
    Status,
    UserProfileUpdate,
    enrich_event,
    parse_raw_event,
    resolve_device,
)
from enrichers.values import id_string
from streams.deadletter import dead_letter_value
from streams.records import InRecord, OutRecord
from streams.retry import until_done
from streams.store import DeviceWrite, StateStore, coalesce_profiles

T = TypeVar("T")
log = logging.getLogger(__name__)

_REDIS_OPERATIONS = frozenset({"load", "load profiles", "save"})


class RecordWriter(Protocol):
    async def write(self, records: Sequence[OutRecord]) -> None:
        """Produce every record and return once the broker acknowledged all of them."""


@dataclass(frozen=True, slots=True)
class OutputTopics:
    warehouse: str
    destinations: str
    deadletter: str


@dataclass
class Counters:
    """What the worker has done since it started (logged, and exported by later issues)."""

    events_in: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    already_applied: int = 0
    rotations: int = 0
    generated_anonymous_ids: int = 0
    fenced_writes: int = 0
    batches: int = 0
    retries: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "eventsIn": dict(self.events_in),
            "messagesOut": dict(self.messages_out),
            "deadLetters": dict(self.dead_letters),
            "duplicates": self.duplicates,
            "alreadyApplied": self.already_applied,
            "rotations": self.rotations,
            "generatedAnonymousIds": self.generated_anonymous_ids,
            "fencedWrites": self.fenced_writes,
            "retries": dict(self.retries),
        }

    def summary(self) -> str:
        return (
            f"batches={self.batches} in={sum(self.events_in.values())} "
            f"out={dict(self.messages_out)} deadletters={dict(self.dead_letters)} "
            f"duplicates={self.duplicates} already_applied={self.already_applied} "
            f"fenced_writes={self.fenced_writes} retries={dict(self.retries)}"
        )


@dataclass(frozen=True, slots=True)
class _Accepted:
    record: InRecord
    event: RawEvent
    source: Source
    device: DeviceRef


class BatchProcessor:
    def __init__(
        self,
        store: StateStore,
        writer: RecordWriter,
        topics: OutputTopics,
        policy: Policy,
        max_bytes: int = 16 * 1024 * 1024,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self._writer = writer
        self._topics = topics
        self._policy = policy
        self._clock_ms = clock_ms
        self._max_bytes = max_bytes
        self.counters = Counters()
        self.redis_timer: Callable[[str, float], None] | None = None
        """Told the duration of each Redis round trip (load, load profiles, save)."""

    async def process(self, records: Sequence[InRecord]) -> None:
        """Process one batch completely; returns when its offsets may be committed. A batch
        over ``max_bytes`` of raw values is done in consecutive parts, in order."""
        start = size = 0
        for end, record in enumerate(records):
            size += len(record.value or b"")
            if size > self._max_bytes and end > start:
                await self._process_part(records[start:end])
                start, size = end, len(record.value or b"")
        if start < len(records):
            await self._process_part(records[start:])
        self.counters.batches += 1

    async def _process_part(self, records: Sequence[InRecord]) -> None:
        out: list[OutRecord] = []
        accepted = self._accept(records, out)
        device_keys = list(dict.fromkeys(item.device.key for item in accepted))
        stored = await self._retrying(lambda: self._store.load_devices(device_keys), "load")
        user_traits: dict[str, dict[str, Any]] = {}
        if self._policy.context_traits:
            # R30 reads user profiles: those of every user the batch may name, one round trip
            candidates = list(_users_named(accepted, stored.values()))
            user_traits = await self._retrying(
                lambda: self._store.load_user_traits(candidates), "load profiles"
            )
        states: dict[str, DeviceState] = {}
        advanced: dict[str, dict[str, int]] = {}
        users: list[UserProfileUpdate] = []
        groups: list[GroupProfileUpdate] = []
        for item in accepted:  # R34: per device in input order
            key = item.device.key
            state = states[key] if key in states else stored.get(key, EMPTY_DEVICE)
            try:
                outcome = enrich_event(
                    state, item.event, item.device, item.source, self._policy, user_traits
                )
            except Exception as exc:  # a bug must not turn one event into a poison pill
                log.exception("processing %s failed; dead-lettered", item.source)
                out.append(self._dead_letter(item.record, "processing_error", repr(exc)))
                continue
            self._count(item.event, outcome.status)
            if outcome.status is Status.ALREADY_APPLIED:
                continue
            states[key] = outcome.state
            advanced.setdefault(key, {})[item.source.stream] = item.source.offset
            if outcome.rejection is not None:
                rejection = outcome.rejection
                out.append(self._dead_letter(item.record, rejection.code, rejection.message))
            if outcome.status is not Status.MESSAGE:
                continue
            assert outcome.warehouse is not None and outcome.identity is not None
            self.counters.rotations += outcome.identity.rotated
            self.counters.generated_anonymous_ids += (
                outcome.identity.anonymous_id_source == "generated"
            )
            record_key = key.encode("utf-8")
            out.append(
                OutRecord(self._topics.warehouse, record_key, orjson.dumps(outcome.warehouse))
            )
            if outcome.destinations is not None:
                out.append(
                    OutRecord(
                        self._topics.destinations, record_key, orjson.dumps(outcome.destinations)
                    )
                )
            if outcome.user_update is not None:
                users.append(outcome.user_update)
                if outcome.user_update.traits and self._policy.context_traits:
                    merged = user_traits.setdefault(outcome.user_update.user_id, {})
                    merged.update(outcome.user_update.traits)
            if outcome.group_update is not None:
                groups.append(outcome.group_update)

        if out:
            await self._retrying(lambda: self._writer.write(out), "produce")
            self.counters.messages_out.update(record.topic for record in out)
        writes = [DeviceWrite(key, state) for key, state in states.items()]
        user_merges, group_merges = coalesce_profiles(users, groups)
        if writes or user_merges or group_merges:
            refused = await self._retrying(
                lambda: self._store.save(writes, advanced, user_merges, group_merges), "save"
            )
            self.counters.fenced_writes += refused

    def _accept(self, records: Sequence[InRecord], out: list[OutRecord]) -> list[_Accepted]:
        """Validate every record; the rejected become dead letters in ``out``."""
        accepted: list[_Accepted] = []
        for record in records:
            result: RawEvent | Rejection
            key: str | None = None
            try:
                key = record.key.decode("utf-8") if record.key else None
            except UnicodeDecodeError:
                result = Rejection(RejectCode.INVALID_FIELD, "the record key is not UTF-8")
            else:
                result = parse_raw_event(record.value)
            if isinstance(result, Rejection):
                out.append(self._dead_letter(record, result.code, result.message))
                continue
            source = Source(record.topic, record.partition, record.offset, key, record.timestamp_ms)
            accepted.append(_Accepted(record, result, source, resolve_device(result, source)))
        return accepted

    def _dead_letter(self, record: InRecord, code: str, message: str) -> OutRecord:
        self.counters.dead_letters[code] += 1
        value = dead_letter_value(record, code, message, self._clock_ms())
        return OutRecord(self._topics.deadletter, record.key, value)

    def _count(self, event: RawEvent, status: Status) -> None:
        self.counters.events_in[event.type] += 1
        if status is Status.DUPLICATE:
            self.counters.duplicates += 1
        elif status is Status.ALREADY_APPLIED:
            self.counters.already_applied += 1

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        timer = self.redis_timer
        if timer is None or what not in _REDIS_OPERATIONS:
            return await until_done(operation, what, self._count_retry)

        async def timed() -> T:
            started = time.perf_counter()
            try:
                return await operation()
            finally:
                timer(what, time.perf_counter() - started)

        return await until_done(timed, what, self._count_retry)

    def _count_retry(self, what: str) -> None:
        self.counters.retries[what] += 1


def _users_named(accepted: Sequence[_Accepted], stored: Iterable[DeviceState]) -> Iterator[str]:
    """Every userId a batch's messages may carry (R15, R22): stored ones and given ones."""
    for state in stored:
        if state.uid:
            yield state.uid
    for item in accepted:
        for candidate in (item.event.get("userId"), item.event.options.get("userId")):
            user_id = id_string(candidate)
            if user_id:
                yield user_id
