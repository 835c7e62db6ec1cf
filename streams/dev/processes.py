"""Child processes of the development stack (brokers, Redis servers): spawned so that they
die with their parent, waited for until they answer, stopped, and their logs tailed; plus the
probes that tell whether a broker or a Redis answers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

STOP_TIMEOUT_S = 10.0
HOST = "127.0.0.1"
_LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1


class DevStackError(RuntimeError):
    """The development stack could not be started (or is not started)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (it may be taken again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_ping(url: str, timeout: float = 1.0) -> bool:
    import redis

    from streams.state.redis_client import cluster_answers, is_cluster_url

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


def kafka_metadata_ok(bootstrap: str, timeout: float = 3.0) -> bool:
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


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    text = data.decode("utf-8", "replace").rstrip()
    if not text:
        return f"(log {path} is empty)"
    return "\n".join(text.splitlines()[-lines:])


def preexec_factory() -> Callable[[], None] | None:
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


class Spawner:
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
                preexec_fn=preexec_factory(),
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
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes]
    log_path: Path


def stop_child(child: Child, timeout: float = STOP_TIMEOUT_S) -> None:
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


class ChildExited(DevStackError):
    """A child process exited while we waited for it (e.g. the port was taken)."""


def wait_ready(
    child: Child, deadline: float, ready: Callable[[], bool], what: str, timeout_s: float
) -> None:
    """Poll ``ready`` until it answers True; raise ChildExited if the child exits first,
    DevStackError at ``deadline``."""
    delay = 0.05
    while True:
        rc = child.proc.poll()
        if rc is not None:
            raise ChildExited(
                f"{child.name} exited with code {rc}; tail of {child.log_path}:\n"
                + log_tail(child.log_path)
            )
        if ready():
            return
        if time.monotonic() >= deadline:
            raise DevStackError(
                f"{child.name} did not {what} within {timeout_s:.0f} s; "
                f"tail of {child.log_path}:\n{log_tail(child.log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
