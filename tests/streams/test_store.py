"""Device state and profiles in a real Redis and a real Redis Cluster (SPEC "State", R34).
Tests taking ``redis_url`` run on both."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from enrichers import DeviceState, UserProfileUpdate
from enrichers.profiles import GroupProfileUpdate, coalesce_profiles
from streams.dev.stack import StackEndpoints
from streams.state.keys import DEVICE_BUCKETS, KeySpace
from streams.state.redis_client import RedisClient, connect
from streams.state.store import (
    EXPIRY_MARGIN_MS,
    DeviceWrite,
    LayoutMismatch,
    SaveResult,
    StateStore,
    StoredProfile,
    encode_device,
)

T = TypeVar("T")


class CountingConnection(Connection):
    """A real connection that counts how often it writes to the socket (round trips), per
    server."""

    sends: ClassVar[Counter[int]] = Counter()

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends[self.port] += 1
        await super().send_packed_command(command, check_health)


def counting_client(redis_url: str) -> RedisClient:
    client = connect(redis_url)
    if isinstance(client, RedisCluster):
        # shared by every node the client discovers
        client.connection_kwargs["connection_class"] = CountingConnection
    else:
        client.connection_pool.connection_class = CountingConnection
    return client


def with_store(
    redis_url: str,
    body: Callable[[StateStore, RedisClient], Awaitable[T]],
    app_id: str | None = None,
    buckets: int = DEVICE_BUCKETS,
) -> T:
    async def run() -> T:
        client = counting_client(redis_url)
        try:
            keys = KeySpace(app_id or f"t-{uuid.uuid4().hex[:8]}", buckets)
            store = StateStore(client, keys, 86_400_000)
            await store.load_scripts()
            return await body(store, client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def state(n: int) -> DeviceState:
    return DeviceState(aid=f"a{n}", uid=f"u{n}", utraits={"n": n}, applied={"raw/0": n})


def test_save_and_load_round_trip(redis_url: str) -> None:
    async def body(store: StateStore, _: RedisClient) -> dict[str, DeviceState]:
        await store.save([DeviceWrite("d1", state(5))], {"d1": {"raw/0": 5}}, {}, {})
        return await store.load_devices(["d1", "missing"])

    loaded = with_store(redis_url, body)
    assert loaded == {"d1": state(5)}


async def batch_round_trips(store: StateStore) -> tuple[Counter[int], Counter[int]]:
    """Socket writes per server to save, then load, a batch of 500 devices and 201 profiles."""
    keys = [f"d{n}" for n in range(500)]
    users, groups = coalesce_profiles(
        [UserProfileUpdate(f"u{n}", f"a{n}", n, {"x": n}) for n in range(200)],
        [GroupProfileUpdate("g", {"y": 1}, 5)],
    )
    writes = [DeviceWrite(k, state(n)) for n, k in enumerate(keys)]
    before = CountingConnection.sends.copy()
    await store.save(writes, {k: {"raw/0": n} for n, k in enumerate(keys)}, users, groups)
    saved = CountingConnection.sends - before
    before = CountingConnection.sends.copy()
    loaded = await store.load_devices(keys)
    assert loaded == {k: state(n) for n, k in enumerate(keys)}
    return saved, CountingConnection.sends - before


def test_a_batch_is_one_round_trip_to_load_and_one_to_save(stack: StackEndpoints) -> None:
    async def body(store: StateStore, _: RedisClient) -> tuple[Counter[int], Counter[int]]:
        return await batch_round_trips(store)

    saved, loaded = with_store(stack.redis_url, body)
    assert (saved.total(), loaded.total()) == (1, 1)


def test_on_a_cluster_a_batch_is_one_round_trip_per_node(redis_cluster: str) -> None:
    """500 devices in ~500 slots over three masters: the batch is split per slot (each
    script call and MGET touches one slot) but sent as one write per node."""

    async def body(store: StateStore, client: RedisClient) -> tuple[Counter[int], Counter[int]]:
        await client.ping()  # discovers the nodes before counting
        return await batch_round_trips(store)

    saved, loaded = with_store(redis_cluster, body)
    assert len(saved) == 3 and set(saved.values()) == {1}, saved  # every master, once
    assert len(loaded) == 3 and set(loaded.values()) == {1}, loaded


def test_r34_fence_refuses_a_stale_write(redis_url: str) -> None:
    """A zombie finishing an old batch must not overwrite what the new owner wrote."""

    async def body(store: StateStore, _: RedisClient) -> tuple[int, DeviceState]:
        await store.save([DeviceWrite("d", state(10))], {"d": {"raw/0": 10}}, {}, {})
        saved = await store.save([DeviceWrite("d", state(7))], {"d": {"raw/0": 7}}, {}, {})
        return saved.refused, (await store.load_devices(["d"]))["d"]

    refused, stored = with_store(redis_url, body)
    assert refused == 1
    assert stored == state(10)


def test_r34_fence_holds_per_device_in_a_batch_spanning_slots(redis_url: str) -> None:
    """A zombie's batch whose devices lie in many slots (on a cluster: many nodes): the
    devices the new owner already advanced are refused, the others are written."""

    async def body(store: StateStore, _: RedisClient) -> tuple[int, dict[str, DeviceState]]:
        keys = [f"d{n}" for n in range(20)]
        newer = keys[:10]
        await store.save(
            [DeviceWrite(k, state(20)) for k in newer], {k: {"raw/0": 20} for k in newer}, {}, {}
        )
        saved = await store.save(
            [DeviceWrite(k, state(15)) for k in keys], {k: {"raw/0": 15} for k in keys}, {}, {}
        )
        return saved.refused, await store.load_devices(keys)

    refused, stored = with_store(redis_url, body)
    assert len({key_slot(KeySpace("x").device_bucket(f"d{n}").encode()) for n in range(20)}) > 1
    assert refused == 10
    assert stored == {f"d{n}": state(20 if n < 10 else 15) for n in range(20)}


def test_app_ids_never_see_each_other(redis_url: str) -> None:
    async def write(store: StateStore, _: RedisClient) -> None:
        await store.save([DeviceWrite("shared", state(1))], {"shared": {"raw/0": 1}}, {}, {})

    async def read(store: StateStore, _: RedisClient) -> dict[str, DeviceState]:
        return await store.load_devices(["shared"])

    app = f"a-{uuid.uuid4().hex[:8]}"
    with_store(redis_url, write, app_id=app)
    assert with_store(redis_url, read, app_id=f"{app}-other") == {}
    assert "shared" in with_store(redis_url, read, app_id=app)


def test_devices_idle_past_ttl_plus_margin_are_swept_and_others_kept(redis_url: str) -> None:
    """R1/R4's records are reclaimed as a key's expiry did before issue 21: a record last seen
    more than the TTL (1 day here) and the 30-day margin ago goes, a newer one stays, whatever
    bucket it is in and however many fields the sweep's HSCAN pages through."""
    now = 1_800_000_000_000
    expiry = 86_400_000 + EXPIRY_MARGIN_MS

    async def body(store: StateStore, client: RedisClient) -> tuple[int, set[str], int]:
        seen = {f"old{n}": now - expiry - 1 - n for n in range(600)}
        seen |= {f"new{n}": now - expiry + 1000 + n for n in range(600)}
        writes = [
            DeviceWrite(k, DeviceState(aid=k, last_seen_ms=at, applied={"raw/0": 1}))
            for k, at in seen.items()
        ]
        await store.save(writes, {k: {"raw/0": 1} for k in seen}, {}, {})
        swept = await store.sweep(now)
        kept = set(await store.load_devices(list(seen)))
        again = await store.sweep(now)
        assert swept.seen >= 1200 and again.seen >= 600
        return swept.removed, kept, again.removed

    removed, kept, again = with_store(redis_url, body, buckets=4)
    assert removed == 600 and again == 0
    assert kept == {f"new{n}" for n in range(600)}


