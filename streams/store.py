"""Device state and profiles in Redis: one command to load a batch's devices, one script call
to save them and one to merge the batch's profile updates, whatever the batch size.

A device record is one string: ``<stream>=<offset>;...`` (the last offset applied from each
source partition, the fence of SPEC R34), a newline, and the state JSON. Loading is an MGET;
saving is ``save_devices.lua``, which refuses a record whose stored fence is at or beyond the
batch's offsets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from enrichers import DeviceState, GroupProfileUpdate, UserProfileUpdate
from enrichers.policy import DAY_MS
from streams.keys import KeySpace

ANONYMOUS_IDS_PER_USER: Final = 50
EXPIRY_MARGIN_MS: Final = 30 * DAY_MS
"""Redis expiry runs on the wall clock, R1 on event time: the margin keeps a replay of
recent history from finding records already reclaimed."""

_SCRIPTS: Final = ("save_devices.lua", "merge_profiles.lua")


def _script(name: str) -> str:
    return resources.files("streams").joinpath("lua", name).read_text()


@dataclass
class ProfileMerge:
    """One profile's updates from one batch, coalesced in event order."""

    first_seen_ms: int
    last_seen_ms: int
    anonymous_ids: dict[str, int] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)

    def add(self, seen_ms: int, anonymous_id: str | None, traits: Mapping[str, Any] | None) -> None:
        self.first_seen_ms = min(self.first_seen_ms, seen_ms)
        self.last_seen_ms = max(self.last_seen_ms, seen_ms)
        if anonymous_id is not None:
            self.anonymous_ids[anonymous_id] = max(seen_ms, self.anonymous_ids.get(anonymous_id, 0))
        if traits:
            self.traits.update(traits)

    def script_args(self) -> list[Any]:
        args: list[Any] = [self.first_seen_ms, self.last_seen_ms, len(self.anonymous_ids)]
        for anonymous_id, seen in self.anonymous_ids.items():
            args += [seen, anonymous_id]
        args.append(len(self.traits))
        for name, value in self.traits.items():
            args += [name, orjson.dumps(value)]
        return args


@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """A device's new state; ``state.applied`` holds its fence."""

    key: str
    state: DeviceState


def coalesce_profiles(
    users: Iterable[UserProfileUpdate], groups: Iterable[GroupProfileUpdate]
) -> tuple[dict[str, ProfileMerge], dict[str, ProfileMerge]]:
    user_merges: dict[str, ProfileMerge] = {}
    for update in users:
        merge = user_merges.setdefault(update.user_id, ProfileMerge(update.seen_ms, update.seen_ms))
        merge.add(update.seen_ms, update.anonymous_id, update.traits)
    group_merges: dict[str, ProfileMerge] = {}
    for group in groups:
        merge = group_merges.setdefault(group.group_id, ProfileMerge(group.seen_ms, group.seen_ms))
        merge.add(group.seen_ms, None, group.traits)
    return user_merges, group_merges


class StateStore:
    """The Redis side of the worker. Methods raise redis errors; the caller retries."""

    def __init__(self, client: aioredis.Redis, keys: KeySpace, device_ttl_ms: int) -> None:
        self._client = client
        self._keys = keys
        self._expiry_ms = device_ttl_ms + EXPIRY_MARGIN_MS
        self._shas: dict[str, str] = {}

    @property
    def keys(self) -> KeySpace:
        return self._keys

    async def load_scripts(self) -> None:
        """Load the Lua scripts (again after a Redis restart, on NOSCRIPT)."""
        for name in _SCRIPTS:
            self._shas[name] = await self._client.script_load(_script(name))

    async def load_devices(self, device_keys: Sequence[str]) -> dict[str, DeviceState]:
        """The stored state of each device (absent devices are left out): one MGET."""
        if not device_keys:
            return {}
        records = cast(
            list[bytes | None],
            await self._client.mget([self._keys.device(key) for key in device_keys]),
        )
        return {
            key: decode_device(record)
            for key, record in zip(device_keys, records, strict=True)
            if record is not None
        }

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
    ) -> int:
        """Merge profiles, then write devices (one script call each, one round trip).
        ``advanced`` names, per device, the source offsets this batch applied (the fence).
        Returns how many device writes the fence refused."""
        profile_keys: list[str] = []
        profile_args: list[Any] = [ANONYMOUS_IDS_PER_USER]
        for keys, merges in ((self._keys.user, users), (self._keys.group, groups)):
            for identifier, merge in merges.items():
                profile_keys += keys(identifier)
                profile_args += merge.script_args()
        device_keys: list[str] = []
        device_args: list[Any] = [self._expiry_ms]
        for write in devices:
            device_keys.append(self._keys.device(write.key))
            streams = advanced.get(write.key, {})
            device_args += [encode_device(write.state), len(streams)]
            for stream, offset in streams.items():
                device_args += [stream, offset]
        if not self._shas:
            await self.load_scripts()
        try:
            return await self._run_scripts(profile_keys, profile_args, device_keys, device_args)
        except NoScriptError:
            await self.load_scripts()  # Redis restarted and lost its script cache
            return await self._run_scripts(profile_keys, profile_args, device_keys, device_args)

    async def _run_scripts(
        self,
        profile_keys: list[str],
        profile_args: list[Any],
        device_keys: list[str],
        device_args: list[Any],
    ) -> int:
        async with self._client.pipeline(transaction=False) as pipe:
            if profile_keys:
                pipe.evalsha(
                    self._shas["merge_profiles.lua"],
                    len(profile_keys),
                    *profile_keys,
                    *profile_args,
                )
            if device_keys:
                pipe.evalsha(
                    self._shas["save_devices.lua"], len(device_keys), *device_keys, *device_args
                )
            replies = await pipe.execute()
        return int(replies[-1]) if device_keys else 0


def encode_device(state: DeviceState) -> bytes:
    """``<stream>=<offset>;...`` newline state JSON (the offsets out of the JSON)."""
    document = state.to_json()
    applied = document.pop("o", {})
    head = ";".join(f"{stream}={offset}" for stream, offset in applied.items())
    return head.encode() + b"\n" + orjson.dumps(document)


def decode_device(record: bytes) -> DeviceState:
    head, _, body = record.partition(b"\n")
    document: dict[str, Any] = orjson.loads(body)
    applied: dict[str, int] = {}
    for part in head.decode().split(";"):
        if part:
            stream, _, offset = part.rpartition("=")
            applied[stream] = int(offset)
    document["o"] = applied
    return DeviceState.from_json(document)


def decode_traits(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    return {name.decode(): orjson.loads(value) for name, value in fields.items()}
