"""The device record's format (streams/state/store.py): format 2 round-trips every state,
records of format 1 (written before format 2 existed) are still read and saved over, and
format 2 is the smaller one."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrichers import DeviceState
from enrichers.state import packed_digests
from enrichers.timestamps import MAX_MS, MIN_MS
from streams.state.keys import KeySpace
from streams.state.redis_client import connect
from streams.state.store import VERSION, DeviceWrite, StateStore, decode_device, encode_device

ids = st.one_of(st.none(), st.text(max_size=40), st.uuids().map(str))
int64 = st.integers(-(2**63), 2**63 - 1)  # orjson writes 64-bit integers (R35 keeps the rest out)
traits = st.dictionaries(st.text(max_size=8), st.one_of(int64, st.text(max_size=8)))
states = st.builds(
    DeviceState,
    aid=st.one_of(ids, st.uuids().map(lambda u: str(u).upper())),
    uid=ids,
    utraits=traits,
    gid=ids,
    gtraits=traits,
    last_seen_ms=st.one_of(st.none(), st.integers(MIN_MS, MAX_MS)),
    recent=st.lists(st.integers(0, 2**52 - 1), max_size=64).map(packed_digests),
    generated=st.integers(0, 2**31),
    applied=st.dictionaries(st.from_regex(r"[a-z.]{1,12}/\d{1,3}", fullmatch=True), st.integers(0)),
    consent=st.one_of(st.none(), st.dictionaries(st.text(max_size=6), st.booleans())),
    version=st.integers(0, 2**50),
)


@settings(max_examples=300, deadline=None)
@given(states)
def test_format_2_round_trips_every_state(state: DeviceState) -> None:
    record = encode_device(state)
    assert b";#=2" in record.partition(b"\n")[0]
    decoded = decode_device(record)
    assert decoded == state  # every field (the version is not compared)
    assert decoded.version == (state.version + 1 if state.version else decoded.version)
    assert decoded.version > 0
    # saved again as loaded (a UUID anonymousId packed from what its decoding kept): same bytes
    assert encode_device(decoded, decoded.version) == record


def format_1(state: DeviceState, version: int) -> bytes:
    """A record as the worker wrote it before format 2: every field in the JSON."""
    import orjson

    document = state.to_json()
    fence = document.pop("o", {})
    head = ";".join([f"{VERSION}={version}"] + [f"{k}={v}" for k, v in fence.items()])
    return head.encode() + b"\n" + orjson.dumps(document)


AID = "349b322b-1798-47b9-8091-7e31b53a404b"
SEEN = DeviceState(
    aid=AID,
    uid="user-1",
    utraits={"email": "a@example.com"},
    last_seen_ms=1_795_946_452_702,
    recent=packed_digests((1659544643791174, 4185494960153980, 1230133020310935)),
    generated=1,
    applied={"events.raw/3": 10299},
)


def test_a_format_1_record_is_read_and_a_save_over_it_writes_format_2(redis_url: str) -> None:
    old = format_1(SEEN, 77)
    assert decode_device(old) == SEEN and decode_device(old).version == 77

    async def run() -> tuple[DeviceState, bytes]:
        client = connect(redis_url)
        try:
            store = StateStore(client, KeySpace(f"t-{uuid.uuid4().hex[:8]}"), 86_400_000)
            await client.hset(store.keys.device_bucket("d"), "d", old)
            loaded = (await store.load_devices(["d"]))["d"]
            fence = {"events.raw/3": 10300}
            changed = DeviceState(**{**_fields(loaded), "uid": "user-2", "applied": fence})
            result = await store.save(
                [DeviceWrite("d", changed)], {"d": {"events.raw/3": 10300}}, {}, {}
            )
            assert result.refused == 0 and not result.conflicts
            return (await store.load_devices(["d"]))["d"], await client.hget(
                store.keys.device_bucket("d"), "d"
            )
        finally:
            await client.aclose()

    reloaded, stored = asyncio.run(run())
    assert reloaded.uid == "user-2" and reloaded.aid == AID and reloaded.recent == SEEN.recent
    assert reloaded.applied == {"events.raw/3": 10300} and reloaded.version == 78
    assert b";#=2;" in stored


def _fields(state: DeviceState) -> dict[str, object]:
    return {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}


def test_format_2_is_smaller_and_holds_no_anonymous_id_in_clear() -> None:
    new, old = encode_device(SEEN), format_1(SEEN, 77)
    assert len(new) < 0.75 * len(old), (len(new), len(old))
    assert AID.encode() not in new


@pytest.mark.parametrize(
    "aid",
    [
        "12345678-1234-1234-1234-123456789012",  # digits only
        AID.upper(),
        f" {AID[1:]}",  # whitespace, which bytes.fromhex skips
        f"  {AID[2:]}",
        f"{AID[:32]}-04b",  # a fifth dash
        f"{AID[:35]}g",
        AID.replace("-", "_"),
    ],
)
def test_only_a_lowercase_uuid_is_packed_every_other_anonymous_id_round_trips(aid: str) -> None:
    """Format 2 packs an anonymousId that is a lowercase UUID into 16 bytes (chosen by its
    shape, issue 21); what only looks like one stays in the JSON, exactly as given."""
    record = encode_device(SEEN.changed(aid=aid))
    assert decode_device(record).aid == aid
    assert aid.encode() in record
    assert AID.encode() not in encode_device(SEEN)


BODY = b'{"u":"user-1","ut":{"note":";events.raw/3=99999999"}}'
"""A record's JSON holding what looks like a fence entry: only the head is the fence."""


