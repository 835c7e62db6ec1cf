"""Driving the real collector in tests: ``enricher collector`` processes, HTTP requests to
them, and reading the raw records they wrote."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
from aiokafka import AIOKafkaConsumer

from streams.collector import READY_LINE
from streams.dev.processes import free_port
from streams.worker.clients import topic_partitions
from tests.pipeline import CommandProcess, OutputRecord

WRITE_KEY = "test-write-key"


def basic(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class CollectorProcess(CommandProcess):
    port: int

    what: ClassVar[str] = "collector"
    ready_line: ClassVar[str] = READY_LINE

    @classmethod
    def start(cls, env: Mapping[str, str], log_path: Path, wait: bool = True) -> CollectorProcess:
        port = free_port()
        env = {
            "ENRICHER_COLLECTOR_WRITE_KEYS": WRITE_KEY,
            **env,
            "ENRICHER_COLLECTOR_HOST": "127.0.0.1",
            "ENRICHER_COLLECTOR_PORT": str(port),
        }
        process = cls.launch(["collector"], env, log_path)
        collector = cls(process, log_path, port)
        if wait:
            collector.wait_ready()
        return collector

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        path: str,
        body: bytes | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        data = orjson.dumps(body) if isinstance(body, Mapping) else body
        request = urllib.request.Request(
            self.url + path, data=data, headers=dict(headers or {}), method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def post(
        self,
        path: str,
        body: bytes | Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return self.request(path, body, {**basic(WRITE_KEY), **(headers or {})}, "POST")


def read_matching(
    bootstrap: str,
    topic: str,
    match: Callable[[Any], bool],
    count: int,
    timeout: float = 30.0,
    settle: float = 0.5,
) -> list[OutputRecord]:
    """The records of ``topic`` whose JSON value ``match``es, once there are ``count`` of
    them (then reading ``settle`` seconds longer: more would be a bug)."""
    return asyncio.run(_read_matching(bootstrap, topic, match, count, timeout, settle))


async def _read_matching(
    bootstrap: str,
    topic: str,
    match: Callable[[Any], bool],
    count: int,
    timeout: float,
    settle: float,
) -> list[OutputRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[OutputRecord] = []
    try:
        assigned = await topic_partitions(consumer, [topic])
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for tp, messages in batch.items():
                for m in messages:
                    if match(orjson.loads(m.value)):
                        found.append(
                            OutputRecord(
                                tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp
                            )
                        )
            if len(found) >= count and settle_until is None:
                settle_until = time.monotonic() + settle
    finally:
        await consumer.stop()
    return found
