"""Device state and profiles in Redis or Redis Cluster: one round trip per Redis server to
load a batch's devices, one to save them and merge the batch's profile updates, whatever the
batch size.

A device record is one string: ``~=<version>;#=2;<stream>=<offset>;...`` (its version, its
format, and the last offset applied from each source partition: the fence of SPEC R34), a
newline, the state JSON, a newline and the packed fields (:func:`encode_device`). Loading is MGET;
saving is ``save_devices.lua``, which refuses a record whose stored fence is at or beyond the
batch's offsets; profiles are merged by ``merge_profiles.lua``.

Every script call and every MGET touches keys of one hash slot only (keys.py puts a device's
record, and each profile's keys, under one hash tag). On a single Redis the whole batch is one
call of each script; on Redis Cluster the batch is split into one call per slot, and redis-py's
cluster pipeline sends each node its share in one write (round trips per node, not per key)."""

from __future__ import annotations

import re
import secrets
import struct
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Final, cast

import orjson
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from enrichers import DeviceState
from enrichers.policy import DAY_MS
from enrichers.profiles import ProfileMerge
from streams.state.keys import KeySpace
from streams.state.redis_client import RedisClient, is_cluster

ANONYMOUS_IDS_PER_USER: Final = 1000
"""R35: most anonymousIds a user profile keeps by default (ENRICHER_PROFILE_MAX_IDS)."""
EXPIRY_MARGIN_MS: Final = 30 * DAY_MS
"""Redis expiry runs on the wall clock, R1 on event time: the margin keeps a replay of
recent history from finding records already reclaimed."""

_SCRIPTS: Final = ("save_devices.lua", "merge_profiles.lua")


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


