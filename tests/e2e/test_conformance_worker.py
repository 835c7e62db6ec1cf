"""Every conformance scenario through the running worker (SPEC R1-R24, R26, R33): all calls
produced to the raw topic, each device under its own record key, outputs read back from the
warehouse topic and judged by the same labelling rule as the pure-core test. Once with state
on a single Redis, once on a three-master Redis Cluster."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from enrichers.timestamps import parse_iso_ms
from tests.conformance import differences, load_scenarios, observed_fields, scenario_start_ms
from tests.pipeline import Pipeline


@pytest.mark.tansu_smoke
@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)
def test_every_scenario_through_the_worker(pipeline: Pipeline) -> None:
    scenarios = load_scenarios()
    origin: dict[tuple[str, str], tuple[int, int, str]] = {}
    records: list[tuple[str, dict[str, Any]]] = []
    # Record timestamps follow the calls' receivedAt, as a collector writes them; a control
    # call (which has none) happens at the time of the call before it (R1, R4, R31).
    timestamps: list[int] = []
    for number, scenario in enumerate(scenarios):
        clock = scenario_start_ms(scenario)
        for index, call in enumerate(scenario.calls):
            clock = parse_iso_ms(call.get("receivedAt")) or clock
            timestamps.append(clock)
            key = f"s{number}/{call['device']}"
            records.append((key, scenario.raw_event(index)))
            if "messageId" in call:
                origin[(key, call["messageId"])] = (number, index, call["device"])
    expected_messages = sum(len(s.expect) for s in scenarios)

    pipeline.start_worker()
    pipeline.produce_json(records, timestamps_ms=timestamps)
    warehouse = pipeline.read("warehouse", expected_messages, timeout=180)

    observed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in warehouse:
        message = record.json()
        assert record.key is not None
        number, index, device = origin[(record.key.decode(), message["messageId"])]
        observed[number].append(observed_fields(index, device, message))

    failures = {}
    for number, scenario in enumerate(scenarios):
        problems = list(differences(scenario, observed[number]))
        if problems:
            failures[scenario.name] = problems
    passed = len(scenarios) - len(failures)
    print(f"conformance through the worker: {passed}/{len(scenarios)} scenarios passed")
    assert len(warehouse) == expected_messages
    assert not failures, failures
