"""The batch loop's body: raw records in, outputs produced and acknowledged, state saved.

Order of effects per batch (CONTRACT, SPEC R34): outputs are written and acknowledged by the
broker first, then device state is saved (fenced by source offsets), and only then may the
caller commit the offsets. A crash at any point re-processes the batch: outputs repeat with
the same messageIds, and the fence keeps state changes from applying twice.

Two batches may be in flight (issue 21): the next one is loaded and applied on the states the
one before hands off as it sends its outputs (:meth:`BatchProcessor.apply_ahead`), sends its
own once those are acknowledged, and saves once that batch is done; the devices that batch did
not save as handed off are applied again first, like R34's concurrent saves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

# (imported by name: compiled, ``orjson.dumps`` is a module attribute lookup on every call)
from orjson import JSONDecodeError, dumps, loads

from enrichers import (
    EMPTY_DEVICE,
    DeviceRef,
    DeviceState,
    EventOutcome,
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
    prepare_event,
)
from enrichers.identity import add_user_ids_named
from enrichers.profiles import coalesce_profiles, merge_traits
from enrichers.regulations import Digests, IdKind, event_ids, raw_ids
from streams.observe.logs import failure_site
from streams.settings import Settings
from streams.state.store import DeviceWrite, StateStore
from streams.worker.deadletter import DEFAULT_RECORD_LIMIT, dead_letter_value
from streams.worker.records import InRecord, OutRecord, fits
from streams.worker.retry import until_done

T = TypeVar("T")
log = logging.getLogger(__name__)

_REDIS_OPERATIONS = frozenset({"load", "load profiles", "save"})


class RecordWriter(Protocol):
    async def write(self, records: Sequence[OutRecord]) -> None:
        """Produce every record and return once the broker acknowledged all of them."""


TopicIds = Callable[[list[str]], Awaitable[dict[str, str]]]
"""Asks the broker for topic ids (streams/worker/topic_ids.py)."""


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
    traits_not_cached: Counter[str] = field(default_factory=Counter)
    blocked_ids: Counter[str] = field(default_factory=Counter)
    profile_ids_trimmed: int = 0
    concurrent_saves: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    """R39: events dropped, by the kind of id that is suppressed."""
    batches: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    applied_ahead: int = 0
    """Batches loaded and applied while the batch before them was being saved."""
    ahead_redone: int = 0
    """Of those, the ones applied again after all: the batch before them met a concurrent
    save, a fenced write or a suppression (R34, R39), so what they built on was not saved."""

    def add(self, other: Counters) -> None:
        """Add what a batch applied ahead counted (:meth:`BatchProcessor.apply_ahead`): the
        counts of its events, dead letters and suppressed ids."""
        self.events_in.update(other.events_in)
        self.dead_letters.update(other.dead_letters)
        self.duplicates += other.duplicates
        self.already_applied += other.already_applied
        self.rotations += other.rotations
        self.generated_anonymous_ids += other.generated_anonymous_ids
        self.traits_not_cached.update(other.traits_not_cached)
        self.suppressed.update(other.suppressed)

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
            "traitsNotCached": dict(self.traits_not_cached),
            "concurrentSaves": self.concurrent_saves,
            "blockedIds": dict(self.blocked_ids),
            "profileIdsTrimmed": self.profile_ids_trimmed,
            "suppressed": dict(self.suppressed),
            "retries": dict(self.retries),
            "batchesAppliedAhead": self.applied_ahead,
            "batchesAheadRedone": self.ahead_redone,
        }

    def summary(self) -> str:
        return (
            f"batches={self.batches} in={sum(self.events_in.values())} "
            f"out={dict(self.messages_out)} deadletters={dict(self.dead_letters)} "
            f"duplicates={self.duplicates} already_applied={self.already_applied} "
            f"fenced_writes={self.fenced_writes} suppressed={sum(self.suppressed.values())} "
            f"retries={dict(self.retries)} applied_ahead={self.applied_ahead} "
            f"ahead_redone={self.ahead_redone}"
        )


@dataclass
class _Applied:
    """What a batch's events did: each device's new state, the offsets applied per device
    (the fence), and the profile updates."""

    states: dict[str, DeviceState] = field(default_factory=dict)
    advanced: dict[str, dict[str, int]] = field(default_factory=dict)
    users: list[UserProfileUpdate] = field(default_factory=list)
    groups: list[GroupProfileUpdate] = field(default_factory=list)
    unrecorded: set[str] = field(default_factory=set)
    """Devices that keep no record (R37): deleted instead of saved."""


class _Accepted:
    """An event of the batch, validated and cleaned (R36). Once applied, its parsed form is
    let go (:meth:`applying`): freed while its memory is still in the processor's caches, and
    taken up by the next events' objects, instead of the whole batch's objects being freed
    at its end (issue 21); applying it again (R34) parses the record again."""

    __slots__ = ("_event", "device", "ids", "record", "source")

    def __init__(
        self,
        record: InRecord,
        event: RawEvent,
        source: Source,
        device: DeviceRef,
        ids: tuple[tuple[IdKind, bytes], ...],
    ) -> None:
        self.record = record
        self._event: RawEvent | None = event
        self.source = source
        self.device = device
        self.ids = ids
        """R39: the digests of the event's ids (its stored userId is added once loaded)."""

    def event(self, policy: Policy) -> RawEvent:
        """The event as accepted; parsed and prepared again (:func:`prepare_event`) once let
        go."""
        event = self._event
        if event is None:
            parsed = parse_raw_event(self.record.value)
            if not isinstance(parsed, RawEvent):  # it was accepted: parsing is deterministic
                raise RuntimeError(f"an accepted record no longer parses: {parsed.code}")
            event = self._event = prepare_event(parsed, self.source, policy).event
        return event

    def applying(self, policy: Policy) -> RawEvent:
        """The event, let go here: the caller's reference is the last."""
        event = self.event(policy)
        self._event = None
        return event


