"""Device state and profiles in Redis: one round trip to load a batch's devices, one to save
them with their profile updates, whatever the batch size."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

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
        args: list[Any] = [
            self.first_seen_ms,
            self.last_seen_ms,
            ANONYMOUS_IDS_PER_USER,
            len(self.anonymous_ids),
        ]
        for anonymous_id, seen in self.anonymous_ids.items():
            args += [seen, anonymous_id]
        for name, value in self.traits.items():
            args += [name, orjson.dumps(value)]
        return args


@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """A device's new state and the source offsets it was advanced to (its fence)."""

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
        self._scripts = {name: _script(name) for name in ("save_device.lua", "merge_profile.lua")}
        self._shas: dict[str, str] = {}
        self.fenced_writes = 0

    async def load_scripts(self) -> None:
        """Load the Lua scripts (again after a Redis restart, on NOSCRIPT), so that a save is
        one round trip of EVALSHA calls."""
        for name, source in self._scripts.items():
            self._shas[name] = await self._client.script_load(source)

    @property
    def keys(self) -> KeySpace:
        return self._keys

    async def load_devices(self, device_keys: Sequence[str]) -> dict[str, DeviceState]:
        """The stored state of each device (absent devices are left out), one round trip."""
        if not device_keys:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for key in device_keys:
                pipe.hgetall(self._keys.device(key))
            replies = await pipe.execute()
        states: dict[str, DeviceState] = {}
        for key, reply in zip(device_keys, replies, strict=True):
            if reply:
                states[key] = decode_device(reply)
        return states

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
        """Write profiles, then devices, in one round trip. ``advanced`` names, per device,
        the source offsets this batch applied (the fence of save_device.lua). Returns how many
        device writes the fence refused."""
        if not self._shas:
            await self.load_scripts()
        try:
            replies = await self._save_round_trip(devices, advanced, users, groups)
        except NoScriptError:
            await self.load_scripts()  # Redis restarted and lost its script cache
            replies = await self._save_round_trip(devices, advanced, users, groups)
        refused = sum(1 for reply in replies[len(users) + len(groups) :] if reply == 0)
        self.fenced_writes += refused
        return refused

    async def _save_round_trip(
        self,
        devices: Sequence[DeviceWrite],
        advanced: Mapping[str, Mapping[str, int]],
        users: Mapping[str, ProfileMerge],
        groups: Mapping[str, ProfileMerge],
    ) -> list[Any]:
        merge_sha = self._shas["merge_profile.lua"]
        save_sha = self._shas["save_device.lua"]
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id, merge in users.items():
                pipe.evalsha(merge_sha, 3, *self._keys.user(user_id), *merge.script_args())
            for group_id, merge in groups.items():
                pipe.evalsha(merge_sha, 3, *self._keys.group(group_id), *merge.script_args())
            for write in devices:
                args: list[Any] = [self._expiry_ms, encode_device(write.state)]
                for stream, offset in advanced.get(write.key, {}).items():
                    args += [stream, offset]
                pipe.evalsha(save_sha, 1, self._keys.device(write.key), *args)
            replies: list[Any] = await pipe.execute()
        return replies


def encode_device(state: DeviceState) -> bytes:
    """The state JSON without the offsets, which live in their own hash fields."""
    document = state.to_json()
    document.pop("o", None)
    return orjson.dumps(document)


def decode_traits(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    return {name.decode(): orjson.loads(value) for name, value in fields.items()}


def decode_device(fields: Mapping[bytes, bytes]) -> DeviceState:
    document: dict[str, Any] = orjson.loads(fields.get(b"s", b"{}"))
    document["o"] = {
        name[2:].decode(): int(value) for name, value in fields.items() if name.startswith(b"o:")
    }
    return DeviceState.from_json(document)
