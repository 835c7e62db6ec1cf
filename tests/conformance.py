"""The conformance scenarios of ../shared/conformance: loading them and comparing outputs.

Shared by the pure-core test and the end-to-end test so both judge by the same rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from enrichers.timestamps import parse_iso_ms

CONFORMANCE_DIR = Path(
    os.environ.get(
        "ENRICHER_CONFORMANCE_DIR",
        Path(__file__).resolve().parents[2] / "shared" / "conformance",
    )
)
SCENARIO_FILES = ("scenarios.jsonl", "random-public.jsonl")
COMPARED_FIELDS = ("type", "userId", "anonymousId", "traits", "groupId", "previousId", "event")


@dataclass(frozen=True)
class Scenario:
    name: str
    calls: Sequence[Mapping[str, Any]]
    expect: Sequence[Mapping[str, Any]]

    def raw_event(self, index: int) -> dict[str, Any]:
        """The call as a raw event of CONTRACT.md (without the scenario's ``device``)."""
        return {k: v for k, v in self.calls[index].items() if k != "device"}


def load_scenarios() -> list[Scenario]:
    scenarios: list[Scenario] = []
    for file_name in SCENARIO_FILES:
        path = CONFORMANCE_DIR / file_name
        for line in path.read_bytes().splitlines():
            if line.strip():
                doc = orjson.loads(line)
                scenarios.append(Scenario(doc["name"], doc["calls"], doc["expect"]))
    return scenarios


def scenario_start_ms(scenario: Scenario) -> int:
    """The first receivedAt of the scenario: the time of calls before any message call."""
    for call in scenario.calls:
        received = parse_iso_ms(call.get("receivedAt"))
        if received is not None:
            return received
    return 0


def observed_fields(call_index: int, device: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """A message of ours in the form of an ``expect`` entry."""
    observed: dict[str, Any] = {"call": call_index, "device": device}
    for name in COMPARED_FIELDS:
        if name in message:
            observed[name] = message[name]
    context = message.get("context") or {}
    if "traits" in context:
        observed["contextTraits"] = context["traits"]
    if "ip" in context:
        observed["contextIp"] = context["ip"]
    return observed


def _literals(scenario: Scenario) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, bool):
            return
        elif isinstance(value, int | float):
            found.add(str(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for call in scenario.calls:
        walk(call)
    return found


def relabel(scenario: Scenario, observed: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace generated ids by ``$A1``, ``$A2``... in order of first appearance (README)."""
    literals = _literals(scenario)
    labels: dict[str, str] = {}

    def label(value: Any) -> Any:
        if not isinstance(value, str) or value in literals:
            return value
        if value not in labels:
            labels[value] = f"${'A'}{len(labels) + 1}"
        return labels[value]

    relabelled = []
    for entry in sorted(observed, key=lambda e: e["call"]):
        entry = dict(entry)
        for name in ("anonymousId", "userId", "previousId"):
            if name in entry:
                entry[name] = label(entry[name])
        relabelled.append(entry)
    return relabelled


def expected_entries(scenario: Scenario) -> list[dict[str, Any]]:
    return [dict(entry) for entry in scenario.expect]


def differences(scenario: Scenario, observed: Sequence[dict[str, Any]]) -> Iterator[str]:
    """Human-readable differences between our messages and what Analytics.js sent."""
    ours = relabel(scenario, observed)
    theirs = expected_entries(scenario)
    if len(ours) != len(theirs):
        yield f"{len(ours)} messages, expected {len(theirs)}"
    for mine, expected in zip(ours, theirs, strict=False):
        if mine != expected:
            yield f"call {expected.get('call')}: got {mine}, expected {expected}"
