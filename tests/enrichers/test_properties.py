"""Property tests over random call sequences (the whole call vocabulary of CONTRACT.md)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rules import Rules, parsed

ids = st.sampled_from(["u1", "u2", "", 0, 7, None])
anon_values = st.sampled_from(["a-x", "a-y", "", 0, 5, None, False])
traits = st.one_of(
    st.none(), st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=2)
)
options = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "anonymousId": anon_values,
            "userId": st.sampled_from(["opt-u", 3]),
            "traits": traits,
            "ip": st.sampled_from(["1.2.3.4", ""]),
        },
    ),
)


def call(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    match kind:
        case "identify":
            return st.builds(
                lambda i, t, o: {"type": kind, "userId": i, "traits": t, "options": o},
                ids,
                traits,
                options,
            )
        case "group":
            return st.builds(
                lambda i, t, o: {"type": kind, "groupId": i, "traits": t, "options": o},
                st.sampled_from(["g1", "g2", "", 9, None]),
                traits,
                options,
            )
        case "alias":
            return st.builds(
                lambda i, p, o: {"type": kind, "userId": i, "previousId": p, "options": o},
                st.sampled_from(["u1", "u3", 4]),
                st.sampled_from(["p", None]),
                options,
            )
        case "track":
            return st.builds(lambda o: {"type": kind, "event": "E", "options": o}, options)
        case "page":
            return st.builds(lambda o: {"type": kind, "name": "Home", "options": o}, options)
        case "setAnonymousId":
            return st.builds(lambda v: {"type": kind, "value": v}, anon_values)
        case "setUserId":
            return st.builds(lambda v: {"type": kind, "value": v}, ids)
        case "setGroupId":
            return st.builds(
                lambda v: {"type": kind, "value": v}, st.sampled_from(["g1", "", None])
            )
        case "setUserTraits" | "setGroupTraits":
            return st.builds(lambda v: {"type": kind, "value": v}, traits)
    return st.just({"type": kind})


KINDS = [
    "identify",
    "track",
    "page",
    "group",
    "alias",
    "reset",
    "forget",
    "expireCookies",
    "setAnonymousId",
    "setUserId",
    "setUserTraits",
    "setGroupId",
    "setGroupTraits",
]
sequences = st.lists(st.sampled_from(KINDS).flatmap(call), min_size=1, max_size=25)


def run(calls: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """One message (or None for no message) per call, one device."""
    rules = Rules()
    return [
        rules.apply(
            parsed({**body, "messageId": f"m{offset}"}),
            "device",
            offset,
            1_700_000_000_000 + offset,
        ).warehouse
        for offset, body in enumerate(calls)
    ]


def explicit_aid(body: dict[str, Any]) -> Any:
    value = (body.get("options") or {}).get("anonymousId")
    return None if value in ("", 0, None, False) else str(value)


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_every_message_has_an_anonymous_id(calls: list[dict[str, Any]]) -> None:
    for message in run(calls):
        if message is not None:
            assert isinstance(message["anonymousId"], str) and message["anonymousId"]


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_after_forget_or_reset_the_next_generated_id_is_new(calls: list[dict[str, Any]]) -> None:
    messages = run(calls)
    seen: set[str] = set()
    cleared = False
    for body, message in zip(calls, messages, strict=True):
        if body["type"] in ("reset", "forget"):
            cleared = True
        elif body["type"] == "setAnonymousId":
            cleared = False  # the next id is the one set, not a generated one
        elif message is not None:
            aid = message["anonymousId"]
            if cleared and explicit_aid(body) is None:
                assert aid not in seen
            cleared = False
            seen.add(aid)


CHANGES_AID = {"reset", "forget", "setAnonymousId", "setUserId", "identify"}


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_r6_explicit_anonymous_id_sticks_until_something_changes_it(
    calls: list[dict[str, Any]],
) -> None:
    messages = run(calls)
    current: str | None = None
    for body, message in zip(calls, messages, strict=True):
        explicit = explicit_aid(body)
        if explicit is not None:
            assert message is not None and message["anonymousId"] == explicit
            current = explicit
        elif body["type"] in CHANGES_AID:
            current = None
        elif message is not None and current is not None:
            assert message["anonymousId"] == current