@dataclass(frozen=True, slots=True)
class _Rejected:
    """A record to dead-letter, unless one of its ids is suppressed (R39)."""

    record: InRecord
    code: str
    message: str
    ids: tuple[tuple[IdKind, bytes], ...]


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch validated by :meth:`BatchProcessor.prepare`: per part, the accepted events and
    the rejected records; and the blocked ids (R36), counted when it is processed (a batch
    prepared and then dropped in a rebalance is not counted)."""

    parts: list[tuple[list[_Accepted], list[_Rejected]]]
    blocked: Counter[str]


class _Handoff:
    """What a batch leaves the batch after it as it sends its outputs, before its save: each
    device's new state with the version it is written at (None: deleted), and its user
    profile updates (R30 reads them); then when its outputs are acknowledged, and when it is
    done and which of those states were not saved as handed off."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[DeviceState, int] | None] = {}
        self.users: list[UserProfileUpdate] = []
        self.produced = asyncio.Event()
        """The batch's outputs are acknowledged (or it is done)."""
        self.done = asyncio.Event()
        self.failed = False
        """The batch stopped on an error: nothing may be saved on its states."""
        self.troubled: frozenset[str] | None = frozenset()
        """Once done: the devices not saved as handed off (a concurrent save, R34); None: any
        of them (a fenced write, a suppression found before the save: R34, R39)."""

    def finished(self, failed: bool) -> None:
        self.failed = failed
        self.produced.set()
        self.done.set()


@dataclass
class _Staged:
    """A batch part loaded and applied, its outputs built: what is left is to produce them and
    save."""

    pending: Sequence[_Accepted]
    keys: list[str]
    stored: dict[str, DeviceState]
    checked_at: float
    out: list[OutRecord]
    applied: _Applied


@dataclass
class AppliedAhead:
    """A prepared batch loaded and applied while the batch before it was being saved, on that
    batch's new states (:meth:`BatchProcessor.apply_ahead`)."""

    prepared: PreparedBatch
    staged: _Staged
    handoff: _Handoff
    counters: Counters
    """What its events counted: added when it is processed, not if it is dropped."""

    async def before_sent(self) -> None:
        """Until the batch before's outputs are acknowledged (or it is done)."""
        await self.handoff.produced.wait()