def test_layout_1_records_are_moved_into_their_buckets_once(redis_url: str) -> None:
    """Records written before issue 21 (a key of their own, format 1 or 2, with a TTL) are
    found after the move with their state, version and fence; their keys are gone; the layout
    is recorded, so the next worker does not scan; another bucket count is refused."""
    saved = DeviceState(aid="a", uid="u", utraits={"plan": "pro"}, applied={"raw/0": 7})
    format_1 = b'~=41;raw/0=7\n{"a":"a","u":"u","ut":{"plan":"pro"},"s":5}'

    async def body(store: StateStore, client: RedisClient) -> tuple[Any, ...]:
        keys = store.keys
        for n in range(2500):
            await client.set(keys.legacy_device(f"d{n}"), encode_device(saved, 1000 + n), px=10**9)
        await client.set(keys.legacy_device("old"), format_1)
        await client.hset(keys.device_bucket("d0"), "d0", encode_device(saved, 5))  # newer
        moved = await store.prepare_layout()
        loaded = await store.load_devices([f"d{n}" for n in range(2500)] + ["old"])
        left = [k async for k in client.scan_iter(match=keys.legacy_device_pattern())]
        again = await store.prepare_layout()
        other = StateStore(client, KeySpace(keys.app_id, keys.device_buckets + 1), 86_400_000)
        try:
            await other.prepare_layout()
            refused = ""
        except LayoutMismatch as exc:
            refused = str(exc)
        return moved, loaded, left, again, refused

    moved, loaded, left, again, refused = with_store(redis_url, body, buckets=16)
    assert moved == 2501 and left == [] and again == 0
    assert loaded["d0"].version == 5  # the bucket's record was newer: kept
    assert {loaded[f"d{n}"].version for n in range(1, 2500)} == set(range(1001, 3500))
    assert all(loaded[f"d{n}"] == replace(saved, version=1000 + n) for n in range(1, 2500))
    assert loaded["old"].version == 41 and loaded["old"].last_seen_ms == 5
    assert dict(loaded["old"].utraits) == {"plan": "pro"} and loaded["old"].applied == {"raw/0": 7}
    assert "buckets=16" in refused and "buckets=17" in refused


