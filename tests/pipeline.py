"""Driving the real worker in tests: worker processes, producing raw events, reading outputs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.dev.stack import StackEndpoints, free_port
from streams.observe.metrics import sample_values
from streams.settings import Settings
from streams.state.keys import KeySpace
from streams.state.redis_client import connect, unlink_matching
from streams.worker.clients import topic_partitions
from streams.worker.topics import ensure_topics

READY_LINE = "Worker ready"
LOOKUP_TOKEN = "test-lookup-token"
"""The bearer token the tests' workers accept for their lookups (ENRICHER_LOOKUP_TOKENS)."""


@dataclass(frozen=True)
class OutputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int

    def json(self) -> Any:
        return orjson.loads(self.value)


@dataclass
class Pipeline:
    """One isolated pipeline on the shared stack: its own topics, app id and Redis keys."""

    stack: StackEndpoints
    workdir: Path
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    _topics_created: bool = False

    @property
    def app_id(self) -> str:
        return f"test-{self.name}"

    def topic(self, role: str) -> str:
        return f"events.{role}.{self.name}"

    @property
    def redis_url(self) -> str:
        """The Redis (or ``redis+cluster://`` Redis Cluster) the workers keep state in."""
        return self.extra_env.get("ENRICHER_REDIS_URL", self.stack.redis_url)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENRICHER_")}
        env.update(
            ENRICHER_BROKER=self.stack.broker_url,
            ENRICHER_REDIS_URL=self.stack.redis_url,
            ENRICHER_APP_ID=self.app_id,
            ENRICHER_TOPIC_RAW=self.topic("raw"),
            ENRICHER_TOPIC_WAREHOUSE=self.topic("warehouse"),
            ENRICHER_TOPIC_DESTINATIONS=self.topic("destinations"),
            ENRICHER_TOPIC_DEADLETTER=self.topic("deadletter"),
            ENRICHER_TOPIC_REGULATIONS=self.topic("regulations"),
            ENRICHER_SESSION_TIMEOUT="3",
            ENRICHER_REBALANCE_TIMEOUT="6",
            ENRICHER_LOOKUP_TOKENS=LOOKUP_TOKEN,
        )
        env.update(self.extra_env)
        return env

    def start_worker(self, wait: bool = True) -> WorkerProcess:
        worker = WorkerProcess.start(self.env(), self.workdir / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    def remove_state(self) -> None:
        """Delete the pipeline's Redis keys (its app id's): left behind, thousands per test
        slowed every later scan of the shared Redis (R39's erasure scans the keyspace)."""

        async def remove() -> None:
            client = connect(self.redis_url)
            try:
                await unlink_matching(client, KeySpace(self.app_id).pattern())
            except (RedisConnectionError, RedisTimeoutError, RedisClusterException):
                pass  # a Redis (or cluster) stopped or never there: nothing to remove
            finally:
                await client.aclose()

        asyncio.run(remove())

    def produce(
        self,
        events: Iterable[tuple[bytes | None, bytes]],
        role: str = "raw",
        timestamps_ms: Iterable[int | None] | None = None,
    ) -> None:
        """Produce (key, value) records in order; optionally with their record timestamps.
        The pipeline's topics are created first, as a worker creates them: a broker that
        auto-creates a topic gives it its own partition count (Apache Kafka: 1)."""
        if not self._topics_created:
            plain = {k: v for k, v in self.env().items() if not k.startswith("ENRICHER_BROKER_")}
            settings = Settings.load({**plain, "ENRICHER_BROKER": self.stack.broker_url})
            asyncio.run(ensure_topics(settings))
            self._topics_created = True
        asyncio.run(produce(self.stack.bootstrap, self.topic(role), events, timestamps_ms))

    def produce_json(
        self,
        events: Iterable[tuple[str | None, Mapping[str, Any]]],
        role: str = "raw",
        timestamps_ms: Iterable[int | None] | None = None,
    ) -> None:
        self.produce(
            ((k.encode() if k is not None else None, orjson.dumps(v)) for k, v in events),
            role,
            timestamps_ms,
        )

    def enricher(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``enricher ARGS`` to its end with the pipeline's settings."""
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def read(self, role: str, count: int, timeout: float = 60.0) -> list[OutputRecord]:
        """Every record of an output topic, waiting until there are at least ``count``."""
        return asyncio.run(read_topic(self.stack.bootstrap, self.topic(role), count, timeout))


LAUNCHED: list[CommandProcess] = []
"""Every process the tests started: the fixtures stop what a failing test left running."""


def stop_launched_since(mark: int) -> None:
    """Stop every process started after ``LAUNCHED[:mark]`` that is still running."""
    for process in LAUNCHED[mark:]:
        process.stop(timeout=10)


@dataclass
class CommandProcess:
    """One ``enricher`` command run as a process of its own (own session, so a signal reaches
    it alone), its output in a log file; ready once its log shows ``ready_line``."""

    process: subprocess.Popen[bytes]
    log_path: Path

    what: ClassVar[str] = "process"
    ready_line: ClassVar[str] = READY_LINE

    def __post_init__(self) -> None:
        LAUNCHED.append(self)

    @staticmethod
    def launch(
        args: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        """``enricher ARGS`` with ``env`` (unbuffered), stdout and stderr to ``log_path``."""
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *args],
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_line in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"{self.what} exited:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.what} not ready after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class WorkerProcess(CommandProcess):
    web_port: int

    what: ClassVar[str] = "worker"

    @classmethod
    def start(cls, env: dict[str, str], log_path: Path) -> WorkerProcess:
        web_port = free_port()
        process = cls.launch(["worker"], {**env, "ENRICHER_WEB_PORT": str(web_port)}, log_path)
        return cls(process, log_path, web_port)

    def get(self, path: str, token: str | None = LOOKUP_TOKEN) -> tuple[int, Any]:
        """GET a path of the worker's web server (with the lookups' bearer token unless told
        otherwise): (status, decoded JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, orjson.loads(error.read())

    def get_status(self, path: str) -> int:
        """The status a GET of ``path`` answers, without credentials."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}") as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def positions(self) -> dict[int, int]:
        """The next raw offset per partition this worker has finished with: every record
        before it was processed and its state saved (the /metrics consumer positions)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics") as response:
            text = response.read().decode()
        return {
            int(labels["partition"]): int(value)
            for labels, value in sample_values(text, "enricher_consumer_position")
        }

    def assignments(self) -> list[set[int]]:
        """The raw partitions this worker was given, one set per rebalance, in order."""
        return [
            {int(p) for p in re.findall(r"\d+", found)}
            for found in re.findall(r"raw partitions assigned: \[([\d, ]*)\]", self.log())
        ]

    def wait_assigned(self, wanted: Callable[[set[int]], bool], timeout: float = 60.0) -> None:
        """Until the worker's latest raw-partition assignment satisfies ``wanted``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            latest = self.assignments()
            if latest and wanted(latest[-1]):
                return
            assert self.process.poll() is None, self.log()[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"assignments {self.assignments()} after {timeout}s")


async def produce(
    bootstrap: str,
    topic: str,
    events: Iterable[tuple[bytes | None, bytes]],
    timestamps_ms: Iterable[int | None] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    times = iter(timestamps_ms) if timestamps_ms is not None else None
    try:
        pending = [
            await producer.send(
                topic, value, key=key, timestamp_ms=next(times) if times is not None else None
            )
            for key, value in events
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float) -> list[OutputRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[OutputRecord] = []
    try:
        deadline = time.monotonic() + timeout
        assigned: list[TopicPartition] = []
        while not assigned and time.monotonic() < deadline:
            assigned = await topic_partitions(consumer, [topic])
            if not assigned:
                await asyncio.sleep(0.2)
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        # the ends as the broker states them now: every record up to them is read, not just
        # ``count`` (repeats, R34, count too: a count alone would stop before some
        # partitions' last records). A broker whose watermarks are low (Tansu) ends on count.
        ends = {tp: int(end) for tp, end in (await consumer.end_offsets(assigned)).items()}
        positions = dict.fromkeys(assigned, 0)

        def unread() -> bool:
            return len(records) < count or any(positions[tp] < ends[tp] for tp in assigned)

        while unread() and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batch.items():
                for m in messages:
                    records.append(
                        OutputRecord(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
                    )
                if messages:
                    positions[tp] = messages[-1].offset + 1
        # anything beyond the expected count would be a bug: read a little longer (half a
        # second: the worker sends a batch's outputs in one write, and sends them again after
        # a concurrent save within a save's round trip, milliseconds later)
        if len(records) >= count:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                for m in messages:
                    records.append(
                        OutputRecord(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
                    )
    finally:
        await consumer.stop()
    return records


def broker_settings(stack: StackEndpoints) -> Settings:
    """Settings that reach the stack's broker (for the operator functions tests call)."""
    return Settings.load({"ENRICHER_BROKER": stack.broker_url})
