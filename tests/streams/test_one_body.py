"""One serialisation for both outputs (issue 21): when the destinations message is the
warehouse message less ``_enrichment`` (no ``context.traits`` to take out, R25; one IP policy
for both, R28; nothing pseudonymised, R38), the worker serialises it once and writes the
warehouse value from it. That value must be the bytes serialising the warehouse message gives,
for every conformance scenario under every policy that allows it, and the shortcut must not be
taken where the two messages differ."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from enrichers import IpPolicy, Policy, Status
from streams.worker.batch import with_enrichment
from tests.conformance import load_scenarios
from tests.rules import Rules, parsed

SCENARIOS = load_scenarios()
KEY = b"k" * 32

POLICIES = {
    "default": Policy(),
    "truncate both": Policy(
        ip_warehouse=IpPolicy.parse("truncate"), ip_destinations=IpPolicy.parse("truncate")
    ),
    "drop both": Policy(
        ip_warehouse=IpPolicy.parse("drop"), ip_destinations=IpPolicy.parse("drop")
    ),
    "context traits": Policy(context_traits=("*",)),
    "truncate / mask": Policy(
        ip_warehouse=IpPolicy.parse("truncate"), ip_destinations=IpPolicy.parse("mask")
    ),
    "pseudonymised": Policy(pii_destinations=("context.ip",), pii_key=KEY),
}


def outcomes(policy: Policy) -> list[tuple[dict[str, Any], dict[str, Any] | None, bool]]:
    found = []
    for scenario in SCENARIOS:
        rules = Rules(policy, user_traits={"u1": {"plan": "pro"}})
        for index, call in enumerate(scenario.calls):
            outcome = rules.apply(parsed(scenario.raw_event(index)), call["device"], index)
            if outcome.status is Status.MESSAGE:
                assert outcome.warehouse is not None
                found.append((outcome.warehouse, outcome.destinations, outcome.one_body))
    return found


@pytest.mark.parametrize("name", list(POLICIES))
def test_the_warehouse_value_written_from_the_destinations_one_is_the_same_bytes(
    name: str,
) -> None:
    policy = POLICIES[name]
    shared = 0
    for warehouse, destinations, one_body in outcomes(policy):
        whole = {k: v for k, v in warehouse.items() if k != "_enrichment"}
        if not one_body:
            # taken only where the messages differ, or where the policy makes them differ
            assert destinations is None or destinations != whole or not policy.one_body
            continue
        assert destinations == whole and list(warehouse)[-1] == "_enrichment"
        spliced = with_enrichment(orjson.dumps(destinations), warehouse["_enrichment"])
        assert spliced == orjson.dumps(warehouse)
        shared += 1
    if policy.one_body:
        assert shared > 0  # the scenarios do take the shortcut
    else:
        assert shared == 0


def test_context_traits_keep_the_two_messages_apart() -> None:
    """R25: a warehouse message with ``context.traits`` is never the destinations one."""
    with_traits = [
        (warehouse, destinations, one_body)
        for warehouse, destinations, one_body in outcomes(POLICIES["context traits"])
        if "traits" in warehouse["context"]
    ]
    assert with_traits
    for _, destinations, one_body in with_traits:
        assert not one_body
        assert destinations is None or "traits" not in destinations["context"]