def test_buckets_stay_compact_listpacks(redis_url: str) -> None:
    """With hash-max-listpack-value 1024 (the test Redis has it, as README says to set), a
    bucket of records is a listpack: what makes a device cost about half of a key's."""

    async def body(store: StateStore, client: RedisClient) -> tuple[bool | None, set[Any]]:
        writes = [DeviceWrite(f"d{n}", state(n)) for n in range(200)]
        await store.save(writes, {f"d{n}": {"raw/0": n} for n in range(200)}, {}, {})
        encodings = {await client.object("encoding", store.keys.bucket(n)) for n in range(4)}
        return await store.compact_buckets(), encodings

    compact, encodings = with_store(redis_url, body, buckets=4)
    assert compact is not False
    assert encodings == {b"listpack"}


def test_user_profile_merges_traits_and_remembers_anonymous_ids(redis_url: str) -> None:
    async def body(store: StateStore, client: RedisClient) -> tuple[Any, ...]:
        for updates in (
            [UserProfileUpdate("u", "a1", 100, {"plan": "free", "age": 3}, "d1")],
            [UserProfileUpdate("u", "a2", 300, {"plan": "pro"}), UserProfileUpdate("u", "a1", 50)],
        ):
            users, groups = coalesce_profiles(updates, [])
            await store.save([], {}, users, groups)
        return (await store.load_profiles("user", ["u"]))["u"], await client.hgetall(
            store.keys.user("u")
        )

    profile, stored = with_store(redis_url, body)
    assert profile == StoredProfile(
        {"plan": "pro", "age": 3},
        first_seen_ms=50,
        last_seen_ms=300,
        anonymous_ids={"a1": 100, "a2": 300},
        devices={"d1": 100},
        # created with its device index, so a deletion (R39) needs no scan
        lists_every_device=True,
    )
    assert profile.anonymous_ids_recent_first() == ["a2", "a1"]
    # issue 21: one hash (format 2), its fields named as profiles.lua documents
    assert stored == {
        b"t:plan": b'"pro"',
        b"t:age": b"3",
        b"f": b"50",
        b"l": b"300",
        b"a:a1": b"100",
        b"a:a2": b"300",
        b"d:d1": b"100",
        b"x": b"1",
    }


