"""R36: placeholder identifiers are absent."""

from __future__ import annotations

import pytest

from enrichers import DEFAULT_POLICY, Placeholders, Policy, Source, Status, prepare_event
from tests.rules import Rules, raw


def test_r36_identify_undefined_then_u1_does_not_rotate_and_names_one_user() -> None:
    rules = Rules()
    first = rules.apply(raw(type="identify", userId="undefined", traits={"a": 1}), "d", 0)
    second = rules.apply(raw(type="identify", userId="u1"), "d", 1)
    assert first.warehouse is not None and first.warehouse["userId"] is None
    assert first.user_update is None  # never linked to a profile
    assert second.identity is not None and not second.identity.rotated
    assert second.warehouse is not None
    assert second.warehouse["anonymousId"] == first.warehouse["anonymousId"]
    assert second.user_update is not None and second.user_update.user_id == "u1"
    assert rules.states["d"].uid == "u1"


@pytest.mark.parametrize("value", ["null", " Undefined ", "[object Object]", "NaN", "guest"])
def test_r36_a_placeholder_is_never_stored_nor_sent(value: str) -> None:
    rules = Rules()
    outcome = rules.apply(
        raw(type="track", event="e", userId=value, anonymousId=value, options={"userId": value}),
        "d",
        0,
    )
    assert outcome.warehouse is not None
    assert outcome.warehouse["userId"] is None
    assert outcome.warehouse["anonymousId"] != value  # the generated one instead
    rules.apply(raw(type="setUserId", value=value), "d", 1)
    rules.apply(raw(type="setAnonymousId", value=value), "d", 2)
    state = rules.states["d"]
    assert state.uid is None and state.aid == outcome.warehouse["anonymousId"]


def test_r36_a_placeholder_is_never_a_device_key() -> None:
    event = raw(type="track", event="e", anonymousId="undefined", userId="u-7")
    prepared = prepare_event(event, Source("events.raw", 0, 0, "null", 0), DEFAULT_POLICY)
    assert prepared.device.key == "u-7"
    assert sorted(prepared.blocked) == ["(record key)", "undefined"]


@pytest.mark.parametrize("value", ["", 0, "0", "u-undefined"])
def test_r36_empty_strings_and_numbers_are_not_placeholders(value: object) -> None:
    outcome = Rules().apply(raw(type="identify", userId=value), "d", 0)
    assert outcome.status is Status.MESSAGE
    assert Placeholders().label(value) is None


def test_r36_the_list_and_a_pattern_are_configurable_and_the_rule_can_be_off() -> None:
    custom = Policy(placeholders=Placeholders.of(("nobody",), r"test-\d+"))
    rules = Rules(custom)
    a = rules.apply(raw(type="identify", userId="NOBODY"), "a", 0)
    b = rules.apply(raw(type="identify", userId="test-42"), "b", 1)
    c = rules.apply(raw(type="identify", userId="undefined"), "c", 2)  # not listed any more
    assert a.warehouse is not None and a.warehouse["userId"] is None
    assert b.warehouse is not None and b.warehouse["userId"] is None
    assert c.warehouse is not None and c.warehouse["userId"] == "undefined"
    off = Rules(Policy(placeholders=Placeholders.of(())))
    kept = off.apply(raw(type="identify", userId="undefined"), "d", 0)
    assert kept.warehouse is not None and kept.warehouse["userId"] == "undefined"
