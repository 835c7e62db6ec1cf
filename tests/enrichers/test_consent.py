"""R37: consent is device state, filled into later messages and enforced at every output."""

from __future__ import annotations

from typing import Any

from enrichers import Policy, Status
from tests.rules import Rules, raw


def consent(**categories: bool) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": categories}}


def prefs(message: dict[str, Any] | None) -> Any:
    assert message is not None
    return message["context"].get("consent", {}).get("categoryPreferences")


MAPPED = Policy(destinations_consent=("marketing",))


def test_r37_consent_given_once_is_filled_into_later_messages_and_honoured() -> None:
    rules = Rules(MAPPED)
    given = rules.apply(raw(type="page", context=consent(marketing=True, analytics=True)), "d", 0)
    later = rules.apply(raw(type="track", event="e"), "d", 1)
    assert prefs(given.warehouse) == {"marketing": True, "analytics": True}
    assert prefs(later.warehouse) == {"marketing": True, "analytics": True}  # filled in
    assert later.destinations is not None  # marketing consented: reaches the destinations


def test_r37_a_calls_own_preferences_win_and_replace_the_remembered() -> None:
    rules = Rules(MAPPED)
    rules.apply(raw(type="page", context=consent(marketing=True)), "d", 0)
    withdrawn = rules.apply(raw(type="track", event="e", context=consent(marketing=False)), "d", 1)
    after = rules.apply(raw(type="track", event="e"), "d", 2)
    assert withdrawn.destinations is None and after.destinations is None
    assert withdrawn.warehouse is not None and after.warehouse is not None  # warehouse unmapped
    assert prefs(after.warehouse) == {"marketing": False}


def test_r37_a_missing_category_is_false_and_unmapped_outputs_get_everything() -> None:
    mapped = Rules(MAPPED).apply(
        raw(type="track", event="e", context=consent(analytics=True)), "d", 0
    )
    assert mapped.destinations is None
    unmapped = Rules().apply(raw(type="track", event="e"), "d", 0)
    assert unmapped.destinations is not None


def test_r37_reset_and_forget_clear_the_preferences() -> None:
    for clearing in ("reset", "forget"):
        rules = Rules(MAPPED)
        rules.apply(raw(type="page", context=consent(marketing=True)), "d", 0)
        rules.apply(raw(type=clearing), "d", 1)
        after = rules.apply(raw(type="track", event="e"), "d", 2)
        assert prefs(after.warehouse) is None and after.destinations is None


GATED = Policy(identity_consent="identity")


def test_r37_without_identity_consent_a_device_keeps_no_record() -> None:
    rules = Rules(GATED)
    first = rules.apply(raw(type="identify", userId="u1", traits={"email": "a@b"}), "d", 0)
    second = rules.apply(raw(type="track", event="e"), "d", 1)
    assert first.status is Status.MESSAGE and not first.keeps_record
    assert first.user_update is None  # nothing linked to a profile
    assert first.warehouse is not None and first.warehouse["userId"] == "u1"  # the call's id
    assert second.warehouse is not None and second.warehouse["userId"] is None  # not stored
    assert first.warehouse["anonymousId"] != second.warehouse["anonymousId"]  # per message
    assert not second.keeps_record and "d" not in rules.states


def test_r37_with_identity_consent_the_device_is_remembered() -> None:
    rules = Rules(GATED)
    rules.apply(raw(type="identify", userId="u1", context=consent(identity=True)), "d", 0)
    later = rules.apply(raw(type="track", event="e"), "d", 1)
    assert later.keeps_record and later.warehouse is not None
    assert later.warehouse["userId"] == "u1"