def test_r30_user_traits_are_read_alone_from_profiles_of_either_format(redis_url: str) -> None:
    """R30 reads the traits of every user a batch names: their trait fields only (format 2,
    and format 1 before its next merge), users without a profile or without traits left
    out."""

    async def body(store: StateStore, client: RedisClient) -> dict[str, dict[str, Any]]:
        updates = [
            UserProfileUpdate("new", "a1", 100, {"plan": "pro", "seats": 3}, "d1"),
            UserProfileUpdate("bare", "a2", 100, None, "d2"),
        ]
        users, groups = coalesce_profiles(updates, [])
        await store.save([], {}, users, groups)
        _, traits_key, meta_key, aids_key, _ = store.keys.profile("user", "old")
        await client.hset(traits_key, mapping={"plan": '"free"'})
        await client.hset(meta_key, mapping={"first_seen": "100", "last_seen": "200"})
        await client.zadd(aids_key, {"a0": 100})
        return await store.load_user_traits(["new", "bare", "old", "nobody", "new"])

    assert with_store(redis_url, body) == {
        "new": {"plan": "pro", "seats": 3},
        "old": {"plan": "free"},
    }


def test_a_profile_in_format_1_is_read_and_moved_into_one_hash_by_its_next_merge(
    redis_url: str,
) -> None:
    """Profiles saved before issue 21 (four keys) are still read, and the next merge moves them
    into the hash of format 2 (merged as they would have been) and deletes the four keys."""

    async def body(store: StateStore, client: RedisClient) -> tuple[Any, ...]:
        _, traits_key, meta_key, aids_key, devices_key = store.keys.profile("user", "u")
        await client.hset(traits_key, mapping={"plan": '"free"', "age": "3"})
        await client.hset(meta_key, mapping={"first_seen": "100", "last_seen": "200", "dx": "1"})
        await client.zadd(aids_key, {"a1": 100, "a0": 150})
        await client.zadd(devices_key, {"d1": 150})
        before = (await store.load_profiles("user", ["u"]))["u"]
        users, groups = coalesce_profiles(
            [UserProfileUpdate("u", "a2", 300, {"plan": "pro"}, "d2")], []
        )
        await store.save([], {}, users, groups)
        after = (await store.load_profiles("user", ["u"]))["u"]
        left = await client.exists(traits_key, meta_key, aids_key, devices_key)
        return before, after, left, await client.exists(store.keys.user("u"))

    before, after, left, hashed = with_store(redis_url, body)
    assert before == StoredProfile(
        {"plan": "free", "age": 3}, 100, 200, {"a1": 100, "a0": 150}, {"d1": 150}, True
    )
    assert before.anonymous_ids_recent_first() == ["a0", "a1"]
    assert after == StoredProfile(
        {"plan": "pro", "age": 3},
        100,
        300,
        {"a1": 100, "a0": 150, "a2": 300},
        {"d1": 150, "d2": 300},
        lists_every_device=True,
    )
    assert left == 0 and hashed == 1


def test_r35_a_profile_keeps_its_most_recent_anonymous_ids_and_devices(redis_url: str) -> None:
    async def body(store: StateStore, client: RedisClient) -> tuple[Any, ...]:
        bounded = StateStore(client, store.keys, 86_400_000, profile_max_ids=3)
        await bounded.load_scripts()
        updates = [UserProfileUpdate("u", f"a{n}", 100 + n, None, f"d{n}") for n in range(5)]
        # an older sighting of a kept id does not move it back
        updates.append(UserProfileUpdate("u", "a4", 1, None, "d4"))
        trimmed = 0
        for update in updates:
            users, groups = coalesce_profiles([update], [])
            trimmed += (await bounded.save([], {}, users, groups)).trimmed_ids
        return trimmed, (await store.load_profiles("user", ["u"]))["u"]

    trimmed, profile = with_store(redis_url, body)
    assert trimmed == 2
    assert profile.anonymous_ids == {"a2": 102, "a3": 103, "a4": 104}
    assert profile.devices == {"d2": 102, "d3": 103, "d4": 104}
    # a trimmed device list no longer names every device: a deletion scans (R39)
    assert not profile.lists_every_device


def test_keys_of_one_profile_share_a_cluster_slot() -> None:
    from redis.crc import key_slot

    keys = KeySpace("app")
    for user_id in ("u1", "we{ird}", "a}b", ""):
        profile = keys.profile("user", user_id)
        assert len({key_slot(k.encode()) for k in profile}) == 1


