"""The ``make run`` path: ``enricher demo --once`` (what ``RUN_ONCE=1 make run`` runs) starts
its own development stack, feeds the bundled sample and prints what came out. It runs on the
embedded Tansu broker (the zero-install default) and on Apache Kafka
(``ENRICHER_DEV_BROKER=kafka``) when Java and Maven are present."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.dev.kafka import java_and_maven
from streams.dev.sample import load_sample

pytestmark = pytest.mark.e2e

BROKERS = [
    "tansu",
    pytest.param(
        "kafka",
        marks=pytest.mark.skipif(java_and_maven() is not None, reason="needs Java and Maven"),
    ),
]


@pytest.mark.parametrize("dev_broker", BROKERS)
def test_make_run_once_feeds_the_sample_through_its_own_stack(
    dev_broker: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENRICHER_")}
    env["ENRICHER_DEV_BROKER"] = dev_broker
    env["ENRICHER_REDIS_URL"] = os.environ.get(
        "ENRICHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
    )
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    name = "Apache Kafka" if dev_broker == "kafka" else "Tansu"
    assert f"({name} broker, Redis)" in done.stdout
    sample = load_sample()
    raw = re.search(r"events\.raw\s+(\d+) raw records", done.stdout)
    assert raw is not None and int(raw.group(1)) == len(sample)
    counts = dict(re.findall(r"(events\.\w+)\s+(\d+)\n", done.stdout))
    assert int(counts["events.warehouse"]) > 0 and int(counts["events.deadletter"]) > 0
    assert "rotates (R12)" in done.stdout  # the showcase beside the raw events


def test_make_run_starts_the_live_console_open_on_localhost(tmp_path: Path) -> None:
    """Without ``--once`` the demo keeps running and starts the console beside the worker,
    open on localhost, printing its address; Ctrl-C stops everything."""
    import signal
    import time
    import urllib.request

    import orjson

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENRICHER_")}
    env["ENRICHER_REDIS_URL"] = os.environ.get(
        "ENRICHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
    )
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo"],
            env={**env, "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        address = None
        while address is None and time.monotonic() < deadline:
            found = re.search(
                r"Live console \(open on localhost\): (http://127\.0\.0\.1:\d+/)", log.read_text()
            )
            address = found.group(1) if found else None
            assert demo.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert address is not None, log.read_text()[-3000:]
        with urllib.request.urlopen(address + "api/events", timeout=10) as response:
            events = orjson.loads(response.read())["events"]
        assert events  # the sample, in the window; no token needed on localhost
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    assert "stopping" in log.read_text()
