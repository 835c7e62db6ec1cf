"""R39 in a real Redis and a real Redis Cluster: the suppression list (digests, linked ids,
unsuppress) and erasure (profiles, listed devices, devices found by a scan, links)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from enrichers import DeviceState, UserProfileUpdate
from enrichers.profiles import coalesce_profiles
from enrichers.regulations import Digests, Regulation
from streams.state.keys import KeySpace
from streams.state.redis_client import RedisClient, connect
from streams.state.regulations import RegulationKeyChanged, RegulationStore
from streams.state.store import DeviceWrite, StateStore

T = TypeVar("T")
DIGESTS = Digests.from_secret(b"test key")


def with_regulations(
    redis_url: str,
    body: Callable[[RegulationStore, StateStore, RedisClient], Awaitable[T]],
    digests: Digests = DIGESTS,
) -> T:
    async def run() -> T:
        client = connect(redis_url)
        try:
            store = StateStore(client, KeySpace(f"t-{uuid.uuid4().hex[:8]}"), 86_400_000)
            return await body(RegulationStore(client, store, digests), store, client)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def seed_user(store: StateStore, user: str, devices: int, offset: int = 1) -> None:
    """A user identified on ``devices`` devices (records and profile, as the worker saves)."""
    writes, updates = [], []
    for n in range(devices):
        key, aid = f"dev-{user}-{n}", f"aid-{user}-{n}"
        state = DeviceState(
            aid=aid, uid=user, utraits={"email": f"{user}@example.com"}, applied={"raw/0": offset}
        )
        writes.append(DeviceWrite(key, state))
        updates.append(UserProfileUpdate(user, aid, 1000 + n, {"email": f"{user}@x"}, key))
    users, groups = coalesce_profiles(updates, [])
    advanced = {write.key: {"raw/0": offset} for write in writes}
    await store.save(writes, advanced, users, groups)


async def app_contents(client: RedisClient, store: StateStore) -> str:
    """Every key and value of the app, as one text."""
    parts = []
    async for key in client.scan_iter(match=f"{store.keys.app_id}:*"):
        kind = (await client.type(key)).decode()
        value: Any = {
            "string": client.get,
            "hash": client.hgetall,
            "zset": lambda k: client.zrange(k, 0, -1),
            "set": client.smembers,
        }[kind](key)
        parts.append(f"{key!r} {await value!r}")
    return "\n".join(sorted(parts))


def named(user: str, n: int) -> list[tuple[str, str]]:
    return [("userId", user), ("anonymousId", f"aid-{user}-{n}"), ("device", f"dev-{user}-{n}")]


def test_r39_suppressing_a_user_suppresses_its_linked_anonymous_ids_and_devices(
    redis_url: str,
) -> None:
    async def body(regs: RegulationStore, store: StateStore, _: RedisClient) -> Any:
        await seed_user(store, "u1", 2)
        await seed_user(store, "u2", 1)
        result, links = await regs.suppress(Regulation("r1", "suppress", user_ids=("u1",)))
        asked = [DIGESTS.of(k, v) for n in range(2) for k, v in named("u1", n)]
        others = [DIGESTS.of(k, v) for k, v in named("u2", 0)]
        return result, links, await store.suppressed(asked), await store.suppressed(others), asked

    result, links, suppressed, others, asked = with_regulations(redis_url, body)
    assert suppressed == set(asked)  # the userId, both anonymousIds, both device keys
    assert others == set()
    assert result.ids == 1 and result.linked == 4
    assert list(links) == [DIGESTS.of("userId", "u1")]


def test_r39_a_batch_check_finds_every_suppressed_digest_among_thousands(
    redis_url: str,
) -> None:
    """The batch check (``load_checked``: the devices and the digests in one round trip)
    finds each suppressed digest wherever it lies among 2,500 (several SMISMEMBER chunks in
    the script), says the list is not empty, and works again after Redis lost its scripts."""

    async def body(regs: RegulationStore, store: StateStore, client: RedisClient) -> Any:
        await seed_user(store, "u1", 1)
        await regs.suppress(Regulation("r1", "suppress", user_ids=("u1",)))
        asked = [DIGESTS.of("anonymousId", f"other-{n}") for n in range(2_500)]
        held = [DIGESTS.of(k, v) for k, v in named("u1", 0)]
        for at, digest in zip((0, 999, 1_000, 2_000), held + held[:1], strict=True):
            asked.insert(at, digest)
        await client.script_flush()
        first = await store.load_checked(["dev-u1-0", "absent"], asked)
        again = await store.load_checked(["dev-u1-0"], asked)
        return first, again, held

    first, again, held = with_regulations(redis_url, body)
    assert first.suppressed == set(held) and first.suppressing
    assert set(first.devices) == {"dev-u1-0"} and first.devices["dev-u1-0"].uid == "u1"
    assert again.suppressed == set(held)


def test_r39_an_empty_suppression_list_holds_nothing_and_says_so(redis_url: str) -> None:
    async def body(_: RegulationStore, store: StateStore, __: RedisClient) -> Any:
        return await store.load_checked(["d"], [DIGESTS.of("userId", "u1")])

    checked = with_regulations(redis_url, body)
    assert checked.suppressed == set() and not checked.suppressing and checked.devices == {}


def test_r39_unsuppress_ends_the_user_and_its_linked_ids_suppression(redis_url: str) -> None:
    async def body(regs: RegulationStore, store: StateStore, client: RedisClient) -> Any:
        await seed_user(store, "u1", 2)
        await regs.suppress(Regulation("r1", "suppress", user_ids=("u1",)))
        await regs.unsuppress(Regulation("r2", "unsuppress", user_ids=("u1",)))
        asked = [DIGESTS.of(k, v) for n in range(2) for k, v in named("u1", n)]
        return await store.suppressed(asked), await client.exists(store.keys.suppressed())

    suppressed, exists = with_regulations(redis_url, body)
    assert suppressed == set() and exists == 0


def test_r39_erasing_a_user_leaves_no_key_or_value_naming_it_and_spares_others(
    redis_url: str,
) -> None:
    async def body(regs: RegulationStore, store: StateStore, client: RedisClient) -> Any:
        await seed_user(store, "u2", 2)
        before = await app_contents(client, store)
        await seed_user(store, "u1", 3)
        erased = await regs.erase(Regulation("r1", "delete", user_ids=("u1",)))
        return erased, before, await app_contents(client, store)

    erased, before, after = with_regulations(redis_url, body)
    assert erased.devices == 3 and erased.profiles == 1 and not erased.scanned
    assert "u1" not in after
    assert after == before


def test_r39_a_user_profile_older_than_its_device_index_is_completed_by_a_scan(
    redis_url: str,
) -> None:
    async def body(regs: RegulationStore, store: StateStore, client: RedisClient) -> Any:
        await seed_user(store, "u1", 2)
        # as a profile saved before the index existed: no "x", a device it does not list
        await client.hdel(store.keys.user("u1"), "x", "d:dev-u1-1", "a:aid-u1-1")
        erased = await regs.erase(Regulation("r1", "delete", user_ids=("u1",)))
        return erased, await app_contents(client, store)

    erased, after = with_regulations(redis_url, body)
    assert erased.scanned and erased.devices == 2
    assert "u1" not in after


def test_r39_profiles_still_in_format_1_are_erased_and_unlinked(redis_url: str) -> None:
    """Profiles saved before issue 21 (four keys, not yet moved by a merge): erasing their
    user deletes all four, erasing an anonymousId or a device removes its links from them."""

    async def body(regs: RegulationStore, store: StateStore, client: RedisClient) -> Any:
        for user in ("u1", "u2"):
            await seed_user(store, user, 3)
            profile = (await store.load_profiles("user", [user]))[user]
            _, traits_key, meta_key, aids_key, devices_key = store.keys.profile("user", user)
            await client.delete(store.keys.user(user))
            await client.hset(traits_key, mapping={"email": f'"{user}@x"'})
            await client.hset(meta_key, mapping={"first_seen": "1000", "last_seen": "1002"})
            await client.zadd(aids_key, dict(profile.anonymous_ids))
            await client.zadd(devices_key, dict(profile.devices))
        before = await app_contents(client, store)
        erased = await regs.erase(
            Regulation(
                "r1",
                "delete",
                user_ids=("u1",),
                anonymous_ids=("aid-u2-0",),
                devices=("dev-u2-1",),
            )
        )
        profile = (await store.load_profiles("user", ["u2"]))["u2"]
        return before, erased, await app_contents(client, store), profile

    before, erased, after, u2 = with_regulations(redis_url, body)
    assert ":aids" in before and "u1" in before
    # no "dx": the profile may not list every device, so the erasure also scanned
    assert erased.profiles == 1 and erased.scanned
    assert "u1" not in after
    # the erased device's own anonymousId goes with it (as in format 2)
    assert u2.anonymous_ids == {"aid-u2-2": 1002}
    assert u2.devices == {"dev-u2-0": 1000, "dev-u2-2": 1002}


def test_r39_erasing_a_device_or_an_anonymous_id_removes_its_links_in_the_profile(
    redis_url: str,
) -> None:
    async def body(regs: RegulationStore, store: StateStore, client: RedisClient) -> Any:
        await seed_user(store, "u1", 3)
        await regs.erase(
            Regulation("r1", "delete", anonymous_ids=("aid-u1-0",), devices=("dev-u1-1",))
        )
        profile = (await store.load_profiles("user", ["u1"]))["u1"]
        return (
            sorted(profile.anonymous_ids),
            sorted(profile.devices),
            set(await store.load_devices(["dev-u1-0", "dev-u1-1", "dev-u1-2"])),
        )

    aids, devices, left = with_regulations(redis_url, body)
    # the anonymousId's link goes by a scan of the profiles (its device is keyed otherwise)
    assert aids == ["aid-u1-2"]
    assert devices == ["dev-u1-0", "dev-u1-2"]
    assert left == {"dev-u1-0", "dev-u1-2"}


def test_r39_a_worker_with_another_digest_key_is_refused(redis_url: str) -> None:
    async def body(regs: RegulationStore, store: StateStore, client: RedisClient) -> Any:
        fresh = await regs.check_key()
        again = await regs.check_key()
        other = RegulationStore(client, store, Digests.from_secret(b"another key"))
        with pytest.raises(RegulationKeyChanged, match="ENRICHER_REGULATION_KEY"):
            await other.check_key()
        return fresh, again

    assert with_regulations(redis_url, body) == (True, False)