def test_r34_a_device_saved_by_another_worker_since_it_was_loaded_is_not_overwritten(
    redis_url: str,
) -> None:
    """Records of one device on two partitions, two workers: each loaded version 1; the first
    save wins, the second is a conflict (to be applied again), never a lost update."""

    async def body(
        store: StateStore, _: RedisClient
    ) -> tuple[SaveResult, SaveResult, DeviceState, int]:
        await store.save([DeviceWrite("d", state(1))], {"d": {"raw/0": 1}}, {}, {})
        loaded = (await store.load_devices(["d"]))["d"]
        first = DeviceState(aid="a", utraits={"from": "p0"}, applied={"raw/0": 2})
        second = DeviceState(aid="a", utraits={"from": "p1"}, applied={"raw/0": 1, "raw/1": 9})
        first_saved = await store.save(
            [DeviceWrite("d", replace(first, version=loaded.version))], {"d": {"raw/0": 2}}, {}, {}
        )
        second_saved = await store.save(
            [DeviceWrite("d", replace(second, version=loaded.version))],
            {"d": {"raw/1": 9}},
            {},
            {},
        )
        stored = (await store.load_devices(["d"]))["d"]
        return first_saved, second_saved, stored, loaded.version

    first, second, stored, loaded_version = with_store(redis_url, body)
    assert first == SaveResult()
    assert second.conflicts == {"d"} and second.refused == 0
    assert dict(stored.utraits) == {"from": "p0"} and stored.version == loaded_version + 1


def test_r34_a_device_deleted_since_it_was_loaded_is_a_conflict(redis_url: str) -> None:
    async def body(store: StateStore, client: RedisClient) -> SaveResult:
        await store.save([DeviceWrite("d", state(1))], {"d": {"raw/0": 1}}, {}, {})
        loaded = (await store.load_devices(["d"]))["d"]
        await client.hdel(store.keys.device_bucket("d"), "d")
        return await store.save(
            [DeviceWrite("d", replace(state(2), version=loaded.version))],
            {"d": {"raw/0": 2}},
            {},
            {},
        )

    assert with_store(redis_url, body).conflicts == {"d"}


def test_r37_a_delete_at_the_loaded_version_removes_the_record_and_a_stale_one_does_not(
    redis_url: str,
) -> None:
    """A device that may keep no record (R37) is deleted by the save, fenced and versioned
    like a write: at the version it was loaded at it goes; once another worker wrote the
    device since, the delete is a conflict and the newer record stays."""

    async def body(store: StateStore, _: RedisClient) -> tuple[Any, ...]:
        await store.save([DeviceWrite("gone", state(1))], {"gone": {"raw/0": 1}}, {}, {})
        await store.save([DeviceWrite("kept", state(1))], {"kept": {"raw/0": 1}}, {}, {})
        loaded = await store.load_devices(["gone", "kept"])
        newer = loaded["kept"].changed(utraits={"n": 2}, applied={"raw/0": 1, "raw/1": 5})
        await store.save([DeviceWrite("kept", newer)], {"kept": {"raw/1": 5}}, {}, {})
        deleted = await store.save(
            [
                DeviceWrite("gone", loaded["gone"], delete=True),
                DeviceWrite("kept", loaded["kept"], delete=True),
            ],
            {"gone": {"raw/0": 2}, "kept": {"raw/0": 2}},
            {},
            {},
        )
        return deleted, await store.load_devices(["gone", "kept"])

    deleted, stored = with_store(redis_url, body)
    assert deleted.conflicts == {"kept"} and deleted.refused == 0
    assert "gone" not in stored and dict(stored["kept"].utraits) == {"n": 2}


def test_a_linked_update_moves_last_seen_only_and_a_profile_without_devices_has_no_index(
    redis_url: str,
) -> None:
    """An update from a device that linked itself today writes last seen (and traits), no
    sorted set; a profile made by such updates alone does not claim to list every device (R39
    would then skip the scan for devices it does not list)."""

    async def body(store: StateStore, client: RedisClient) -> tuple[Any, ...]:
        first = [UserProfileUpdate("u", "a1", 100, None, "d1")]
        again = [UserProfileUpdate("u", "a1", 500, None, "d1", linked=True)]
        for updates in (first, again, [UserProfileUpdate("v", "a9", 7, None, "d9", linked=True)]):
            users, groups = coalesce_profiles(updates, [])
            await store.save([], {}, users, groups)
        profiles = await store.load_profiles("user", ["u", "v"])
        return profiles["u"], profiles["v"]

    linked, other = with_store(redis_url, body)
    assert (linked.first_seen_ms, linked.last_seen_ms, linked.lists_every_device) == (
        100,
        500,
        True,
    )
    assert linked.anonymous_ids == {"a1": 100} and linked.devices == {"d1": 100}
    assert (other.first_seen_ms, other.last_seen_ms) == (7, 7)
    assert not other.lists_every_device and not other.devices


