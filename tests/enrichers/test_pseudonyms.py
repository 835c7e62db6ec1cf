"""R38: pseudonymised fields equal HMAC-SHA256(key, value) on the outputs that name them."""

from __future__ import annotations

import hashlib
import hmac

from enrichers import Policy
from tests.rules import Rules, raw

KEY = b"pii-key-for-tests"


def digest(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


def test_r38_named_fields_are_digests_on_their_output_and_clear_on_the_other() -> None:
    policy = Policy(
        pii_destinations=("traits.email", "userId", "context.traits.phone", "traits.age"),
        pii_key=KEY,
    )
    outcome = Rules(policy).apply(
        raw(
            type="identify",
            userId="u-1",
            traits={"email": "a@example.com", "age": 42, "nested": {"x": 1}},
            context={"traits": {"phone": "+1 555"}},
        ),
        "d",
        0,
    )
    assert outcome.destinations is not None and outcome.warehouse is not None
    assert outcome.destinations["traits"]["email"] == digest("a@example.com")
    assert outcome.destinations["traits"]["age"] == digest("42")  # numbers as JSON writes them
    assert outcome.destinations["userId"] == digest("u-1")
    assert outcome.warehouse["traits"]["email"] == "a@example.com"  # clear on the warehouse
    assert outcome.warehouse["context"]["traits"]["phone"] == "+1 555"
    assert outcome.warehouse["userId"] == "u-1"


def test_r38_the_same_value_gives_the_same_digest_and_absent_fields_stay_absent() -> None:
    policy = Policy(pii_warehouse=("properties.email", "properties.missing"), pii_key=KEY)
    rules = Rules(policy)
    one = rules.apply(raw(type="track", event="e", properties={"email": "x@y"}), "d", 0)
    two = rules.apply(raw(type="track", event="e", properties={"email": "x@y"}), "e", 1)
    assert one.warehouse is not None and two.warehouse is not None
    assert one.warehouse["properties"]["email"] == two.warehouse["properties"]["email"]
    assert "missing" not in one.warehouse["properties"]
