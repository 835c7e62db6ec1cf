"""Hostile input through the pure core, property-based: whatever the bytes, the result is a
rejection with a code or messages that serialise, and nothing raises."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from enrichers import (
    Rejection,
    Status,
    parse_raw_event,
)
from enrichers.raw import CONTROL_TYPES, MESSAGE_TYPES
from tests.rules import Rules

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "properties",
    "traits",
    "groupId",
    "previousId",
    "context",
    "integrations",
    "options",
    "timestamp",
    "sentAt",
    "receivedAt",
    "messageId",
    "value",
    "requestIp",
    "category",
]
events = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(MESSAGE_TYPES | CONTROL_TYPES)) | json_values},
    optional={name: json_values for name in FIELDS if name != "type"},
)


def process(value: bytes, key: str | None) -> None:
    parsed = parse_raw_event(value)
    if isinstance(parsed, Rejection):
        assert parsed.code and parsed.message
        return
    outcome = Rules().apply(parsed, key, 0, 1_700_000_000_000)
    if outcome.status is Status.MESSAGE:
        assert outcome.warehouse is not None
        message = orjson.loads(orjson.dumps(outcome.warehouse))
        assert isinstance(message["anonymousId"], str) and message["anonymousId"]
        assert message["type"] == parsed.type
        orjson.dumps(outcome.destinations)
    orjson.dumps(outcome.state.to_json())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.none() | st.text(max_size=20))
def test_random_bytes(value: bytes, key: str | None) -> None:
    process(value, key)


@settings(max_examples=300, deadline=None)
@given(events, st.none() | st.text(max_size=20))
def test_objects_with_any_types_in_any_field(event: dict[str, Any], key: str | None) -> None:
    process(json.dumps(event).encode(), key)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3000))
def test_deep_nesting(depth: int) -> None:
    value = b'{"type":"track","event":"e","properties":' + b'{"a":' * depth + b"1"
    process(value + b"}" * depth + b"}", "k")


objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
ids = (
    st.none()
    | st.text(max_size=40)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)
well_typed = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(MESSAGE_TYPES | CONTROL_TYPES)), "event": st.text(min_size=1)},
    optional={
        "userId": ids,
        "anonymousId": ids,
        "groupId": ids,
        "previousId": ids,
        "traits": objects,
        "properties": objects,
        "context": objects,
        "integrations": objects,
        "options": st.fixed_dictionaries(
            {},
            optional={
                "anonymousId": ids,
                "userId": ids,
                "traits": objects,
                "context": objects,
                "ip": json_values,
                "integrations": objects,
                "timestamp": st.text(max_size=30),
            },
        ),
        "timestamp": st.text(max_size=30),
        "sentAt": st.text(max_size=30),
        "receivedAt": st.text(max_size=30),
        "messageId": st.text(max_size=40),
        "requestIp": st.text(max_size=40),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(well_typed, min_size=1, max_size=8), st.none() | st.text(max_size=20))
def test_well_typed_hostile_values_give_messages(
    sequence: list[dict[str, Any]], key: str | None
) -> None:
    """Valid shapes with hostile values: every message event gives a message, in sequence."""
    rules = Rules()
    for offset, event in enumerate(sequence):
        parsed = parse_raw_event(json.dumps(event).encode())
        if isinstance(parsed, Rejection):  # e.g. a surrogate or a bad nested option type
            continue
        outcome = rules.apply(parsed, key, offset, 1_700_000_000_000)
        if parsed.type in MESSAGE_TYPES and outcome.status is not Status.DUPLICATE:
            assert outcome.status is Status.MESSAGE
            assert outcome.warehouse is not None
            orjson.dumps(outcome.warehouse)
