"""DeviceState.changed: what ``dataclasses.replace`` does, compiled (issue 21)."""

from __future__ import annotations

import dataclasses

import pytest

from enrichers.state import DeviceState, packed_digests, recent_digests

FULL = DeviceState(
    aid="a-1",
    uid="u-1",
    utraits={"email": "x@example.com"},
    gid="g-1",
    gtraits={"plan": "pro"},
    last_seen_ms=1_764_410_000_000,
    recent=packed_digests((1, 2, 3)),
    generated=2,
    applied={"events.raw/0": 41},
    consent={"analytics": True},
    version=7,
)
OTHER: dict[str, object] = {
    "aid": None,
    "uid": "u-2",
    "utraits": {},
    "gid": None,
    "gtraits": {"plan": "free"},
    "last_seen_ms": None,
    "recent": b"",
    "generated": 0,
    "applied": {"events.raw/1": 3},
    "consent": None,
    "version": 8,
}


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(DeviceState)])
def test_changed_changes_one_field_and_keeps_the_others(name: str) -> None:
    changed = FULL.changed(**{name: OTHER[name]})  # type: ignore[arg-type]
    assert changed == dataclasses.replace(FULL, **{name: OTHER[name]})
    assert changed.version == (OTHER["version"] if name == "version" else FULL.version)
    for field in dataclasses.fields(DeviceState):
        expected = OTHER[field.name] if field.name == name else getattr(FULL, field.name)
        assert getattr(changed, field.name) == expected, field.name


def test_changed_with_nothing_is_an_equal_copy_and_the_original_stays() -> None:
    assert FULL.changed() == FULL
    FULL.changed(uid=None, aid=None)
    assert FULL.uid == "u-1" and FULL.aid == "a-1"


def test_without_identity_keeps_the_bookkeeping() -> None:
    """R3, R4, R10, R37: ids, traits and consent go; last seen, recent ids, the generation
    count, the applied offsets and the version stay."""
    emptied = FULL.without_identity()
    assert not emptied.has_identity and emptied.consent is None
    assert (emptied.last_seen_ms, emptied.recent, emptied.generated) == (
        FULL.last_seen_ms,
        FULL.recent,
        FULL.generated,
    )
    assert emptied.applied == FULL.applied and emptied.version == FULL.version


def test_the_recent_window_is_its_digests_as_8_byte_numbers_in_json() -> None:
    """R33: the window is held as stored (8 big-endian bytes a digest); its JSON form (and
    format 1 of the device record) lists the numbers, and reads back the same."""
    assert FULL.recent == bytes.fromhex("000000000000000100000000000000020000000000000003")
    assert recent_digests(FULL.recent) == [1, 2, 3]
    assert FULL.to_json()["r"] == [1, 2, 3]
    assert DeviceState.from_json(FULL.to_json()).recent == FULL.recent
