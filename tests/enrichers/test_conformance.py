"""Every conformance scenario through the pure core (SPEC R1-R24, R26, R33).

The scenarios are what the real Analytics.js library sent for the same calls."""

from __future__ import annotations

from typing import Any

import pytest

from enrichers import Status
from enrichers.timestamps import parse_iso_ms
from tests.conformance import (
    Scenario,
    differences,
    load_scenarios,
    observed_fields,
    scenario_start_ms,
)
from tests.rules import Rules, parsed

SCENARIOS = load_scenarios()


def run_scenario(scenario: Scenario) -> list[dict[str, Any]]:
    """Feed the calls in order, one device state per device, as the worker would."""
    rules = Rules()
    observed: list[dict[str, Any]] = []
    clock = scenario_start_ms(scenario)
    for index, call in enumerate(scenario.calls):
        clock = parse_iso_ms(call.get("receivedAt")) or clock
        outcome = rules.apply(parsed(scenario.raw_event(index)), call["device"], index, clock)
        if outcome.status is Status.MESSAGE:
            assert outcome.warehouse is not None
            observed.append(observed_fields(index, call["device"], outcome.warehouse))
    return observed


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_matches_analytics_js(scenario: Scenario) -> None:
    problems = list(differences(scenario, run_scenario(scenario)))
    assert not problems, "\n".join(problems)
