"""Identity lookups: the server-side ``analytics.user()`` / ``analytics.group()`` of a device,
and the user and group profiles (SPEC "State"). Read-only; every key is built by
:class:`KeySpace`, so no id a caller sends can reach outside the app's namespace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from enrichers.timestamps import format_iso_ms
from enrichers.values import visible
from streams.settings import Settings
from streams.state.keys import KeySpace
from streams.state.redis_client import RedisClient, connect_to
from streams.state.store import StateStore, StoredProfile

Document = dict[str, Any]


class Lookups:
    def __init__(
        self,
        client: RedisClient,
        keys: KeySpace,
        device_ttl_ms: int,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._client = client
        self._keys = keys
        self._store = StateStore(client, keys, device_ttl_ms)
        self._device_ttl_ms = device_ttl_ms
        self._clock_ms = clock_ms

    async def device(self, device_key: str) -> Document | None:
        """What ``analytics.user()`` and ``analytics.group()`` return on that device, or None
        for a device never seen, forgotten (R3) or idle past its TTL (R4)."""
        state = (await self._store.load_devices([device_key])).get(device_key)
        if state is None or not state.has_identity:
            return None
        last_seen = state.last_seen_ms
        if last_seen is not None and self._clock_ms() - last_seen > self._device_ttl_ms:
            return None
        return {
            "device": device_key,
            "anonymousId": state.aid,
            "userId": visible(state.uid),
            "traits": dict(state.utraits),
            "groupId": visible(state.gid),
            "groupTraits": dict(state.gtraits),
            "lastSeen": format_iso_ms(last_seen) if last_seen is not None else None,
        }

    async def user(self, user_id: str) -> Document | None:
        """The user profile: merged traits, anonymousIds seen (most recent first), first and
        last seen; None when the user was never seen."""
        profile = (await self._store.load_profiles("user", [user_id])).get(user_id)
        if profile is None:
            return None
        return {
            "userId": user_id,
            "traits": dict(profile.traits),
            "anonymousIds": profile.anonymous_ids_recent_first(),
            **_seen(profile),
        }

    async def group(self, group_id: str) -> Document | None:
        """The group profile: merged group traits, first and last seen."""
        profile = (await self._store.load_profiles("group", [group_id])).get(group_id)
        if profile is None:
            return None
        return {"groupId": group_id, "traits": dict(profile.traits), **_seen(profile)}

    async def find(self, kind: str, identifier: str) -> Document | None:
        """``kind`` is ``device``, ``user`` or ``group``."""
        lookup = {"device": self.device, "user": self.user, "group": self.group}[kind]
        return await lookup(identifier)


def _seen(profile: StoredProfile) -> Document:
    first, last = profile.first_seen_ms, profile.last_seen_ms
    return {
        "firstSeen": format_iso_ms(first) if first is not None else None,
        "lastSeen": format_iso_ms(last) if last is not None else None,
    }


def not_found(kind: str, identifier: str) -> Document:
    return {"error": {"code": "not_found", "message": f"no {kind} {identifier!r}"}}


def run_lookup(settings: Settings, kind: str, identifier: str) -> int:
    """``enricher lookup KIND ID``: the JSON document, or a JSON error and exit status 1."""

    async def find() -> Document | None:
        client = connect_to(settings)
        try:
            keys = settings.keys
            return await Lookups(client, keys, settings.policy.device_ttl_ms).find(kind, identifier)
        finally:
            await client.aclose()

    found = asyncio.run(find())
    print(orjson.dumps(found or not_found(kind, identifier), option=orjson.OPT_INDENT_2).decode())
    return 0 if found is not None else 1
