"""R39's pure parts: what a regulation is, which ids of an event it concerns, the digests."""

from __future__ import annotations

import hashlib

import pytest

from enrichers import Placeholders
from enrichers.hygiene import DEFAULT_PLACEHOLDERS
from enrichers.regulations import (
    MAX_IDS,
    Digests,
    InvalidRegulation,
    RegulationIds,
    event_ids,
    parse_regulation,
    raw_ids,
)

PLACEHOLDERS = Placeholders.of(DEFAULT_PLACEHOLDERS)
DIGESTS = Digests.from_secret(b"k")


def ids_of(**named: list[object]) -> RegulationIds:
    ids = RegulationIds()
    ids.add_body(named, PLACEHOLDERS)
    return ids


def test_r39_a_regulation_round_trips_through_its_topic_record() -> None:
    ids = ids_of(userIds=["u1", 42], anonymousIds=["a1"], devices=["d1"])
    (regulation,) = ids.regulations("delete-and-suppress", iter(["r1"]), 1_700_000_000_000)
    assert regulation.user_ids == ("u1", "42")  # numbers as JavaScript writes them
    assert parse_regulation(regulation.to_json()) == regulation
    assert regulation.suppresses and regulation.deletes and not regulation.unsuppresses
    assert regulation.counts() == {"userIds": 2, "anonymousIds": 1, "devices": 1}


def test_r39_a_long_list_becomes_several_regulations_each_id_once() -> None:
    ids = ids_of(userIds=[f"u{n}" for n in range(MAX_IDS + 5)] + ["u0"])
    regulations = ids.regulations("delete", iter(["r1", "r2"]), 0)
    assert [len(r.user_ids) for r in regulations] == [MAX_IDS, 5]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"userIds": [""]}, "non-empty"),
        ({"userIds": [None]}, "non-empty"),
        ({"userIds": [{"a": 1}]}, "non-empty"),
        ({"userIds": ["x" * 1001]}, "over 1000"),
        ({"userIds": "u1"}, "must be a list"),
        ({"anonymousIds": ["undefined"]}, "placeholder"),
    ],
)
def test_r39_ids_that_name_nobody_are_refused(body: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidRegulation, match=problem):
        ids_of(**body)  # type: ignore[arg-type]


def test_r39_a_regulation_has_a_known_type_and_an_id() -> None:
    with pytest.raises(InvalidRegulation, match="type"):
        ids_of(userIds=["u1"]).regulations("erase", iter(["r"]), 0)
    with pytest.raises(InvalidRegulation, match="at least one id"):
        RegulationIds().regulations("delete", iter(["r"]), 0)
    with pytest.raises(InvalidRegulation, match='"id"'):
        parse_regulation({"type": "delete"})


def test_r39_file_lines_name_one_kind_of_id() -> None:
    ids = RegulationIds()
    ids.add_line({"userId": "u1"}, PLACEHOLDERS)
    ids.add_line({"device": "d1"}, PLACEHOLDERS)
    assert (ids.user_ids, ids.devices) == (["u1"], ["d1"])
    with pytest.raises(InvalidRegulation):
        ids.add_line({"email": "x@y"}, PLACEHOLDERS)
    with pytest.raises(InvalidRegulation):
        ids.add_line(["u1"], PLACEHOLDERS)


def test_r39_digests_depend_on_the_kind_the_id_and_the_key() -> None:
    assert DIGESTS.of("userId", "x") == DIGESTS.of("userId", "x")
    assert DIGESTS.of("userId", "x") != DIGESTS.of("anonymousId", "x")
    assert DIGESTS.of("userId", "x") != Digests.from_secret(b"other").of("userId", "x")
    assert b"x" not in DIGESTS.of("userId", "x") and len(DIGESTS.of("device", "x")) == 16
    assert DIGESTS.fingerprint != Digests.from_secret(b"other").fingerprint


def test_r39_digests_are_keyed_blake2b_however_often_an_id_comes_back() -> None:
    """The suppression list holds digests written before the digests of recent ids were kept
    in memory (issue 21): each stays the keyed BLAKE2b of the kind and the id."""
    digests = Digests.from_secret(b"k")
    for _ in range(2):  # computed, then remembered
        for kind, prefix in (("userId", b"u"), ("anonymousId", b"a"), ("device", b"d")):
            for identifier in ("x", "user-1", "\udcff"):
                named = prefix + b"\0" + identifier.encode("utf-8", "surrogatepass")
                expected = hashlib.blake2b(named, key=digests.key, digest_size=16).digest()
                assert digests.of(kind, identifier) == expected


def test_r39_an_event_is_checked_by_device_user_anonymous_and_stored_user_ids() -> None:
    fields = {"userId": 7, "anonymousId": "a1"}
    assert event_ids(fields, "d1", "stored") == [
        ("device", "d1"),
        ("userId", "7"),
        ("anonymousId", "a1"),
        ("userId", "stored"),
    ]
    assert event_ids({"userId": ""}, "d1", None) == [("device", "d1")]


def test_r39_a_malformed_record_is_checked_by_the_ids_it_carries() -> None:
    assert raw_ids({"anonymousId": "a1", "userId": "u1"}, None) == [
        ("userId", "u1"),
        ("anonymousId", "a1"),
        ("device", "a1"),  # the device key it would have
    ]
    assert raw_ids("not an object", "k") == [("device", "k")]
    assert raw_ids(None, None) == []