@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """A device's new state; ``state.applied`` holds its fence."""

    key: str
    state: DeviceState
    delete: bool = False
    """R37: remove the record (fenced and versioned as a write)."""


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

    def _slot(self, key: str) -> int:
        """The hash slot of ``key`` on a cluster; 0 for every key on a single Redis (where
        the whole batch is one command)."""
        return key_slot(key.encode()) if self._cluster else 0

    @property
    def keys(self) -> KeySpace:
        return self._keys

    async def load_scripts(self) -> None:
        """Load the Lua scripts (again after a Redis restart, on NOSCRIPT)."""
        for name in _SCRIPTS:
            self._shas[name] = await self._client.script_load(_script(name))

    async def load_devices(self, device_keys: Sequence[str]) -> dict[str, DeviceState]:
        """The stored state of each device (absent devices are left out): one MGET on a
        single Redis; on a cluster one MGET per slot, sent as one pipeline per node."""
        if not device_keys:
            return {}
        by_slot: dict[int, dict[str, str]] = defaultdict(dict)  # device key -> Redis key
        for key in device_keys:
            redis_key = self._keys.device(key)
            by_slot[self._slot(redis_key)][key] = redis_key
        async with self._client.pipeline(transaction=False) as pipe:
            for keys in by_slot.values():
                pipe.execute_command("MGET", *keys.values())
            replies = cast(list[list[bytes | None]], await pipe.execute())
        return {
            key: decode_device(record)
            for keys, records in zip(by_slot.values(), replies, strict=True)
            for key, record in zip(keys, records, strict=True)
            if record is not None
        }

    async def load_checked(
        self, device_keys: Sequence[str], digests: Sequence[bytes]
    ) -> CheckedLoad:
        """:meth:`load_devices` and, in the same round trip, which of ``digests`` the
        suppression list holds (R39)."""
        by_slot: dict[int, dict[str, str]] = defaultdict(dict)
        for key in dict.fromkeys(device_keys):
            redis_key = self._keys.device(key)
            by_slot[self._slot(redis_key)][key] = redis_key
        digests = list(dict.fromkeys(digests))
        async with self._client.pipeline(transaction=False) as pipe:
            for keys in by_slot.values():
                pipe.execute_command("MGET", *keys.values())
            if digests:
                pipe.execute_command("SMISMEMBER", self._keys.suppressed(), *digests)
            pipe.scard(self._keys.suppressed())
            replies = await pipe.execute()
        records = cast(list[list[bytes | None]], replies[: len(by_slot)])
        devices = {
            key: decode_device(record)
            for keys, found in zip(by_slot.values(), records, strict=True)
            for key, record in zip(keys, found, strict=True)
            if record is not None
        }
        members = replies[len(by_slot)] if digests else []
        suppressed = frozenset(d for d, member in zip(digests, members, strict=True) if member)
        return CheckedLoad(devices, suppressed, int(replies[-1]) > 0)

    async def suppressed(self, digests: Sequence[bytes]) -> frozenset[bytes]:
        """Which of ``digests`` the suppression list holds (R39), one round trip."""
        digests = list(dict.fromkeys(digests))
        if not digests:
            return frozenset()
        members = await self._client.execute_command(
            "SMISMEMBER", self._keys.suppressed(), *digests
        )
        return frozenset(d for d, member in zip(digests, members, strict=True) if member)

    async def load_user_traits(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The merged traits of each user profile (absent users are left out), one round trip."""
        user_ids = list(dict.fromkeys(user_ids))
        if not user_ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.hgetall(self._keys.user(user_id)[0])
            replies = await pipe.execute()
        return {
            user_id: decode_traits(reply)
            for user_id, reply in zip(user_ids, replies, strict=True)
            if reply
        }

    async def save(
        self,
        devices: Sequence[DeviceWrite],
        advanced: Mapping[str, Mapping[str, int]],
        users: Mapping[str, ProfileMerge],
        groups: Mapping[str, ProfileMerge],
    ) -> SaveResult:
        """Merge profiles, then write devices (one script call per hash slot: a single call
        of each script on a single Redis; one round trip per Redis server).
        ``advanced`` names, per device, the source offsets this batch applied (the fence); each
        device is written only over the version it was loaded at (``state.version``)."""
        calls: list[_ScriptCall] = []
        profiles: dict[int, _ScriptCall] = {}
        profile_kinds = (
            (self._keys.user, self._keys.user_devices, users),
            (self._keys.group, self._keys.group_devices, groups),
        )
        for keys, devices_key, merges in profile_kinds:
            for identifier, merge in merges.items():
                profile_keys = (*keys(identifier), devices_key(identifier))
                call = profiles.get(slot := self._slot(profile_keys[0]))
                if call is None:
                    call = profiles[slot] = _ScriptCall(
                        "merge_profiles.lua", [self._profile_max_ids]
                    )
                call.keys += profile_keys
                call.args += _merge_args(merge)
        calls += profiles.values()
        saves: dict[int, _ScriptCall] = {}
        for write in devices:
            device_key = self._keys.device(write.key)
            call = saves.get(slot := self._slot(device_key))
            if call is None:
                call = saves[slot] = _ScriptCall("save_devices.lua", [self._expiry_ms])
            call.keys.append(device_key)
            call.devices.append(write.key)
            streams = advanced.get(write.key, {})
            record = b"" if write.delete else encode_device(write.state)
            batch = "".join([str(write.state.version), *(f";{s}={o}" for s, o in streams.items())])
            call.args += [record, batch]
        calls += saves.values()
        if not calls:
            return SaveResult()
        if not self._shas:
            await self.load_scripts()
        try:
            return await self._run_scripts(calls)
        except NoScriptError:
            # Redis restarted (or a replica took over a slot) and lacks the script: load it
            # again on every primary and redo the batch (every call is idempotent)
            await self.load_scripts()
            return await self._run_scripts(calls)

    async def _run_scripts(self, calls: Sequence[_ScriptCall]) -> SaveResult:
        async with self._client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command(
                    "EVALSHA", self._shas[call.script], len(call.keys), *call.keys, *call.args
                )
            replies = await pipe.execute()
        refused = trimmed = 0
        conflicts: set[str] = set()
        for call, reply in zip(calls, replies, strict=True):
            if call.devices:  # save_devices.lua: {refused, conflicting key indexes (1-based)}
                refused += int(reply[0])
                conflicts.update(call.devices[int(index) - 1] for index in reply[1:])
            else:  # merge_profiles.lua: anonymousIds dropped by the bound
                trimmed += int(reply)
        return SaveResult(refused, frozenset(conflicts), trimmed)


@dataclass
class _ScriptCall:
    """One script call: keys of one hash slot and their arguments."""

    script: str
    args: list[Any]
    keys: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    """The device keys of a save_devices.lua call, in order."""


FORMAT: Final = 2
"""The device record format :func:`encode_device` writes. 1 (before 2026-12): the head, a
newline and every field in the JSON; still read."""
_FORMAT: Final = "#"
"""The name of the format in the record's head (1 when absent)."""
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_LAST_SEEN: Final = 1
_UUID_AID: Final = 2


def encode_device(state: DeviceState) -> bytes:
    """``~=<version>;#=2;<stream>=<offset>;...`` newline state JSON newline packed fields:
    the record's next version, its format and the fence; then the JSON of the fields that
    vary in shape; then, in binary, a flags byte, last seen (8 bytes, signed), the
    anonymousId when it is a lowercase UUID (16 bytes: every generated one, and Analytics.js's)
    and the recent messageId digests (R33, 8 bytes each). Against format 1: 96 bytes instead
    of 161 for an anonymous device seen three times, 585 instead of 1,198 with a full window
    of 64 messageIds; and quicker to read."""
    document: dict[str, Any] = {}
    flags = 0
    packed: list[bytes] = []
    if state.last_seen_ms is not None:
        flags |= _LAST_SEEN
        packed.append(state.last_seen_ms.to_bytes(8, "big", signed=True))
    aid = state.aid
    if aid is not None:
        if _UUID.fullmatch(aid):
            flags |= _UUID_AID
            packed.append(bytes.fromhex(aid.replace("-", "")))
        else:
            document["a"] = aid
    if state.uid is not None:
        document["u"] = state.uid
    if state.utraits:
        document["ut"] = state.utraits
    if state.gid is not None:
        document["g"] = state.gid
    if state.gtraits:
        document["gt"] = state.gtraits
    if state.generated:
        document["n"] = state.generated
    if state.consent is not None:
        document["c"] = state.consent
    recent = state.recent
    version = state.version + 1 if state.version else first_version()
    head = f"{VERSION}={version};{_FORMAT}={FORMAT}" + "".join(
        f";{stream}={offset}" for stream, offset in state.applied.items()
    )
    return b"".join(
        (
            head.encode(),
            b"\n",
            orjson.dumps(document),
            b"\n",
            bytes((flags,)),
            *packed,
            struct.pack(f">{len(recent)}Q", *recent),
        )
    )


def first_version() -> int:
    """A new record's version: random, so a device deleted (R37, R39) and made again never
    returns to a version a batch in flight loaded before the deletion (that batch's save must
    fail its version check, not write the deleted state back). Below 2**52: exact in Lua."""
    return 1 + secrets.randbelow(2**48)


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
        document: dict[str, Any] = orjson.loads(rest)
        document["o"] = applied
        return replace(DeviceState.from_json(document), version=version)
    body, _, packed = rest.partition(b"\n")
    document = orjson.loads(body)
    flags = packed[0]
    at = 1
    last_seen: int | None = None
    aid: str | None = document.get("a")
    if flags & _LAST_SEEN:
        last_seen = int.from_bytes(packed[1:9], "big", signed=True)
        at = 9
    if flags & _UUID_AID:
        h = packed[at : at + 16].hex()
        aid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        at += 16
    return DeviceState(
        aid=aid,
        uid=document.get("u"),
        utraits=document.get("ut") or {},
        gid=document.get("g"),
        gtraits=document.get("gt") or {},
        last_seen_ms=last_seen,
        recent=struct.unpack(f">{(len(packed) - at) // 8}Q", packed[at:]),
        generated=document.get("n", 0),
        applied=applied,
        consent=document.get("c"),
        version=version,
    )


def decode_traits(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    return {name.decode(): orjson.loads(value) for name, value in fields.items()}


def _merge_args(merge: ProfileMerge) -> list[Any]:
    """A profile merge as ``merge_profiles.lua`` reads it: one JSON argument."""
    anonymous_ids: list[str] = []
    for anonymous_id, seen in merge.anonymous_ids.items():
        anonymous_ids += [str(seen), anonymous_id]
    devices: list[str] = []
    for device, seen in merge.devices.items():
        devices += [str(seen), device]
    traits: list[str] = []
    for name, value in merge.traits.items():
        traits += [name, orjson.dumps(value).decode()]
    first, last = str(merge.first_seen_ms), str(merge.last_seen_ms)
    return [orjson.dumps([first, last, anonymous_ids, devices, traits])]
