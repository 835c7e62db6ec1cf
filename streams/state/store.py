"""Device state and profiles in Redis or Redis Cluster: one round trip per Redis server to
load a batch's devices, one to save them and merge the batch's profile updates, whatever the
batch size.

A device record is one string: ``~=<version>;#=2;<stream>=<offset>;...`` (its version, its
format, and the last offset applied from each source partition: the fence of SPEC R34), a
newline, the state JSON, a newline and the packed fields (:func:`encode_device`). It is the
field named by its device key in one of the app's bucket hashes (layout 2, :class:`KeySpace`;
before issue 21 each record was a key of its own: :meth:`StateStore.prepare_layout` moves
those). Loading is ``load_devices.lua``; saving is ``save_devices.lua``, which refuses a record
whose stored fence is at or beyond the batch's offsets; ``sweep_devices.lua`` reclaims records
idle past the expiry; profiles are merged and read by ``profiles.lua``.

Every script call touches keys of one hash slot only (a bucket, or one profile's keys, are
under one hash tag). On a single Redis the whole batch is one call of each script; on Redis
Cluster the batch is split into one call per slot, and redis-py's cluster pipeline sends each
node its share in one write (round trips per node, not per key)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from typing import Any, Final, TypeVar, cast

# (imported by name: compiled, ``orjson.dumps`` is a module attribute lookup on every call)
from orjson import dumps, loads
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError

from enrichers import DeviceState
from enrichers.caches import remembered
from enrichers.ids import INT_FROM_BYTES, uuid_text
from enrichers.policy import DAY_MS
from enrichers.profiles import ProfileMerge
from enrichers.state import DIGEST_BYTES
from streams.state.keys import KeySpace
from streams.state.redis_client import RedisClient, is_cluster

ANONYMOUS_IDS_PER_USER: Final = 1000
"""R35: most anonymousIds a user profile keeps by default (ENRICHER_PROFILE_MAX_IDS)."""
EXPIRY_MARGIN_MS: Final = 30 * DAY_MS
"""A record is reclaimed (:meth:`StateStore.sweep`) when its last seen is older than the
device TTL and this margin, on the wall clock: the margin keeps a replay of recent history from
finding records already reclaimed."""

T = TypeVar("T")

_SCRIPTS: Final = (
    "load_devices.lua",
    "save_devices.lua",
    "sweep_devices.lua",
    "profiles.lua",
    "check_suppressed.lua",
)
LISTPACK_VALUE: Final = 1024
"""The ``hash-max-listpack-value`` Redis needs for buckets to stay compact (a record is about
100 to 600 bytes; over Redis's default of 64 a bucket is a hash table: 191 bytes a device
against 154 in `bench.batch_path`)."""
LISTPACK_ENTRIES: Final = 128
"""Redis's default ``hash-max-listpack-entries``: a bucket holding more is a hash table."""
SWEEP_SCAN: Final = 500
"""Fields a sweep step looks at (HSCAN's COUNT)."""
MOVE_CHUNK: Final = 1000
"""Layout-1 records moved per round trip."""
MOVING: Final = "moving"
"""The layout while one worker moves layout-1 records (:meth:`StateStore.prepare_layout`)."""
MOVING_LEASE_MS: Final = 60_000

log = logging.getLogger(__name__)


def _script(name: str) -> str:
    return resources.files("streams.state").joinpath("lua", name).read_text()


VERSION: Final = "~"
"""The name of the record's version in its head (no topic is named ``~``)."""


@dataclass(frozen=True, slots=True)
class SaveResult:
    refused: int = 0
    """Device writes refused by the fence: a newer owner of the partition wrote them (R34)."""
    conflicts: frozenset[str] = frozenset()
    """Devices another worker saved since they were loaded (records of one device on two
    partitions): to be applied again on what was saved (R34)."""
    trimmed_ids: int = 0
    """AnonymousIds user profiles dropped, over ``profile_max_ids`` (R35)."""


