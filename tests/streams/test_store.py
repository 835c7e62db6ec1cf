"""Device state and profiles in a real Redis (SPEC "State", R34)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from enrichers import DeviceState, UserProfileUpdate
from enrichers.profiles import GroupProfileUpdate
from streams.devstack import StackEndpoints
from streams.keys import KeySpace
from streams.store import DeviceWrite, StateStore, coalesce_profiles

T = TypeVar("T")


class CountingConnection(Connection):
    """A real connection that counts how often it writes to the socket (round trips)."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        await super().send_packed_command(command, check_health)


def with_store(
    stack: StackEndpoints,
    body: Callable[[StateStore, aioredis.Redis], Awaitable[T]],
    app_id: str | None = None,
) -> T:
    async def run() -> T:
        pool = aioredis.ConnectionPool.from_url(
            stack.redis_url, connection_class=CountingConnection
        )
        client = aioredis.Redis(connection_pool=pool)
        try:
            store = StateStore(client, KeySpace(app_id or f"t-{uuid.uuid4().hex[:8]}"), 86_400_000)
            await store.load_scripts()
            return await body(store, client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def state(n: int) -> DeviceState:
    return DeviceState(aid=f"a{n}", uid=f"u{n}", utraits={"n": n}, applied={"raw/0": n})


def test_save_and_load_round_trip(stack: StackEndpoints) -> None:
    async def body(store: StateStore, _: aioredis.Redis) -> dict[str, DeviceState]:
        await store.save([DeviceWrite("d1", state(5))], {"d1": {"raw/0": 5}}, {}, {})
        return await store.load_devices(["d1", "missing"])

    loaded = with_store(stack, body)
    assert loaded == {"d1": state(5)}


def test_a_batch_is_one_round_trip_to_load_and_one_to_save(stack: StackEndpoints) -> None:
    async def body(store: StateStore, _: aioredis.Redis) -> tuple[int, int]:
        keys = [f"d{n}" for n in range(500)]
        users, groups = coalesce_profiles(
            [UserProfileUpdate(f"u{n}", f"a{n}", n, {"x": n}) for n in range(200)],
            [GroupProfileUpdate("g", {"y": 1}, 5)],
        )
        writes = [DeviceWrite(k, state(n)) for n, k in enumerate(keys)]
        before = CountingConnection.sends
        await store.save(writes, {k: {"raw/0": n} for n, k in enumerate(keys)}, users, groups)
        saved = CountingConnection.sends - before
        before = CountingConnection.sends
        await store.load_devices(keys)
        return saved, CountingConnection.sends - before

    saved, loaded = with_store(stack, body)
    assert (saved, loaded) == (1, 1)


def test_r34_fence_refuses_a_stale_write(stack: StackEndpoints) -> None:
    """A zombie finishing an old batch must not overwrite what the new owner wrote."""

    async def body(store: StateStore, _: aioredis.Redis) -> tuple[int, DeviceState]:
        await store.save([DeviceWrite("d", state(10))], {"d": {"raw/0": 10}}, {}, {})
        refused = await store.save([DeviceWrite("d", state(7))], {"d": {"raw/0": 7}}, {}, {})
        return refused, (await store.load_devices(["d"]))["d"]

    refused, stored = with_store(stack, body)
    assert refused == 1
    assert stored == state(10)


def test_app_ids_never_see_each_other(stack: StackEndpoints) -> None:
    async def write(store: StateStore, _: aioredis.Redis) -> None:
        await store.save([DeviceWrite("shared", state(1))], {"shared": {"raw/0": 1}}, {}, {})

    async def read(store: StateStore, _: aioredis.Redis) -> dict[str, DeviceState]:
        return await store.load_devices(["shared"])

    app = f"a-{uuid.uuid4().hex[:8]}"
    with_store(stack, write, app_id=app)
    assert with_store(stack, read, app_id=f"{app}-other") == {}
    assert "shared" in with_store(stack, read, app_id=app)


def test_device_record_expires_after_ttl_plus_margin(stack: StackEndpoints) -> None:
    async def body(store: StateStore, client: aioredis.Redis) -> int:
        await store.save([DeviceWrite("d", state(1))], {"d": {"raw/0": 1}}, {}, {})
        ttl: int = await client.pttl(store.keys.device("d"))
        return ttl

    ttl = with_store(stack, body)
    assert 30 * 86_400_000 < ttl <= 31 * 86_400_000  # 1 day TTL + 30 days margin (R1)


def test_user_profile_merges_traits_and_remembers_anonymous_ids(stack: StackEndpoints) -> None:
    async def body(store: StateStore, client: aioredis.Redis) -> tuple[Any, ...]:
        for updates in (
            [UserProfileUpdate("u", "a1", 100, {"plan": "free", "age": 3})],
            [UserProfileUpdate("u", "a2", 300, {"plan": "pro"}), UserProfileUpdate("u", "a1", 50)],
        ):
            users, groups = coalesce_profiles(updates, [])
            await store.save([], {}, users, groups)
        traits_key, meta_key, aids_key = store.keys.user("u")
        traits = {
            k.decode(): orjson.loads(v) for k, v in (await client.hgetall(traits_key)).items()
        }
        meta = await client.hgetall(meta_key)
        aids = await client.zrevrange(aids_key, 0, -1)
        return traits, meta, aids

    traits, meta, aids = with_store(stack, body)
    assert traits == {"plan": "pro", "age": 3}
    assert meta == {b"first_seen": b"50", b"last_seen": b"300"}
    assert aids == [b"a2", b"a1"]  # most recent first


def test_keys_of_one_profile_share_a_cluster_slot() -> None:
    from redis.crc import key_slot

    keys = KeySpace("app")
    for user_id in ("u1", "we{ird}", "a}b", ""):
        assert len({key_slot(k.encode()) for k in keys.user(user_id)}) == 1
