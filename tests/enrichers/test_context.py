"""Options routing, per-call context traits and the context-traits policy (R23, R24, R30)."""

from __future__ import annotations

from typing import Any

from enrichers import Policy, Source, Status, enrich_event, resolve_device
from tests.enrichers.test_enrich import run
from tests.rules import raw


def only_message(**fields: Any) -> dict[str, Any]:
    _, (outcome,) = run([raw(**fields)])
    assert outcome.warehouse is not None
    return outcome.warehouse


def test_r23_user_anonymous_timestamp_and_message_id_options_go_to_the_top_level() -> None:
    message = only_message(
        type="track",
        event="e",
        options={
            "userId": "opt-user",
            "anonymousId": "opt-anon",
            "timestamp": "2024-05-05T05:05:05.000Z",
            "messageId": "opt-message",
        },
    )
    assert message["userId"] == "opt-user"
    assert message["anonymousId"] == "opt-anon"
    assert message["originalTimestamp"] == "2024-05-05T05:05:05.000Z"
    assert message["messageId"] == "opt-message"
    assert message["context"] == {}


def test_r23_options_integrations_merge_over_the_raw_ones() -> None:
    message = only_message(
        type="page",
        integrations={"All": True, "Mixpanel": False, "Amplitude": True},
        options={"integrations": {"Mixpanel": True}},
    )
    assert message["integrations"] == {"All": True, "Mixpanel": True, "Amplitude": True}


def test_r23_options_context_merges_over_the_raw_context_and_other_options_win() -> None:
    message = only_message(
        type="page",
        context={"locale": "en", "page": {"path": "/a"}, "campaign": {"name": "raw"}},
        options={
            "context": {"page": {"path": "/b"}, "campaign": {"name": "ctx"}},
            "campaign": {"name": "option"},
            "library": {"name": "custom"},
        },
    )
    assert message["context"] == {
        "locale": "en",
        "page": {"path": "/b"},
        "campaign": {"name": "option"},
        "library": {"name": "custom"},
    }


def test_r24_options_traits_replace_options_context_traits() -> None:
    message = only_message(
        type="track",
        event="e",
        context={"traits": {"a": 1}},
        options={"traits": {"b": 2}, "context": {"traits": {"c": 3}}},
    )
    assert message["context"]["traits"] == {"b": 2}


def test_r24_context_traits_are_per_call_never_stored() -> None:
    _, (first, second) = run(
        [
            raw(type="identify", userId="u", options={"traits": {"plan": "pro"}}),
            raw(type="track", event="e"),
        ]
    )
    assert first.warehouse and second.warehouse
    assert first.warehouse["context"]["traits"] == {"plan": "pro"}
    assert first.warehouse["traits"] == {}  # R16: options.traits are not identify traits
    assert "traits" not in second.warehouse["context"]


def test_r26_explicit_ip_is_given_on_every_call_nothing_remembered() -> None:
    _, (first, second) = run([raw(type="page", options={"ip": "198.51.100.1"}), raw(type="page")])
    assert first.warehouse and second.warehouse
    assert first.warehouse["context"]["ip"] == "198.51.100.1"
    assert "ip" not in second.warehouse["context"]


# R30: the context-traits policy

PLAN = Policy(context_traits=("plan",))
ALL = Policy(context_traits=("*",))


def test_r30_off_by_default_cached_traits_stay_out_of_context() -> None:
    _, outcomes = run(
        [raw(type="identify", userId="u", traits={"plan": "pro"}), raw(type="track", event="e")]
    )
    assert outcomes[1].warehouse and "traits" not in outcomes[1].warehouse["context"]


def test_r30_anonymous_device_cache_fills_named_keys() -> None:
    _, outcomes = run(
        [
            raw(type="setUserTraits", value={"plan": "free", "email": "a@b"}),
            raw(type="track", event="e"),
        ],
        policy=PLAN,
    )
    assert outcomes[1].warehouse
    assert outcomes[1].warehouse["context"]["traits"] == {"plan": "free"}


def test_r30_identified_user_profile_fills_keys_and_call_keys_win() -> None:
    profiles = {"u1": {"plan": "enterprise", "email": "x@y", "seats": 9}}
    state, _ = run([raw(type="identify", userId="u1", traits={"plan": "device-cache"})])

    def track(policy: Policy, **options: Any) -> dict[str, Any]:
        event = raw(type="track", event="e", options=options)
        source = Source("events.raw", 0, 50, "device-1", 0)
        outcome = enrich_event(
            state, event, resolve_device(event, source), source, policy, profiles
        )
        assert outcome.status is Status.MESSAGE and outcome.warehouse
        return outcome.warehouse

    assert track(PLAN)["context"]["traits"] == {"plan": "enterprise"}
    assert track(ALL)["context"]["traits"] == profiles["u1"]
    assert track(PLAN, traits={"plan": "given", "x": 1})["context"]["traits"] == {
        "plan": "given",
        "x": 1,
    }


def test_r30_identify_messages_are_left_alone() -> None:
    _, (_, identify) = run(
        [raw(type="setUserTraits", value={"plan": "free"}), raw(type="identify", userId="u")],
        policy=PLAN,
    )
    assert identify.warehouse is not None
    assert identify.warehouse["traits"] == {"plan": "free"}
    assert "traits" not in identify.warehouse["context"]


def test_r30_destinations_still_never_see_context_traits() -> None:
    _, outcomes = run(
        [raw(type="setUserTraits", value={"plan": "free"}), raw(type="page")], policy=PLAN
    )
    assert outcomes[1].warehouse and outcomes[1].destinations
    assert outcomes[1].warehouse["context"]["traits"] == {"plan": "free"}
    assert "traits" not in outcomes[1].destinations["context"]
