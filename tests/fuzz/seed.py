"""Seeds for the fuzzer's corpus: every call of every conformance scenario, as raw events in
the fuzzer's input format, under a few policy selectors (``python -m tests.fuzz.seed DIR``)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import orjson

from tests.conformance import load_scenarios


def seeds() -> list[bytes]:
    found: list[bytes] = []
    for scenario in load_scenarios():
        events = [orjson.dumps(scenario.raw_event(i)) for i in range(len(scenario.calls))]
        for start in range(0, len(events), 4):
            body = b"\n".join(events[start : start + 4])
            for selector in (0, 0b1010110, 0b10011011):
                found.append(bytes([selector, start % 5]) + body)
    return found


def main(directory: str) -> None:
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for seed in seeds():
        (target / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


if __name__ == "__main__":
    main(sys.argv[1])