@pytest.mark.parametrize(
    ("head", "advanced", "written"),
    [
        ("~=77;#=2;events.raw/3=10299", {"events.raw/3": 10299}, False),
        ("~=77;#=2;events.raw/3=10299", {"events.raw/3": 10300}, True),
        # another stream's name begins with ours: each is its own
        ("~=77;#=2;events.raw/30=99999;events.raw/3=10", {"events.raw/3": 11}, True),
        ("~=77;#=2;events.raw/3=10;events.raw/30=99999", {"events.raw/30": 500}, False),
        ("~=77;#=2", {"events.raw/3": 5}, True),  # only the body names the stream
        # every stream advanced is checked, the stale one refuses the whole device
        ("~=77;#=2;a/0=5;b/1=9", {"a/0": 6, "b/1": 9}, False),
        ("~=77;#=2;a/0=5;b/1=9", {"a/0": 6, "b/1": 10}, True),
        ("~=77;events.raw/3=10299", {"events.raw/3": 10299}, False),  # format 1's head
        # a head in another order (the version not first) is read field by field
        ("events.raw/3=10299;~=77", {"events.raw/3": 10299}, False),
        ("events.raw/3=10299;~=77", {"events.raw/3": 10300}, True),
    ],
)
def test_r34_the_fence_is_the_stored_heads_offset_of_each_stream_advanced(
    redis_url: str, head: str, advanced: dict[str, int], written: bool
) -> None:
    """save_devices.lua refuses a device whose stored head has an offset at or beyond the
    batch's for any stream the batch advanced (a newer owner wrote it), and writes it over the
    version it was loaded at otherwise."""
    packed = b"\n\x00" if ";#=2" in head else b""  # format 2: a flags byte, nothing packed
    stored = head.encode() + b"\n" + BODY + packed

    async def run() -> tuple[int, bytes]:
        client = connect(redis_url)
        try:
            store = StateStore(client, KeySpace(f"t-{uuid.uuid4().hex[:8]}"), 86_400_000)
            bucket = store.keys.device_bucket("d")
            await client.hset(bucket, "d", stored)
            loaded = (await store.load_devices(["d"]))["d"]
            assert loaded.version == 77
            state = loaded.changed(uid="user-2", applied={**loaded.applied, **advanced})
            result = await store.save([DeviceWrite("d", state)], {"d": advanced}, {}, {})
            assert not result.conflicts
            return result.refused, await client.hget(bucket, "d")
        finally:
            await client.aclose()

    refused, after = asyncio.run(run())
    assert refused == (0 if written else 1)
    assert (after != stored) == written
    if written:
        assert decode_device(after).uid == "user-2" and decode_device(after).version == 78