def test_profile_merges_carry_any_value_exactly(redis_url: str) -> None:
    """Traits and ids reach Redis as given, whatever their characters and numbers (the merge
    travels as one JSON argument per profile, decoded in Lua)."""
    traits = {
        "big": 2**63 - 1,
        "float": 0.1 + 0.2,
        "nested": {"a": [1, "two", None, True]},
        "text": 'quote " backslash \\ newline \n nul \x00 é 😀',
        "": "empty name",
    }
    aid = 'a "odd" \\ id é 😀'
    seen = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: 15 digits, exact

    async def body(store: StateStore, client: RedisClient) -> tuple[Any, ...]:
        update = UserProfileUpdate("u é", aid, seen, traits, "device ü")
        users, groups = coalesce_profiles([update], [])
        await store.save([], {}, users, groups)
        return (
            await store.load_user_traits(["u é"]),
            (await store.load_profiles("user", ["u é"]))["u é"],
        )

    loaded, profile = with_store(redis_url, body)
    assert loaded == {"u é": traits}
    assert profile.first_seen_ms == profile.last_seen_ms == seen
    assert profile.anonymous_ids == {aid: seen} and profile.devices == {"device ü": seen}


AWKWARD_KEYS = ["", "a,b", "1 2", "line\nbreak", "é-ünïcode-🙂", "x" * 900, "3 4,5 6", "d"]
"""Device keys that the packed script arguments (a header of lengths, the keys end to end)
must carry exactly: empty, with the header's separators, multi-byte, long."""


def test_awkward_device_keys_in_shared_buckets_round_trip_and_conflict_by_their_own_index(
    redis_url: str,
) -> None:
    """Four buckets for 8 devices (several share one): each record lands under its own key, a
    conflict names the device it happened to (R34), and a missing device stays missing."""

    async def body(
        store: StateStore, client: RedisClient
    ) -> tuple[dict[str, DeviceState], SaveResult, dict[str, DeviceState]]:
        await client.ping()
        writes = [DeviceWrite(k, state(n)) for n, k in enumerate(AWKWARD_KEYS)]
        await store.save(writes, {k: {"raw/0": n} for n, k in enumerate(AWKWARD_KEYS)}, {}, {})
        loaded = await store.load_devices([*AWKWARD_KEYS, "missing"])
        # another worker changes one device in the middle: only that one is a conflict
        changed = "1 2"
        await client.hset(
            store.keys.device_bucket(changed),
            changed,
            encode_device(DeviceState(aid="a99", applied={"raw/0": 0}), version=12345),
        )
        again = [
            DeviceWrite(k, replace(state(n + 10), version=loaded[k].version))
            for n, k in enumerate(AWKWARD_KEYS)
        ]
        saved = await store.save(
            again, {k: {"raw/0": n + 10} for n, k in enumerate(AWKWARD_KEYS)}, {}, {}
        )
        return loaded, saved, await store.load_devices(AWKWARD_KEYS)

    loaded, saved, final = with_store(redis_url, body, buckets=4)
    assert len({KeySpace("x", 4).device_bucket(k) for k in AWKWARD_KEYS}) < len(AWKWARD_KEYS)
    assert {k: (s.aid, s.applied) for k, s in loaded.items()} == {
        k: (f"a{n}", {"raw/0": n}) for n, k in enumerate(AWKWARD_KEYS)
    }
    assert saved.conflicts == {"1 2"} and saved.refused == 0
    assert {k: s.aid for k, s in final.items()} == {
        k: "a99" if k == "1 2" else f"a{n + 10}" for n, k in enumerate(AWKWARD_KEYS)
    }
