"""The Redis side of regulations (SPEC R39): the suppression list, and erasing what is stored
of a user, an anonymousId or a device.

The list is a set of digests (``enrichers.regulations.Digests``), never ids; the digests a
user's suppression added for its linked anonymousIds and devices are kept under the user's
digest, so ``unsuppress`` removes them too. Erasing deletes device records (whose version
check then refuses the save of a batch that loaded them before, SPEC R34) and profile keys;
each step is idempotent, so an erasure is simply run again after the settle time to remove
what a batch in flight wrote meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from enrichers import DeviceState
from enrichers.regulations import Digests, Regulation
from streams.state.keys import KeySpace
from streams.state.redis_client import RedisClient
from streams.state.store import StateStore, decode_device

SCAN_CHUNK: Final = 1000


class RegulationKeyChanged(Exception):
    """The suppression list was made with another ENRICHER_REGULATION_KEY."""


@dataclass
class Erased:
    """What an erasure removed (counts only: reports never name ids)."""

    profiles: int = 0
    devices: int = 0
    links: int = 0
    scanned: bool = False
    """A scan of every device record was needed (a profile made before its device index)."""

    def add(self, other: Erased) -> None:
        self.profiles += other.profiles
        self.devices += other.devices
        self.links += other.links
        self.scanned = self.scanned or other.scanned

    def as_json(self) -> dict[str, Any]:
        return {
            "profiles": self.profiles,
            "devices": self.devices,
            "links": self.links,
            "scanned": self.scanned,
        }


@dataclass
class Suppressed:
    """What a suppression added or removed (counts only)."""

    ids: int = 0
    linked: int = 0
    removed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"ids": self.ids, "linked": self.linked, "removed": self.removed}


class RegulationStore:
    def __init__(self, client: RedisClient, store: StateStore, digests: Digests) -> None:
        self._client = client
        self._store = store
        self._keys: KeySpace = store.keys
        self._digests = digests

    async def check_key(self) -> bool:
        """The first worker records which key made the digests; a worker with another key
        stops (its digests would match nothing: suppressed people would come back). True when
        nothing was recorded: Redis is new, or was emptied (the list is to be rebuilt)."""
        key = self._keys.regulations()
        fingerprint = self._digests.fingerprint
        fresh = bool(await self._client.hsetnx(key, "fingerprint", fingerprint))
        stored = await self._client.hget(key, "fingerprint")
        if stored is not None and _text(stored) != fingerprint:
            raise RegulationKeyChanged(
                "ENRICHER_REGULATION_KEY differs from the key the suppression list was made "
                "with: set the previous key again (a new key needs the list emptied and the "
                "regulations applied again: `enricher regulate rebuild`)"
            )
        return fresh

    async def reset(self) -> None:
        """Empty the suppression list (to apply every regulation again, with a new key)."""
        suppressed = self._keys.suppressed()
        links = [key async for key in self._client.scan_iter(match=f"{suppressed}:links:*")]
        for start in range(0, len(links), SCAN_CHUNK):
            await self._client.delete(*links[start : start + SCAN_CHUNK])
        await self._client.delete(suppressed, self._keys.regulations())

    # suppression

    async def suppress(self, regulation: Regulation) -> tuple[Suppressed, dict[bytes, list[bytes]]]:
        """Add the regulation's ids and, for each userId, the anonymousIds and devices its
        profile lists and the devices that have stored it (R39). Returns the counts and, per
        user digest, the linked digests added."""
        result = Suppressed()
        digests = [self._digests.of(kind, value) for kind, value in regulation.ids()]
        result.ids = len(digests)
        if digests:  # the named ids first: they take effect at once
            await self._client.sadd(self._keys.suppressed(), *digests)
        links: dict[bytes, list[bytes]] = {}
        for user_id in regulation.user_ids:
            linked = await self._linked(user_id)
            if linked:
                user_digest = self._digests.of("userId", user_id)
                links[user_digest] = linked
                result.linked += len(linked)
                await self._add_links(user_digest, linked)
        return result, links

    async def restore(self, regulation: Regulation, links: dict[bytes, list[bytes]]) -> None:
        """A suppression again, with the linked digests it found when it was applied (the
        profiles they came from may be gone): rebuilding the list."""
        digests = [self._digests.of(kind, value) for kind, value in regulation.ids()]
        if digests:
            await self._client.sadd(self._keys.suppressed(), *digests)
        for user_digest, linked in links.items():
            if linked:
                await self._add_links(user_digest, linked)

    async def _add_links(self, user_digest: bytes, linked: list[bytes]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.sadd(self._keys.suppression_links(user_digest), *linked)
            pipe.sadd(self._keys.suppressed(), *linked)
            await pipe.execute()

    async def unsuppress(self, regulation: Regulation) -> Suppressed:
        result = Suppressed()
        digests = [self._digests.of(kind, value) for kind, value in regulation.ids()]
        for user_id in regulation.user_ids:
            links_key = self._keys.suppression_links(self._digests.of("userId", user_id))
            linked = [_raw(d) for d in await self._client.smembers(links_key)]
            digests += linked
            result.linked += len(linked)
            await self._client.delete(links_key)
        if digests:
            result.removed = int(await self._client.srem(self._keys.suppressed(), *digests))
        result.ids = len(digests) - result.linked
        return result

    async def _linked(self, user_id: str) -> list[bytes]:
        """Digests of the anonymousIds and device keys linked to a user now."""
        profile = await self._profile(user_id)
        devices = await self._devices_of(user_id, profile)
        linked = {self._digests.of("anonymousId", aid) for aid in profile.anonymous_ids}
        for key, state in devices.items():
            linked.add(self._digests.of("device", key))
            if state.aid:
                linked.add(self._digests.of("anonymousId", state.aid))
        return sorted(linked)

    # erasure

    async def erase(self, regulation: Regulation) -> Erased:
        erased = Erased()
        for user_id in regulation.user_ids:
            erased.add(await self.erase_user(user_id))
        for anonymous_id in regulation.anonymous_ids:
            erased.add(await self.erase_device(anonymous_id, anonymous_id=anonymous_id))
        for device in regulation.devices:
            erased.add(await self.erase_device(device))
        return erased

    async def erase_user(self, user_id: str) -> Erased:
        """The profile, every device it lists (or whose key is one of its anonymousIds), every
        device whose stored userId is the user (all devices are scanned when the profile's
        device list may be incomplete); links of those devices in other profiles."""
        erased = Erased()
        profile = await self._profile(user_id)
        devices = await self._devices_of(user_id, profile)
        erased.scanned = not profile.complete
        erased.devices, erased.links = await self._delete_devices(devices, spare=user_id)
        profile_keys = self._keys.profile("user", user_id)
        erased.profiles = int(bool(await self._client.delete(*profile_keys)))
        return erased

    async def erase_device(self, key: str, anonymous_id: str | None = None) -> Erased:
        """A device record and its links in the profile of the user it stored; for an
        anonymousId (the key of its device), also its link in any profile listing it, found
        by a scan when its device is gone."""
        erased = Erased()
        devices = await self._store.load_devices([key])
        erased.devices, erased.links = await self._delete_devices(devices, spare=None)
        if anonymous_id is not None and not devices:
            erased.scanned = True
            erased.links += await self._unlink_everywhere(anonymous_id)
        return erased

    async def _delete_devices(
        self, devices: dict[str, DeviceState], spare: str | None
    ) -> tuple[int, int]:
        """Delete the records; remove each from the profile of the user it stored (unless
        that is ``spare``, deleted whole). Returns (records deleted, links removed)."""
        deleted = links = 0
        async with self._client.pipeline(transaction=False) as pipe:
            for key, state in devices.items():
                pipe.hdel(self._keys.device_bucket(key), key)
                if state.uid and state.uid != spare:
                    ids = {key, *([state.aid] if state.aid else [])}
                    profile, _, _, aids_key, devices_key = self._keys.profile("user", state.uid)
                    pipe.hdel(profile, *(f"a:{i}" for i in ids), f"d:{key}")
                    pipe.zrem(aids_key, *ids)
                    pipe.zrem(devices_key, key)
            replies = await pipe.execute()
        at = 0
        for state in devices.values():
            deleted += int(replies[at])
            at += 1
            if state.uid and state.uid != spare:
                links += sum(int(n) for n in replies[at : at + 3])
                at += 3
        return deleted, links

    async def _profile(self, user_id: str) -> _Profile:
        stored = (await self._store.load_profiles("user", [user_id])).get(user_id)
        if stored is None:
            return _Profile([], [], complete=True)
        return _Profile(
            list(stored.anonymous_ids), list(stored.devices), complete=stored.lists_every_device
        )

    async def _devices_of(self, user_id: str, profile: _Profile) -> dict[str, DeviceState]:
        """Devices the profile lists, whose key is one of its anonymousIds or the userId
        (a device named by its userId), and every device whose stored userId is the user."""
        candidates = list(dict.fromkeys([*profile.devices, *profile.anonymous_ids, user_id]))
        found = await self._store.load_devices(candidates)
        listed = set(profile.devices) | set(profile.anonymous_ids)
        devices = {k: s for k, s in found.items() if k in listed or s.uid == user_id}
        if not profile.complete:
            devices.update(await self._scan_devices(user_id))
        return devices

    async def _scan_devices(self, user_id: str) -> dict[str, DeviceState]:
        """Every device record whose stored userId is ``user_id`` (every bucket read)."""
        found: dict[str, DeviceState] = {}
        buckets = self._keys.device_buckets
        for first in range(0, buckets, SCAN_CHUNK // 10):
            async with self._client.pipeline(transaction=False) as pipe:
                for number in range(first, min(first + SCAN_CHUNK // 10, buckets)):
                    pipe.hgetall(self._keys.bucket(number))
                replies: list[dict[bytes, bytes]] = await pipe.execute()
            for records in replies:
                for key, record in records.items():
                    state = decode_device(record)
                    if state.uid == user_id:
                        found[key.decode()] = state
        return found

    async def _unlink_everywhere(self, anonymous_id: str) -> int:
        """Remove an anonymousId from every user profile listing it (a scan; profiles of
        both formats)."""
        removed = 0
        keys: list[bytes] = []
        async for key in self._client.scan_iter(match=self._keys.user_pattern(), count=SCAN_CHUNK):
            key = _raw(key)
            if key.endswith((b"}", b":aids")):
                keys.append(key)
        for start in range(0, len(keys), SCAN_CHUNK):
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys[start : start + SCAN_CHUNK]:
                    if key.endswith(b"}"):  # format 2: the profile hash
                        pipe.hdel(key, f"a:{anonymous_id}")
                    else:
                        pipe.zrem(key, anonymous_id)
                removed += sum(int(n) for n in await pipe.execute())
        return removed

    # who applies

    async def lease(self, holder: str, seconds: float) -> bool:
        """Take or keep the right to apply regulations (one worker at a time)."""
        key = self._keys.regulations_lease()
        ttl_ms = int(seconds * 1000)
        if await self._client.set(key, holder, nx=True, px=ttl_ms):
            return True
        current = await self._client.get(key)
        if current is not None and _text(current) == holder:
            await self._client.pexpire(key, ttl_ms)
            return True
        return False

    async def release(self, holder: str) -> None:
        key = self._keys.regulations_lease()
        current = await self._client.get(key)
        if current is not None and _text(current) == holder:
            await self._client.delete(key)


@dataclass(frozen=True, slots=True)
class _Profile:
    anonymous_ids: Sequence[str]
    devices: Sequence[str]
    complete: bool
    """The device list names every device (no scan needed)."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
