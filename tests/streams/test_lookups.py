"""Lookups read only the app's own keys, whatever id a caller sends; on a single Redis and on
a Redis Cluster alike."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from enrichers import DeviceState
from streams.state.keys import KeySpace
from streams.state.lookups import Lookups
from streams.state.redis_client import connect
from streams.state.store import DeviceWrite, StateStore

HOSTILE = ["", "*", "d1}", "{d1}", "d1}:x", "%7Bd1%7D", "d1\n", ":device:{d1}", "../d1"]


@pytest.mark.parametrize("key", HOSTILE)
def test_no_id_reaches_another_apps_keys(redis_url: str, key: str) -> None:
    victim, caller = f"victim-{uuid.uuid4().hex[:6]}", f"caller-{uuid.uuid4().hex[:6]}"

    async def run() -> tuple[object, object, object]:
        client = connect(redis_url)
        try:
            store = StateStore(client, KeySpace(victim), 86_400_000)
            for device in ("d1", key or "d1"):
                await store.save(
                    [DeviceWrite(device, DeviceState(aid="secret", last_seen_ms=None))],
                    {device: {"raw/0": 1}},
                    {},
                    {},
                )
            lookups = Lookups(client, KeySpace(caller), 86_400_000)
            return (
                await lookups.device(key),
                await lookups.user(key),
                await lookups.group(key),
            )
        finally:
            await client.aclose()

    assert asyncio.run(run()) == (None, None, None)


def test_lookup_of_a_forgotten_or_expired_device_is_none(redis_url: str) -> None:
    app = f"t-{uuid.uuid4().hex[:6]}"

    async def run() -> tuple[object, object, object]:
        client = connect(redis_url)
        try:
            store = StateStore(client, KeySpace(app), 86_400_000)
            writes = [
                DeviceWrite("live", DeviceState(aid="a", last_seen_ms=1_000_000)),
                DeviceWrite("forgotten", DeviceState(last_seen_ms=1_000_000, generated=1)),
                DeviceWrite("stale", DeviceState(aid="b", last_seen_ms=1)),
            ]
            await store.save(writes, {w.key: {"raw/0": 1} for w in writes}, {}, {})
            lookups = Lookups(client, KeySpace(app), 86_400_000, clock_ms=lambda: 86_400_500)
            return (
                await lookups.device("live"),
                await lookups.device("forgotten"),
                await lookups.device("stale"),
            )
        finally:
            await client.aclose()

    live, forgotten, stale = asyncio.run(run())
    assert live is not None and live["anonymousId"] == "a"
    assert forgotten is None  # R3
    assert stale is None  # R4: idle past its TTL