class BatchProcessor:
    def __init__(
        self,
        store: StateStore,
        writer: RecordWriter,
        topics: OutputTopics,
        policy: Policy,
        max_bytes: int = 16 * 1024 * 1024,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        max_record_bytes: int = DEFAULT_RECORD_LIMIT,
        topic_ids: TopicIds | None = None,
        digests: Digests | None = None,
        settle_seconds: float = 10.0,
    ) -> None:
        self._digests = digests or Digests.from_secret(b"")
        self._check_valid_for = settle_seconds / 2
        self._max_record_bytes = max_record_bytes
        self._ask_topic_ids = topic_ids
        self.topic_ids: dict[str, str] = {}
        """Source topic ids ("" for none), asked once per topic; cleared on a rebalance."""
        self._store = store
        self._writer = writer
        self._topics = topics
        self._policy = policy
        self._clock_ms = clock_ms
        self._max_bytes = max_bytes
        self.counters = Counters()
        self.ready: asyncio.Event | None = None
        """R39: when given, batches wait until it is set (the suppression list is whole)."""
        self.writing: asyncio.Event | None = None
        """When given, set as a batch's outputs are sent: the rest of the batch waits on the
        broker and Redis, and the worker fetches and validates the next batch meanwhile."""
        self.redis_timer: Callable[[str, float], None] | None = None
        """Told the duration of each Redis round trip (load, load profiles, save)."""
        self._handoff: _Handoff | None = None
        """The batch in flight's new states, once its last part sent its outputs."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: StateStore,
        writer: RecordWriter,
        topics: OutputTopics,
        topic_ids: TopicIds | None = None,
    ) -> BatchProcessor:
        return cls(
            store,
            writer,
            topics,
            settings.policy,
            settings.batch_max_bytes,
            max_record_bytes=settings.max_record_bytes,
            topic_ids=topic_ids,
            digests=settings.regulation_digests,
            settle_seconds=settings.regulation_settle,
        )

    async def process(self, records: Sequence[InRecord]) -> None:
        """Process one batch completely; returns when its offsets may be committed."""
        await self._learn_topic_ids(records)
        prepared = self.prepare(records)
        assert prepared is not None  # every topic id is known now
        await self.process_prepared(prepared)

    def prepare(self, records: Sequence[InRecord]) -> PreparedBatch | None:
        """Validate a batch ahead of processing it, without state: the worker does this for
        the next batch while the batch before waits for Redis and the broker. A batch over
        ``max_bytes`` of raw values is split into consecutive parts, done in order. None while
        a record's source topic id is not known yet (:meth:`process` asks the broker)."""
        if self._ask_topic_ids is not None:
            for record in records:
                if record.topic not in self.topic_ids:
                    return None
        blocked: Counter[str] = Counter()
        parts: list[tuple[list[_Accepted], list[_Rejected]]] = []
        start = size = 0
        for end, record in enumerate(records):
            size += len(record.value or b"")
            if size > self._max_bytes and end > start:
                parts.append(self._accept(records[start:end], blocked))
                start, size = end, len(record.value or b"")
        if start < len(records):
            parts.append(self._accept(records[start:], blocked))
        return PreparedBatch(parts, blocked)

    async def apply_ahead(self, prepared: PreparedBatch) -> AppliedAhead | None:
        """Load and apply ``prepared`` (its outputs built, nothing sent or saved) while the
        batch before it waits for the broker and Redis: called once that batch is sending its
        outputs, and every batch before that one is done. Its devices of the batch before are
        taken as that batch is saving them (with the version it writes), its other devices
        from Redis; R30 sees that batch's user profile updates. :meth:`process_prepared` then
        sends it after the batch before's outputs are acknowledged and saves it once that
        batch is done, applying again first its devices that batch did not save as handed off
        (a concurrent save, a fenced write, a suppression: R34, R39). None when the batch
        before has not handed off its last part yet, or this batch has several parts."""
        handoff = self._handoff
        if handoff is None or len(prepared.parts) != 1:
            return None
        if self.ready is not None and not self.ready.is_set():
            return None
        pending, rejected = prepared.parts[0]
        if not (pending or rejected):
            return None
        counters = Counters()
        staged = await self._stage(pending, rejected, False, counters, handoff)
        return AppliedAhead(prepared, staged, handoff, counters)

    async def process_prepared(
        self, prepared: PreparedBatch, ahead: AppliedAhead | None = None
    ) -> None:
        """Process a prepared batch completely; returns when its offsets may be committed.
        ``ahead``: the batch applied ahead (:meth:`apply_ahead`) while the batch before was
        saved: it sends its outputs once that batch's are acknowledged, and saves once that
        batch is done (its devices that batch did not save as handed off are applied again,
        their outputs sent again: R34)."""
        if self.ready is not None and not self.ready.is_set():
            await self.ready.wait()
        if ahead is not None and ahead.prepared is not prepared:
            ahead = None
        if ahead is not None:
            self.counters.add(ahead.counters)
            self.counters.applied_ahead += 1
        handoff = _Handoff()
        self._handoff = None
        try:
            if prepared.blocked:  # (Counter.update runs interpreted: not for nothing)
                self.counters.blocked_ids.update(prepared.blocked)
            last = len(prepared.parts) - 1
            for n, (pending, rejected) in enumerate(prepared.parts):
                await self._process_part(pending, rejected, handoff if n == last else None, ahead)
        except BaseException:
            handoff.finished(failed=True)
            raise
        handoff.finished(failed=False)
        self.counters.batches += 1

    async def _process_part(
        self,
        pending: Sequence[_Accepted],
        rejected: Sequence[_Rejected],
        handoff: _Handoff | None,
        ahead: AppliedAhead | None,
    ) -> None:
        """``handoff``: given for the batch's last part, whose states the next batch may be
        applied on before they are saved. ``ahead``: this part was applied ahead."""
        if ahead is not None:
            staged = ahead.staged
        elif pending or rejected:
            staged = await self._stage(pending, rejected, False, self.counters, None)
        else:
            if handoff is not None:
                self._handoff = handoff
            return
        conflicts = await self._finish(staged, handoff, ahead.handoff if ahead else None)
        while conflicts:
            # R34: another worker saved some devices since they were loaded (their records
            # came from two partitions), or a deletion removed them (R39), or the batch before
            # did not save them as it handed them off: their events of this batch are applied
            # again, on the state saved meanwhile (outputs repeat, with the same messageIds;
            # the suppression list is checked again)
            pending = [item for item in pending if item.device.key in conflicts]
            redone = await self._stage(pending, [], True, self.counters, None)
            conflicts = await self._finish(redone, None, None)

    async def _stage(
        self,
        pending: Sequence[_Accepted],
        rejected: Sequence[_Rejected],
        redo: bool,
        counters: Counters,
        handoff: _Handoff | None,
    ) -> _Staged:
        """Load and apply; counted in ``counters``. ``handoff``: the new states and user
        profile updates of the batch before, not saved yet (:meth:`apply_ahead`)."""
        keys = [item.device.key for item in pending]
        asked = [digest for item in pending for _, digest in item.ids]
        asked += [digest for reject in rejected for _, digest in reject.ids]
        loaded = await self._retrying(lambda: self._store.load_checked(keys, asked), "load")
        checked_at = time.monotonic()
        stored = loaded.devices
        if handoff is not None:
            _take_handoff(stored, keys, handoff)
        suppressed = loaded.suppressed
        if loaded.suppressing:  # R39: the userIds the devices have stored, when not asked yet
            extra = set(self._stored_user_ids(stored).values()) - set(asked)
            if extra:
                more = await self._retrying(lambda: self._store.suppressed(list(extra)), "load")
                suppressed |= more
        if suppressed:
            pending, rejected = self._drop_suppressed(
                pending, rejected, stored, suppressed, counters
            )
        out = [
            self._dead_letter(item.record, item.code, item.message, counters) for item in rejected
        ]
        user_traits = await self._known_traits(pending, stored, handoff)
        applied = self._apply(pending, stored, user_traits, out, redo, counters)
        return _Staged(pending, keys, stored, checked_at, out, applied)

    async def _finish(
        self, staged: _Staged, handoff: _Handoff | None, before: _Handoff | None
    ) -> frozenset[str]:
        """Produce and save once; returns the devices to apply again (saved meanwhile by
        another worker, or not saved by the batch before as it handed them off).
        ``handoff``: filled for the next batch, which may be applied on these states meanwhile
        (and told which were not saved so). ``before``: the batch before, whose unsaved states
        these were applied on (:meth:`apply_ahead`)."""
        applied, out = staged.applied, staged.out
        writes = [
            DeviceWrite(key, state, delete=key in applied.unrecorded)
            for key, state in applied.states.items()
        ]
        if handoff is not None:
            handoff.states = {w.key: None if w.delete else (w.state, w.version) for w in writes}
            handoff.users = applied.users
            self._handoff = handoff
        if before is not None:  # outputs in order: after those of the batch before
            await before.produced.wait()
        if self.writing is not None:
            self.writing.set()
        if out:
            await self._retrying(lambda: self._writer.write(out), "produce")
            self.counters.messages_out.update(record.topic for record in out)
        if handoff is not None:
            handoff.produced.set()
        redo: frozenset[str] = frozenset()
        if before is not None:  # saved after the batch before, on what it saved
            await before.done.wait()
            if before.failed:
                raise RuntimeError("the batch before failed: its states are not saved")
            troubled = before.troubled
            redo = frozenset(staged.keys) if troubled is None else troubled & set(staged.keys)
            if redo:
                self.counters.ahead_redone += 1
                if troubled is None:  # nothing is saved: the profile updates come again too
                    return _handed_off(handoff, None, redo)
                writes = [w for w in writes if w.key not in redo]
        users, groups = coalesce_profiles(applied.users, applied.groups)
        if not (writes or users or groups):
            return _handed_off(handoff, redo, redo)
        if time.monotonic() - staged.checked_at > self._check_valid_for and (
            await self._newly_suppressed(staged.pending, staged.stored)
        ):
            # R39: a suppression may have taken effect since the check, and its deletion
            # runs again only ENRICHER_REGULATION_SETTLE_SECONDS later: nothing is saved, the
            # events are applied again from a new load and check
            self.counters.concurrent_saves += len(staged.keys)
            return _handed_off(handoff, None, frozenset(staged.keys))
        saved = await self._retrying(
            lambda: self._store.save(writes, applied.advanced, users, groups), "save"
        )
        self.counters.fenced_writes += saved.refused
        self.counters.profile_ids_trimmed += saved.trimmed_ids
        self.counters.concurrent_saves += len(saved.conflicts)
        again = saved.conflicts | redo
        return _handed_off(handoff, None if saved.refused else again, again)

    def _stored_user_ids(self, stored: Mapping[str, DeviceState]) -> dict[str, bytes]:
        """The digest of the userId each loaded device has stored (R39)."""
        return {
            key: self._digests.of("userId", state.uid) for key, state in stored.items() if state.uid
        }

    def _drop_suppressed(
        self,
        pending: Sequence[_Accepted],
        rejected: Sequence[_Rejected],
        stored: Mapping[str, DeviceState],
        suppressed: frozenset[bytes],
        counters: Counters,
    ) -> tuple[list[_Accepted], list[_Rejected]]:
        """R39: events carrying a suppressed id leave no trace: no state change, no output, no
        dead letter, no log line; only a count by the kind of id."""
        stored_ids = self._stored_user_ids(stored)
        kept: list[_Accepted] = []
        for item in pending:
            kind = _suppressed_kind(item.ids, suppressed)
            if kind is None and stored_ids.get(item.device.key) in suppressed:
                kind = "userId"
            if kind is None:
                kept.append(item)
            else:
                counters.suppressed[kind] += 1
        kept_rejected: list[_Rejected] = []
        for reject in rejected:
            kind = _suppressed_kind(reject.ids, suppressed)
            if kind is None:
                kept_rejected.append(reject)
            else:
                counters.suppressed[kind] += 1
        return kept, kept_rejected

    async def _newly_suppressed(
        self, pending: Sequence[_Accepted], stored: Mapping[str, DeviceState]
    ) -> bool:
        asked = [digest for item in pending for _, digest in item.ids]
        asked += self._stored_user_ids(stored).values()
        return bool(await self._retrying(lambda: self._store.suppressed(asked), "load"))

    async def _known_traits(
        self,
        accepted: Sequence[_Accepted],
        stored: Mapping[str, DeviceState],
        handoff: _Handoff | None,
    ) -> dict[str, dict[str, Any]]:
        """R30 reads user profiles: those of every user the batch may name, one round trip;
        with the updates of the batch before (``handoff``) that may not be saved yet."""
        if not self._policy.context_traits:
            return {}
        candidates: list[str] = []
        for item in accepted:
            event = item.event(self._policy)
            add_user_ids_named(event, stored.get(item.device.key, EMPTY_DEVICE), candidates)
        traits = await self._retrying(
            lambda: self._store.load_user_traits(candidates), "load profiles"
        )
        if handoff is not None and handoff.users:
            named = set(candidates)
            for update in handoff.users:  # in event order: later values win, as when saved
                if update.user_id in named:
                    merge_traits(traits.setdefault(update.user_id, {}), update.traits)
        return traits

    def _apply(
        self,
        accepted: Sequence[_Accepted],
        stored: Mapping[str, DeviceState],
        user_traits: dict[str, dict[str, Any]],
        out: list[OutRecord],
        redo: bool,
        counters: Counters,
    ) -> _Applied:
        """Every event through the rules, per device in input order (R34); outputs and dead
        letters go to ``out``. ``redo``: the events were counted already."""
        applied = _Applied()
        types: dict[str, int] = {}  # events by type, added to the Counter once (issue 21)
        for item in accepted:
            key = item.device.key
            state = applied.states[key] if key in applied.states else stored.get(key, EMPTY_DEVICE)
            event = item.applying(self._policy)  # freed at the next event
            try:
                outcome = enrich_event(
                    state, event, item.device, item.source, self._policy, user_traits
                )
            except Exception as exc:  # a bug must not turn one event into a poison pill
                # the type and place only: the message may quote the event's personal data
                log.error("processing %s failed: %s; dead-lettered", item.source, failure_site(exc))
                out.append(self._dead_letter(item.record, "processing_error", repr(exc), counters))
                continue
            if not redo:
                _count(counters, types, event, outcome)
            if outcome.status is Status.ALREADY_APPLIED:
                continue
            applied.states[key] = outcome.state
            applied.advanced.setdefault(key, {})[item.source.stream] = item.source.offset
            if outcome.keeps_record:
                applied.unrecorded.discard(key)
            else:  # R37: a device without identity consent keeps no record
                applied.unrecorded.add(key)
            if outcome.status is not Status.MESSAGE:
                continue
            assert outcome.warehouse is not None
            record_key = key.encode("utf-8")
            topics = self._topics
            if outcome.one_body and outcome.destinations is not None:
                body = dumps(outcome.destinations)
                warehouse = with_enrichment(body, outcome.warehouse["_enrichment"])
                self._output(item.record, topics.warehouse, record_key, warehouse, out, counters)
                self._output(item.record, topics.destinations, record_key, body, out, counters)
            else:
                warehouse = dumps(outcome.warehouse)
                self._output(item.record, topics.warehouse, record_key, warehouse, out, counters)
                if outcome.destinations is not None:
                    body = dumps(outcome.destinations)
                    self._output(item.record, topics.destinations, record_key, body, out, counters)
            if outcome.user_update is not None:
                applied.users.append(outcome.user_update)
                if self._policy.context_traits:  # R30: later events of the batch see them
                    profile = user_traits.setdefault(outcome.user_update.user_id, {})
                    merge_traits(profile, outcome.user_update.traits)
            if outcome.group_update is not None:
                applied.groups.append(outcome.group_update)
        for kind, count in types.items():
            counters.events_in[kind] += count
        return applied

    def _digested(self, ids: list[tuple[IdKind, str]]) -> tuple[tuple[IdKind, bytes], ...]:
        digested: list[tuple[IdKind, bytes]] = []  # (a loop: a generator is slower compiled)
        for kind, value in ids:
            digested.append((kind, self._digests.of(kind, value)))
        return tuple(digested)

    def _rejected(self, record: InRecord, key: str | None, code: str, message: str) -> _Rejected:
        try:
            document = loads(record.value) if record.value else None
        except JSONDecodeError:
            document = None
        return _Rejected(record, code, message, self._digested(raw_ids(document, key)))

    def _accept(
        self, records: Sequence[InRecord], blocked: Counter[str]
    ) -> tuple[list[_Accepted], list[_Rejected]]:
        """Validate every record: the events, and the rejected (to be dead-lettered); the ids
        blocked (R36) are counted in ``blocked``."""
        accepted: list[_Accepted] = []
        rejected: list[_Rejected] = []
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
                rejected.append(self._rejected(record, key, result.code, result.message))
                continue
            source = Source(
                record.topic,
                record.partition,
                record.offset,
                key,
                record.timestamp_ms,
                self.topic_ids.get(record.topic, ""),
            )
            prepared = prepare_event(result, source, self._policy)  # R36, the device key
            if prepared.blocked:  # (Counter.update runs interpreted: not for nothing)
                blocked.update(prepared.blocked)
            ids = self._digested(event_ids(prepared.event.fields, prepared.device.key, None))
            accepted.append(
                _Accepted(record, prepared.event, prepared.source, prepared.device, ids)
            )
        return accepted, rejected

    async def _learn_topic_ids(self, records: Sequence[InRecord]) -> None:
        """R34: the fence is keyed by the source topic's id (asked once per topic)."""
        if self._ask_topic_ids is None:
            return
        unknown = sorted({r.topic for r in records if r.topic not in self.topic_ids})
        if unknown:
            ask = self._ask_topic_ids
            found = await self._retrying(lambda: ask(unknown), "topic ids")
            self.topic_ids.update({topic: found.get(topic, "") for topic in unknown})

    def _output(
        self,
        source: InRecord,
        topic: str,
        key: bytes,
        value: bytes,
        out: list[OutRecord],
        counters: Counters,
    ) -> None:
        """One output record, or a dead letter when the broker would refuse it (over the
        record limit: a rejected record would stop the batch, and every retry, for good)."""
        record = OutRecord(topic, key, value)
        if fits(record, self._max_record_bytes):
            out.append(record)
            return
        problem = (
            f"the {topic} message is {len(record.value)} bytes, over the "
            f"{self._max_record_bytes}-byte record limit (ENRICHER_MAX_RECORD_BYTES)"
        )
        out.append(self._dead_letter(source, "output_too_large", problem, counters))

    def _dead_letter(
        self, record: InRecord, code: str, message: str, counters: Counters
    ) -> OutRecord:
        counters.dead_letters[code] += 1
        value = dead_letter_value(record, code, message, self._clock_ms(), self._max_record_bytes)
        return OutRecord(self._topics.deadletter, record.key, value)

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


