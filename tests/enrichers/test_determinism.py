"""R5, R32: re-processing the same input yields the same output, byte for byte, in any process.

Replays, rebuilds and diffs rely on it. A pure function called twice in one interpreter would
agree with itself even if it iterated a set of strings or used ``hash()``; two interpreters with
different ``PYTHONHASHSEED`` do not, so this runs the same stream in two of them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import orjson

from enrichers import Policy
from enrichers.ip import IpPolicy
from tests.rules import Rules, parsed
from tests.workload import mixed_events

ROOT = Path(__file__).resolve().parents[2]


def stream_digest() -> str:
    """Every output and final state of a mixed stream, under a policy that uses every rule."""
    policy = Policy(
        ip_warehouse=IpPolicy.parse("truncate"),
        ip_destinations=IpPolicy.parse("mask"),
        context_traits=("*",),
    )
    rules = Rules(policy)
    digest = hashlib.sha256()
    for offset, (key, body) in enumerate(mixed_events(3000, 150, seed=11)):
        body = {**body, "requestIp": f"203.0.113.{offset % 250}"}
        outcome = rules.apply(parsed(body), key if offset % 3 else None, offset, offset * 1000)
        for message in (outcome.warehouse, outcome.destinations):
            digest.update(orjson.dumps(message))
    for key in sorted(rules.states):
        digest.update(key.encode() + orjson.dumps(rules.states[key].to_json()))
    return digest.hexdigest()


def test_same_input_gives_identical_bytes_in_two_processes_with_different_hash_seeds() -> None:
    digests = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tests.enrichers.test_determinism import stream_digest;print(stream_digest())",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        digests.append(done.stdout.strip())
    assert len(digests[0]) == 64
    assert digests[0] == digests[1]
