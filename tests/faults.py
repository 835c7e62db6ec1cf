"""Inflicting faults in tests: a Redis of the test's own (persistent, so a restart keeps its
data) that can be stopped, frozen and restarted, and the accounting of a faulty run."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from enrichers import DeviceState
from streams.dev.processes import free_port
from streams.state.keys import KeySpace
from streams.state.redis_client import connect
from streams.state.store import StateStore
from tests.pipeline import OutputRecord, Pipeline
from tests.workload import reference_states


@dataclass
class RedisServer:
    """redis-server on a free port with an append-only file fsynced on every write."""

    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(20)

    def freeze(self) -> None:
        """The process stops answering (connections hang): an unreachable Redis."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@dataclass
class Accounting:
    """One row of the fault table of the closing note."""

    fault: str
    sent: int
    delivered: int
    dead_letters: int
    repeated: int
    state_mismatches: int

    def row(self) -> str:
        return (
            f"| {self.fault} | {self.sent} | {self.delivered} | {self.dead_letters} | "
            f"{self.repeated} | {self.state_mismatches} |"
        )


def stored_states(redis_url: str, app_id: str, keys: list[str]) -> dict[str, DeviceState]:
    async def load() -> dict[str, DeviceState]:
        client = connect(redis_url)
        try:
            return await StateStore(client, KeySpace(app_id), 0).load_devices(keys)
        finally:
            await client.aclose()

    return asyncio.run(load())


def identity(state: DeviceState | None) -> tuple[Any, ...]:
    """What a clean run and a faulty run must agree on: ids, traits, and how many
    anonymousIds were generated (rotations)."""
    if state is None:
        return ()
    return (
        state.aid,
        state.uid,
        dict(state.utraits),
        state.gid,
        dict(state.gtraits),
        state.generated,
    )


SAVED_WITHIN_SECONDS = 10.0
"""How long after its outputs are read a worker has to save the last states."""


def account(
    fault: str,
    pipeline: Pipeline,
    events: list[tuple[str, dict[str, Any]]],
    redis_url: str,
    timeout: float = 240,
) -> Accounting:
    """Wait for every accepted event on both outputs, then check repeats and Redis state
    against a clean single run of the rules. Prints and returns the fault-table row."""
    message_ids = {body["messageId"] for _, body in events if "messageId" in body}
    # repeats (R34) count towards a read's record count: wait for every messageId itself
    warehouse = read_every(pipeline, "warehouse", message_ids, timeout)
    destinations = read_every(pipeline, "destinations", message_ids, 60)
    for output in (warehouse, destinations):
        copies = _copies(output)
        missing = message_ids - set(copies)
        assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:5]}"
        assert set(copies) == message_ids
        different = [m for m, values in copies.items() if len(set(values)) > 1]
        assert not different, f"repeats that differ: {different[:5]}"
    deadletters = pipeline.read("deadletter", 0, timeout=2)
    keys = sorted({key for key, _ in events})
    expected = reference_states(events, pipeline.topic("raw"))
    # a batch's outputs may be acknowledged before it is saved (the next batch is sent while
    # the one before saves): the last states are waited for, a few seconds at most
    deadline = time.monotonic() + SAVED_WITHIN_SECONDS
    while True:
        stored = stored_states(redis_url, pipeline.app_id, keys)
        mismatches = [k for k in keys if identity(stored.get(k)) != identity(expected[k])]
        if not mismatches or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    result = Accounting(
        fault,
        len(events),
        len(_copies(warehouse)),
        len(deadletters),
        len(warehouse) - len(message_ids),
        len(mismatches),
    )
    print(f"\nFAULT-TABLE {result.row()}")
    assert not mismatches, [
        (k, identity(stored.get(k)), identity(expected[k])) for k in mismatches[:3]
    ]
    return result


def read_every(
    pipeline: Pipeline, role: str, message_ids: set[str], timeout: float
) -> list[OutputRecord]:
    """The output topic's records once every messageId is among them (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        records = pipeline.read(
            role, len(message_ids), timeout=max(1.0, deadline - time.monotonic())
        )
        if message_ids <= set(_copies(records)) or time.monotonic() >= deadline:
            return records
        time.sleep(1.0)


def _copies(output: list[OutputRecord]) -> dict[str, list[bytes]]:
    copies: dict[str, list[bytes]] = defaultdict(list)
    for record in output:
        copies[orjson.loads(record.value)["messageId"]].append(record.value)
    return copies


def wait_for_output(pipeline: Pipeline, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(pipeline.read("warehouse", at_least, timeout=3)) >= at_least:
            return
    raise AssertionError(f"fewer than {at_least} messages after {timeout}s")