def with_enrichment(body: bytes, enrichment: dict[str, Any]) -> bytes:
    """The serialised warehouse message from its destinations message's serialisation
    (``EventOutcome.one_body``): the same bytes as serialising it whole, ``_enrichment`` last."""
    return b"".join((body[:-1], b',"_enrichment":', dumps(enrichment), b"}"))


def _suppressed_kind(
    ids: Sequence[tuple[IdKind, bytes]], suppressed: frozenset[bytes]
) -> IdKind | None:
    for kind, digest in ids:
        if digest in suppressed:
            return kind
    return None


def _count(
    counters: Counters, types: dict[str, int], event: RawEvent, outcome: EventOutcome
) -> None:
    """An event's counts; its type in ``types`` (compiled, a plain dict is quicker to count in
    than a ``Counter``, whose every item is a generic call)."""
    types[event.type] = types.get(event.type, 0) + 1
    if outcome.status is Status.DUPLICATE:
        counters.duplicates += 1
    elif outcome.status is Status.ALREADY_APPLIED:
        counters.already_applied += 1
    if outcome.not_cached is not None:  # R35: counted
        counters.traits_not_cached[outcome.not_cached] += 1
    if outcome.identity is not None:
        counters.rotations += outcome.identity.rotated
        counters.generated_anonymous_ids += outcome.identity.anonymous_id_source == "generated"


def _take_handoff(stored: dict[str, DeviceState], keys: Sequence[str], handoff: _Handoff) -> None:
    """The devices of the batch before as it is saving them, with the version it writes (a
    deleted one is absent), in place of what Redis held when they were loaded."""
    states = handoff.states
    for key in dict.fromkeys(keys):
        if key in states:
            entry = states[key]
            if entry is None:
                stored.pop(key, None)
            else:
                state, version = entry
                stored[key] = state.changed(version=version)


def _handed_off(
    handoff: _Handoff | None, troubled: frozenset[str] | None, again: frozenset[str]
) -> frozenset[str]:
    """Tell the next batch which handed-off states were not saved so (None: any); return
    ``again``, the devices to apply again."""
    if handoff is not None:
        handoff.troubled = troubled
    return again
