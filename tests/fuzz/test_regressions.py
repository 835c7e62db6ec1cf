"""Every input the fuzzer (tests/fuzz/fuzz_core.py) made fail, kept as a regression test: each
file in tests/fuzz/crashes/, and the inputs of issue 16 written in the fuzzer's format (first
byte: the policy, second: the sink's IP policy, then raw events separated by newlines)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.fuzz.fuzz_core import run

CRASHES = sorted(p for p in (Path(__file__).parent / "crashes").iterdir() if p.name != ".keep")

MASK_EVERYWHERE = bytes([0b0110110, 3])  # mask on both outputs and in the sink
ISSUE_16 = {
    "far sentAt": {"type": "track", "event": "e", "sentAt": "9999-12-31T23:59:59Z",
                   "timestamp": "2024-01-01T00:00:00Z"},
    "receivedAt near year 1": {"type": "track", "event": "e",
                               "receivedAt": "0001-01-01T00:00:00Z",
                               "sentAt": "2024-01-01T00:00:01Z",
                               "timestamp": "2024-01-01T00:00:00Z"},
    "year below 1000": {"type": "page", "timestamp": "0999-01-01T00:00:00Z"},
    "zone index under mask": {"type": "page", "context": {"ip": "fe80::1%eth0"}},
    "number id": {"type": "identify", "userId": 1e-7},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ISSUE_16))
def test_issue_16_inputs_pass_the_fuzzers_invariant(name: str) -> None:
    run(MASK_EVERYWHERE + orjson.dumps(ISSUE_16[name]))


@pytest.mark.parametrize("crash", CRASHES, ids=[p.name for p in CRASHES])
def test_every_input_the_fuzzer_made_fail_now_passes(crash: Path) -> None:
    run(crash.read_bytes())