@dataclass(frozen=True, slots=True)
class CheckedLoad:
    devices: dict[str, DeviceState]
    """The stored state of each device (absent devices left out)."""
    suppressed: frozenset[bytes]
    """The digests asked about that the suppression list holds (R39)."""
    suppressing: bool
    """Whether the suppression list holds anything at all."""


@dataclass(frozen=True, slots=True, init=False)
class DeviceWrite:
    """A device's new state; ``state.applied`` holds its fence."""

    key: str
    state: DeviceState
    delete: bool = False
    """R37: remove the record (fenced and versioned as a write)."""
    version: int = 0
    """The version the record is written at (0 given: the next after ``state.version``). The
    next batch may build on the record before it is saved: it then saves over this version."""

    def __init__(
        self, key: str, state: DeviceState, delete: bool = False, version: int = 0
    ) -> None:
        # written out, not generated by dataclass, so that mypyc compiles it (issue 21)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "delete", delete)
        object.__setattr__(self, "version", version or next_version(state.version))


@dataclass
class Swept:
    """What a sweep did."""

    removed: int = 0
    seen: int = 0
    """Records looked at (about: HSCAN may return one twice)."""


class LayoutMismatch(Exception):
    """The app's devices are in buckets of another count than ENRICHER_DEVICE_BUCKETS."""


_DEVICE_BUCKETS_KEPT: Final = 16_384
"""Devices whose bucket :meth:`StateStore._bucket` remembers (started over when full): more
than a batch holds."""


