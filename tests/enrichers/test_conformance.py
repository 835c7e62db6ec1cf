"""Every conformance scenario through the pure core (SPEC R1-R24, R26, R33).

The scenarios are what the real Analytics.js library sent for the same calls."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from enrichers import (
    DEFAULT_POLICY,
    EMPTY_DEVICE,
    DeviceState,
    RawEvent,
    Source,
    Status,
    enrich_event,
    parse_raw_event,
    resolve_device,
)
from enrichers.timestamps import parse_iso_ms
from tests.conformance import (
    Scenario,
    differences,
    load_scenarios,
    observed_fields,
    scenario_start_ms,
)

SCENARIOS = load_scenarios()


def run_scenario(scenario: Scenario) -> list[dict[str, Any]]:
    """Feed the calls in order, one device state per device, as the worker would."""
    states: dict[str, DeviceState] = {}
    observed: list[dict[str, Any]] = []
    clock = scenario_start_ms(scenario)
    for index, call in enumerate(scenario.calls):
        clock = parse_iso_ms(call.get("receivedAt")) or clock
        event = parse_raw_event(orjson.dumps(scenario.raw_event(index)))
        assert isinstance(event, RawEvent), event
        source = Source("events.raw", 0, index, call["device"], clock)
        device = resolve_device(event, source)
        outcome = enrich_event(
            states.get(device.key, EMPTY_DEVICE), event, device, source, DEFAULT_POLICY
        )
        states[device.key] = outcome.state
        if outcome.status is Status.MESSAGE:
            assert outcome.warehouse is not None
            observed.append(observed_fields(index, call["device"], outcome.warehouse))
    return observed


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_matches_analytics_js(scenario: Scenario) -> None:
    problems = list(differences(scenario, run_scenario(scenario)))
    assert not problems, "\n".join(problems)


def test_every_scenario_file_is_loaded() -> None:
    # 70 curated + 200 random scenarios (../shared/conformance/README.md)
    assert len(SCENARIOS) == 270
