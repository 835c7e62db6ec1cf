"""Coverage-guided fuzzing of the pure path with atheris (issue 16): raw bytes -> parse ->
device key -> every rule under a policy the input picks -> message building -> the sink
runner's preparation of the outputs.

The invariant: no exception escapes, every output is JSON whose ``timestamp`` and
``receivedAt`` are ISO-8601 UTC with milliseconds, and a valid event is never a
``processing_error`` (the worker's name for an exception out of the rules).

    make fuzz                       # FUZZ_SECONDS (default 60) over tests/fuzz/corpus
    python -m tests.fuzz.fuzz_core tests/fuzz/corpus -max_total_time=60

The first bytes of an input pick the policy; the rest is up to four raw events separated by
a newline, applied in order to one device (so state carries from one to the next). Crashes
are written to tests/fuzz/crashes/; each one found is kept as a regression test in
tests/fuzz/test_regressions.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import atheris

from streams.build import prefer_sources

if __name__ == "__main__":
    # atheris instruments Python bytecode: the core is fuzzed from its sources (a compiled
    # build gives no coverage to guide the fuzzer); the regression tests import this module
    # and run on whichever build the session runs
    prefer_sources()

with atheris.instrument_imports():
    import orjson

    from enrichers import (
        EMPTY_DEVICE,
        DeviceState,
        IpPolicy,
        Policy,
        RawEvent,
        Source,
        enrich_event,
        parse_raw_event,
        resolve_device,
    )
    from streams.worker.records import InRecord
    from tests.rules import sink_runner

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
IP_POLICIES = [IpPolicy.parse(p) for p in ("keep", "drop", "truncate", "mask", "mask:4:8")]
TRAITS = [(), ("*",), ("plan", "email")]


RUNNERS = [sink_runner(p) for p in IP_POLICIES]


def policy_of(selector: int) -> Policy:
    return Policy(
        collect_ipv6=bool(selector & 1),
        ip_warehouse=IP_POLICIES[(selector >> 1) % len(IP_POLICIES)],
        ip_destinations=IP_POLICIES[(selector >> 4) % len(IP_POLICIES)],
        context_traits=TRAITS[(selector >> 6) % len(TRAITS)],
    )


def check_message(message: dict[str, Any]) -> None:
    encoded = orjson.dumps(message)  # JSON, whatever went in
    assert orjson.loads(encoded) == orjson.loads(encoded)
    for name in ("timestamp", "receivedAt"):
        assert ISO_UTC.match(message[name]), (name, message[name])
    assert isinstance(message["anonymousId"], str) and message["anonymousId"]


def run(data: bytes) -> None:
    """One input through the whole pure path; raises on a broken invariant."""
    if len(data) < 2:
        return
    selector, sink_pick, body = data[0], data[1], data[2:]
    policy = policy_of(selector)
    state: DeviceState = EMPTY_DEVICE
    profiles: dict[str, dict[str, Any]] = {}
    for offset, value in enumerate(body.split(b"\n")[:4]):
        event = parse_raw_event(value)
        if not isinstance(event, RawEvent):
            continue  # a dead letter with its code: fine
        source = Source("events.raw", offset % 3, offset, None if selector & 8 else "dev", offset)
        device = resolve_device(event, source)
        # the worker dead-letters an exception out of this call as processing_error: none may
        outcome = enrich_event(state, event, device, source, policy, profiles)
        state = outcome.state
        orjson.dumps(state.to_json())
        for message in (outcome.warehouse, outcome.destinations):
            if message is None:
                continue
            check_message(message)
            record = InRecord("events.warehouse", 0, offset, None, orjson.dumps(message), 0)
            RUNNERS[sink_pick % len(RUNNERS)].prepare([record])
        if outcome.user_update is not None and outcome.user_update.traits:
            profiles.setdefault(outcome.user_update.user_id, {}).update(outcome.user_update.traits)


def main() -> None:
    crashes = Path(__file__).parent / "crashes"
    atheris.Setup(
        [sys.argv[0], f"-artifact_prefix={crashes}/", *sys.argv[1:]],
        run,
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main()