class StateStore:
    """The Redis side of the worker. Methods raise redis errors; the caller retries."""

    def __init__(
        self,
        client: RedisClient,
        keys: KeySpace,
        device_ttl_ms: int,
        profile_max_ids: int = ANONYMOUS_IDS_PER_USER,
    ) -> None:
        self._profile_max_ids = profile_max_ids
        self._client = client
        self._keys = keys
        self._expiry_ms = device_ttl_ms + EXPIRY_MARGIN_MS
        self._shas: dict[str, str] = {}
        self._cluster = is_cluster(client)
        self._buckets: dict[int, tuple[str, int]] = {}
        """The name and slot of each bucket used so far, by number: every device of a batch
        looks its bucket up twice (load, save), without naming or hashing it again."""
        self._device_buckets: dict[str, tuple[str, int]] = {}
        """The bucket of each recent device, by its key: a batch's save finds what its load
        worked out, without encoding and checksumming the key again (issue 21)."""

    def _slot(self, key: str) -> int:
        """The hash slot of ``key`` on a cluster; 0 for every key on a single Redis (where
        the whole batch is one command)."""
        return key_slot(key.encode()) if self._cluster else 0

    def _bucket(self, device_key: str) -> tuple[str, int]:
        """The bucket holding a device's record and its slot (:meth:`_slot`)."""
        found = self._device_buckets.get(device_key)
        if found is None:
            number = self._keys.bucket_number(device_key)
            found = self._buckets.get(number)
            if found is None:
                bucket = self._keys.bucket(number)
                found = self._buckets[number] = (bucket, self._slot(bucket))
            remembered(self._device_buckets, device_key, found, _DEVICE_BUCKETS_KEPT)
        return found

    @property
    def keys(self) -> KeySpace:
        return self._keys

    async def _scripted(self, run: Callable[[], Awaitable[T]]) -> T:
        """``run`` with the Lua scripts loaded. A Redis that restarted (or a replica that took
        over a slot) lacks them: NOSCRIPT, so they are loaded again on every primary and
        ``run`` runs once more (every script call is idempotent)."""
        if not self._shas:
            await self.load_scripts()
        try:
            return await run()
        except NoScriptError:
            await self.load_scripts()
            return await run()

    async def load_scripts(self) -> None:
        """Load the Lua scripts (again after a Redis restart, on NOSCRIPT)."""
        for name in _SCRIPTS:
            self._shas[name] = await self._client.script_load(_script(name))

    async def load_devices(self, device_keys: Sequence[str]) -> dict[str, DeviceState]:
        """The stored state of each device (absent devices are left out): one script call on
        a single Redis; on a cluster one per slot, sent as one pipeline per node."""
        if not device_keys:
            return {}
        by_slot = self._by_slot(device_keys)
        replies = await self._scripted(lambda: self._load(by_slot, []))
        return _found(by_slot, replies)

    def _by_slot(self, device_keys: Iterable[str]) -> dict[int, dict[str, str]]:
        """The distinct device keys by the slot of their bucket: device key -> bucket."""
        by_slot: dict[int, dict[str, str]] = defaultdict(dict)
        for key in device_keys:
            bucket, slot = self._bucket(key)
            by_slot[slot][key] = bucket
        return by_slot

    async def _load(
        self, by_slot: Mapping[int, Mapping[str, str]], more: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        """``load_devices.lua`` once per slot, then the commands ``more``, in one pipeline."""
        sha = self._shas["load_devices.lua"]
        async with self._client.pipeline(transaction=False) as pipe:
            for devices in by_slot.values():
                pipe.execute_command("EVALSHA", sha, len(devices), *devices.values(), *devices)
            for command in more:
                pipe.execute_command(*command)
            return await pipe.execute()

    async def load_checked(
        self, device_keys: Sequence[str], digests: Sequence[bytes]
    ) -> CheckedLoad:
        """:meth:`load_devices` and, in the same round trip, which of ``digests`` the
        suppression list holds (R39)."""
        by_slot = self._by_slot(device_keys)
        digests = list(dict.fromkeys(digests))
        replies = await self._scripted(
            lambda: self._load(by_slot, [self._check_suppressed(digests)])
        )
        size, held = _suppressed_reply(digests, replies[-1])
        return CheckedLoad(_found(by_slot, replies), held, size > 0)

    def _check_suppressed(self, digests: list[bytes]) -> tuple[Any, ...]:
        """``check_suppressed.lua`` over ``digests`` (all of one width): one argument for them
        all, not one each."""
        width = len(digests[0]) if digests else 1
        if any(len(d) != width for d in digests):
            raise ValueError("digests of different widths")
        sha = self._shas["check_suppressed.lua"]
        return ("EVALSHA", sha, 1, self._keys.suppressed(), b"".join(digests), width)

    async def suppressed(self, digests: Sequence[bytes]) -> frozenset[bytes]:
        """Which of ``digests`` the suppression list holds (R39), one round trip."""
        digests = list(dict.fromkeys(digests))
        if not digests:
            return frozenset()
        reply = await self._scripted(
            lambda: self._client.execute_command(*self._check_suppressed(digests))
        )
        return _suppressed_reply(digests, reply)[1]

    async def load_user_traits(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The merged traits of each user profile (users without any are left out): the
        profiles' trait fields only (R30 reads them for every user a batch names)."""
        return {
            user_id: {name[2:].decode(): loads(value) for name, value in fields.items()}
            for user_id, fields in (await self._profile_fields("user", user_ids, "traits")).items()
        }

    async def load_profiles(
        self, kind: str, identifiers: Sequence[str]
    ) -> dict[str, StoredProfile]:
        """User (``kind`` "user") or group profiles, absent ones left out: one round trip
        (``profiles.lua`` reads a profile still in format 1 from its four keys)."""
        return {
            identifier: decode_profile(fields)
            for identifier, fields in (
                await self._profile_fields(kind, identifiers, "read")
            ).items()
        }

    async def _profile_fields(
        self, kind: str, identifiers: Sequence[str], mode: str
    ) -> dict[str, dict[bytes, bytes]]:
        """``profiles.lua`` ``mode`` ("read" or "traits"): each profile's fields that the mode
        returns, profiles without any left out."""
        calls: dict[int, _ScriptCall] = {}
        for identifier in dict.fromkeys(identifiers):
            keys = self._keys.profile(kind, identifier)
            call = calls.get(slot := self._slot(keys[0]))
            if call is None:
                call = calls[slot] = _ScriptCall("profiles.lua", [mode])
            call.keys += keys
            call.ids.append(identifier)
        if not calls:
            return {}
        replies = await self._scripted(lambda: self._run_calls(calls.values()))
        return {
            identifier: dict(zip(fields[::2], fields[1::2], strict=True))
            for call, profiles in zip(calls.values(), replies, strict=True)
            for identifier, fields in zip(call.ids, profiles, strict=True)
            if fields
        }

    async def save(
        self,
        devices: Sequence[DeviceWrite],
        advanced: dict[str, dict[str, int]],
        users: Mapping[str, ProfileMerge],
        groups: Mapping[str, ProfileMerge],
    ) -> SaveResult:
        """Merge profiles, then write devices (one script call per hash slot: a single call
        of each script on a single Redis; one round trip per Redis server).
        ``advanced`` names, per device, the source offsets this batch applied (the fence); each
        device is written only over the version it was loaded at (``state.version``)."""
        calls: list[_ScriptCall] = []
        profiles: dict[int, _ScriptCall] = {}
        for kind, merges in (("user", users), ("group", groups)):
            for identifier, merge in merges.items():
                profile_keys = self._keys.profile(kind, identifier)
                call = profiles.get(slot := self._slot(profile_keys[0]))
                if call is None:
                    call = profiles[slot] = _ScriptCall(
                        "profiles.lua", ["merge", self._profile_max_ids]
                    )
                call.keys += profile_keys
                call.args += _merge_args(merge)
        calls += profiles.values()
        saves: dict[int, _ScriptCall] = {}
        for write in devices:
            bucket, slot = self._bucket(write.key)
            call = saves.get(slot)
            if call is None:
                call = saves[slot] = _ScriptCall("save_devices.lua", [])
            call.keys.append(bucket)
            call.ids.append(write.key)
            streams = advanced.get(write.key, {})
            record = b"" if write.delete else encode_device(write.state, write.version)
            batch = str(write.state.version)
            for stream, offset in streams.items():
                batch += f";{stream}={offset}"
            call.args.append(write.key)
            call.args.append(b"".join((batch.encode(), b"\n", record)))
        calls += saves.values()
        if not calls:
            return SaveResult()
        return await self._scripted(lambda: self._run_scripts(calls))

    async def _run_calls(self, calls: Iterable[_ScriptCall]) -> list[Any]:
        """The script calls in one pipeline: their replies, in order."""
        async with self._client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command(
                    "EVALSHA", self._shas[call.script], len(call.keys), *call.keys, *call.args
                )
            replies: list[Any] = await pipe.execute()
            return replies

    async def _run_scripts(self, calls: Sequence[_ScriptCall]) -> SaveResult:
        replies = await self._run_calls(calls)
        refused = trimmed = 0
        conflicts: set[str] = set()
        for call, reply in zip(calls, replies, strict=True):
            if call.script == "save_devices.lua":  # {refused, conflicting indexes (1-based)}
                refused += int(reply[0])
                conflicts.update(call.ids[int(index) - 1] for index in reply[1:])
            else:  # profiles.lua's merge: anonymousIds dropped by the bound
                trimmed += int(reply)
        return SaveResult(refused, frozenset(conflicts), trimmed)

    async def prepare_layout(self) -> int:
        """Check that the app's devices are in this store's buckets; the first time (no layout
        recorded: a new app, or one from before issue 21), move every layout-1 record (a key of
        its own) into its bucket, as format 2, keeping its version and fence. Returns the
        records moved. Run by each worker before its first batch: with the layout recorded it
        is one GET. One worker moves (the layout reads ``moving`` meanwhile, expiring if that
        worker dies), the others wait: no batch runs beside a move, which could otherwise put
        back a record a batch had deleted. Raises :class:`LayoutMismatch` for another bucket
        count (the records would not be found)."""
        wanted = f"buckets={self._keys.device_buckets}"
        layout = self._keys.layout()
        while True:
            recorded = await self._client.get(layout)
            if recorded is None:
                if await self._client.set(layout, MOVING, nx=True, px=MOVING_LEASE_MS):
                    break
                continue
            found = recorded.decode() if isinstance(recorded, bytes) else str(recorded)
            if found == wanted:
                return 0
            if found != MOVING:
                raise LayoutMismatch(
                    f"the device records of app {self._keys.app_id!r} are in {found}, not "
                    f"{wanted}: set ENRICHER_DEVICE_BUCKETS to match"
                )
            await asyncio.sleep(0.5)  # another worker is moving them
        moved = 0
        chunk: list[str] = []
        renewed = time.monotonic()
        async for redis_key in self._client.scan_iter(
            match=self._keys.legacy_device_pattern(), count=MOVE_CHUNK
        ):
            chunk.append(redis_key.decode() if isinstance(redis_key, bytes) else redis_key)
            if len(chunk) >= MOVE_CHUNK:
                moved += await self._move(chunk)
                chunk = []
            if time.monotonic() - renewed > MOVING_LEASE_MS / 6000:  # a sixth of the lease
                await self._client.pexpire(layout, MOVING_LEASE_MS)
                renewed = time.monotonic()
        if chunk:
            moved += await self._move(chunk)
        await self._client.set(layout, wanted)
        if moved:
            log.info("device layout: %d records moved into %s", moved, wanted)
        return moved

    async def _move(self, redis_keys: Sequence[str]) -> int:
        """Layout-1 records into their buckets (a record already in its bucket is newer: it
        stays), then their keys removed."""
        devices = {k: key for k in redis_keys if (key := self._keys.device_key_of(k)) is not None}
        async with self._client.pipeline(transaction=False) as pipe:
            for redis_key in devices:
                pipe.get(redis_key)
            records = cast(list[bytes | None], await pipe.execute())
        async with self._client.pipeline(transaction=False) as pipe:
            for (redis_key, key), record in zip(devices.items(), records, strict=True):
                if record is not None:
                    state = decode_device(record)
                    record = encode_device(state, state.version)  # format 2
                    pipe.hsetnx(self._keys.device_bucket(key), key, record)
                pipe.delete(redis_key)
            await pipe.execute()
        return sum(record is not None for record in records)

    async def sweep(self, now_ms: int | None = None, pause: float = 0.0) -> Swept:
        """Remove the records idle past the expiry (last seen before ``now_ms`` minus the
        device TTL and its margin) from every bucket; ``pause`` seconds between buckets, to
        spread the work."""
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        cutoff = now_ms - self._expiry_ms
        swept = Swept()
        for number in range(self._keys.device_buckets):
            bucket = self._keys.bucket(number)
            cursor: bytes | int = 0
            while True:
                cursor, removed, seen = await self._scripted(
                    partial(self._sweep_step, bucket, cutoff, cursor)
                )
                swept.removed += int(removed)
                swept.seen += int(seen)
                if int(cursor) == 0:
                    break
            if pause:
                await asyncio.sleep(pause)
        return swept

    async def _sweep_step(self, bucket: str, cutoff: int, cursor: bytes | int) -> list[Any]:
        reply: list[Any] = await self._client.execute_command(
            "EVALSHA", self._shas["sweep_devices.lua"], 1, bucket, cutoff, cursor, SWEEP_SCAN
        )
        return reply

    async def sweep_lease(self, holder: str, seconds: float) -> bool:
        """Whether ``holder`` sweeps now: one worker a period (the lease is not released: the
        next sweep is due a period later, whoever holds it then)."""
        return bool(
            await self._client.set(self._keys.sweeping(), holder, nx=True, px=int(seconds * 1000))
        )

    async def compact_buckets(self) -> bool | None:
        """Whether Redis keeps buckets compact (``hash-max-listpack-value`` at least
        :data:`LISTPACK_VALUE`); None where CONFIG is not allowed (managed Redis)."""
        try:
            config = await self._client.config_get("hash-max-listpack-value")
        except RedisError:
            return None
        values = [int(v or 0) for k, v in config.items() if "listpack-value" in str(k)]
        return bool(values) and min(values) >= LISTPACK_VALUE


def _found(
    by_slot: Mapping[int, Mapping[str, str]], replies: Sequence[Any]
) -> dict[str, DeviceState]:
    """The devices ``load_devices.lua`` found (its replies first in ``replies``)."""
    return {
        key: decode_device(record)
        for devices, records in zip(by_slot.values(), replies, strict=False)
        for key, record in zip(devices, records, strict=True)
        if record is not None
    }


@dataclass
class _ScriptCall:
    """One script call: keys of one hash slot and their arguments."""

    script: str
    args: list[Any]
    keys: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    """The device keys of a save_devices.lua call, or the profile ids of a profiles.lua read,
    in order."""


def _suppressed_reply(
    digests: Sequence[bytes], reply: Sequence[Any]
) -> tuple[int, frozenset[bytes]]:
    """``check_suppressed.lua``'s answer: the size of the list and the digests it holds."""
    return int(reply[0]), frozenset(digests[int(index) - 1] for index in reply[1:])


FORMAT: Final = 2
"""The device record format :func:`encode_device` writes. 1 (before 2026-12): the head, a
newline and every field in the JSON; still read."""
_FORMAT: Final = "#"
"""The name of the format in the record's head (1 when absent)."""
_LAST_SEEN: Final = 1
_UUID_AID: Final = 2


def encode_device(state: DeviceState, version: int | None = None) -> bytes:
    """``~=<version>;#=2;<stream>=<offset>;...`` newline state JSON newline packed fields:
    the record's next version, its format and the fence; then the JSON of the fields that
    vary in shape; then, in binary, a flags byte, last seen (8 bytes, signed), the
    anonymousId when it is a lowercase UUID (16 bytes: every generated one, and Analytics.js's)
    and the recent messageId digests (R33, 8 bytes each). Against format 1: 96 bytes instead
    of 161 for an anonymous device seen three times, 585 instead of 1,198 with a full window
    of 64 messageIds; and quicker to read. ``version``: the record's version (by default the
    next after ``state.version``, :func:`next_version`)."""
    document = state.identity_json()
    flags = 0
    packed: list[bytes] = []
    if state.last_seen_ms is not None:
        flags |= _LAST_SEEN
        packed.append(state.last_seen_ms.to_bytes(8, "big", signed=True))
    aid = state.aid
    uuid = _packed_uuid(aid) if aid is not None else None
    if uuid is not None:
        flags |= _UUID_AID
        packed.append(uuid)
        del document["a"]
    recent = state.recent
    if version is None:
        version = next_version(state.version)
    head = f"{VERSION}={version};{_FORMAT}={FORMAT}"
    for stream, offset in state.applied.items():  # (a loop: a generator is slower compiled)
        head += f";{stream}={offset}"
    return b"".join(
        (
            head.encode(),
            b"\n",
            dumps(document),
            b"\n",
            bytes((flags,)),
            *packed,
            recent,
        )
    )


_PACKED_AIDS: Final[dict[str, bytes]] = {}
"""The packed form of the UUID anonymousIds decoded lately, by their text: a device's record is
loaded and saved again in one batch, and packing the text again cost a third of the encoding
(issue 21). Started over past :data:`_PACKED_AIDS_KEPT` (a batch or two of devices)."""
_PACKED_AIDS_KEPT: Final = 8192


def _packed_uuid(text: str) -> bytes | None:
    """The 16 bytes of a lowercase UUID (``8-4-4-4-12`` hex digits), None for any other text:
    unpacked, the bytes give ``text`` back. Checked by its shape instead of a pattern match,
    which cost a fifth of the encoding (issue 21)."""
    packed = _PACKED_AIDS.get(text)
    if packed is not None:
        return packed
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        return None
    digits = text.replace("-", "")
    # 32 digits left: no other dash; no uppercase (islower() needs a letter, so an id of
    # digits only is left in the JSON); fromhex skips whitespace, so 16 bytes means none
    if len(digits) != 32 or not digits.islower():
        return None
    try:
        packed = bytes.fromhex(digits)
    except ValueError:
        return None
    return packed if len(packed) == 16 else None


def next_version(version: int) -> int:
    """The version a record loaded at ``version`` (0: none) is written at."""
    return version + 1 if version else first_version()


def first_version() -> int:
    """A new record's version: random, so a device deleted (R37, R39) and made again never
    returns to a version a batch in flight loaded before the deletion (that batch's save must
    fail its version check, not write the deleted state back). Below 2**52: exact in Lua.
    Unique, not secret: the process's Mersenne Twister (seeded from the system, again in a
    forked child), a C call where ``secrets`` was 2 % of the batch path (issue 21)."""
    return 1 + random.getrandbits(48)


def decode_device(record: bytes) -> DeviceState:
    """A record of format 2 or 1."""
    head, _, rest = record.partition(b"\n")
    applied: dict[str, int] = {}
    version = 0
    format_ = 1
    for part in head.decode().split(";"):
        if part:
            stream, _, offset = part.rpartition("=")
            if stream == VERSION:
                version = int(offset)
            elif stream == _FORMAT:
                format_ = int(offset)
            else:
                applied[stream] = int(offset)
    if format_ == 1:
        document: dict[str, Any] = loads(rest)
        document["o"] = applied
        return DeviceState.from_json(document).changed(version=version)
    body, _, packed = rest.partition(b"\n")
    document = loads(body)
    flags = packed[0]
    at = 1
    last_seen: int | None = None
    aid: str | None = document.get("a")
    if flags & _LAST_SEEN:
        last_seen = INT_FROM_BYTES(packed[1:9], "big", signed=True)
        at = 9
    if flags & _UUID_AID:
        uuid = packed[at : at + 16]
        aid = uuid_text(uuid)
        remembered(_PACKED_AIDS, aid, uuid, _PACKED_AIDS_KEPT)
        at += 16
    return DeviceState(
        aid=aid,
        uid=document.get("u"),
        utraits=document.get("ut") or {},
        gid=document.get("g"),
        gtraits=document.get("gt") or {},
        last_seen_ms=last_seen,
        recent=packed[at : len(packed) - (len(packed) - at) % DIGEST_BYTES],
        generated=document.get("n", 0),
        applied=applied,
        consent=document.get("c"),
        version=version,
    )


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A user or group profile as stored (SPEC "State")."""

    traits: Mapping[str, Any]
    first_seen_ms: int | None
    last_seen_ms: int | None
    anonymous_ids: Mapping[str, int]
    """AnonymousIds by last seen (ms); none for a group."""
    devices: Mapping[str, int]
    """Device keys by last seen (ms); none for a group."""
    lists_every_device: bool
    """Created with its device list, never trimmed: a deletion (R39) needs no scan."""

    def anonymous_ids_recent_first(self) -> list[str]:
        """Most recent first; ties in reverse order of the id (a sorted set's reverse rank)."""
        return [aid for aid, _ in sorted(self.anonymous_ids.items(), key=_by_seen, reverse=True)]


def _by_seen(item: tuple[str, int]) -> tuple[int, str]:
    return item[1], item[0]


def decode_profile(fields: Mapping[bytes, bytes]) -> StoredProfile:
    """A profile hash of format 2 (``profiles.lua``)."""
    traits: dict[str, Any] = {}
    anonymous_ids: dict[str, int] = {}
    devices: dict[str, int] = {}
    for name, value in fields.items():
        kind = name[:2]
        if kind == b"t:":
            traits[name[2:].decode()] = loads(value)
        elif kind == b"a:":
            anonymous_ids[name[2:].decode()] = int(value)
        elif kind == b"d:":
            devices[name[2:].decode()] = int(value)
    first, last = fields.get(b"f"), fields.get(b"l")
    return StoredProfile(
        traits,
        int(first) if first is not None else None,
        int(last) if last is not None else None,
        anonymous_ids,
        devices,
        lists_every_device=b"x" in fields,
    )


def _merge_args(merge: ProfileMerge) -> list[Any]:
    """A profile merge as ``profiles.lua`` reads it: one JSON argument."""
    anonymous_ids: list[str] = []
    for anonymous_id, seen in merge.anonymous_ids.items():
        anonymous_ids += [str(seen), anonymous_id]
    devices: list[str] = []
    for device, seen in merge.devices.items():
        devices += [str(seen), device]
    traits: list[str] = []
    for name, value in merge.traits.items():
        traits += [name, dumps(value).decode()]
    first, last = str(merge.first_seen_ms), str(merge.last_seen_ms)
    return [dumps([first, last, anonymous_ids, devices, traits])]
