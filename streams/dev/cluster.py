"""A local Redis Cluster for tests and the benchmark: ``redis-server`` in cluster mode on free
ports (three masters, no replicas, no persistence) in a directory of its own, joined with
``redis-cli --cluster create``. ``stop()`` stops exactly the processes it started.

    with DevCluster(workdir) as cluster:
        run_worker(redis_url=cluster.url)   # redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...

``python -m streams.dev.cluster`` runs one until Ctrl-C and prints its URL."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final

from streams.dev.processes import free_port
from streams.state.store import LISTPACK_VALUE

HOST: Final = "127.0.0.1"
START_TIMEOUT: Final = 30.0


class DevClusterError(RuntimeError):
    pass


def _binary(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found is None:
        raise DevClusterError(
            f"{name} not found on PATH (install it: apt-get install redis-server)"
        )
    return found


class DevCluster:
    def __init__(self, workdir: Path | None = None, masters: int = 3) -> None:
        self.masters = masters
        self._workdir_arg = workdir
        self.workdir = Path()
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    @property
    def pids(self) -> list[int]:
        """The redis-server processes (tests freeze and thaw them)."""
        return [process.pid for process in self._processes]

    def start(self) -> DevCluster:
        self.workdir = self._workdir_arg or Path(tempfile.mkdtemp(prefix="enricher-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        server, cli = _binary("redis-server"), _binary("redis-cli")
        try:
            for _ in range(self.masters):
                self._start_node(server, cli)
            nodes = [f"{HOST}:{port}" for port in self.ports]
            created = subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if created.returncode != 0:
                raise DevClusterError(f"redis-cli --cluster create failed:\n{created.stdout}")
            self._wait(
                lambda: all(
                    "cluster_state:ok" in self._cli(cli, port, "cluster", "info")
                    for port in self.ports
                ),
                "cluster_state:ok",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in self._processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_node(self, server: str, cli: str, attempts: int = 5) -> None:
        """One node on a free port (again on another port if that one was taken meanwhile)."""
        for _ in range(attempts):
            process, port = self._spawn(server)
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if self._cli(cli, port, "ping") == "PONG":
                    self._processes.append(process)
                    self.ports.append(port)
                    return
                time.sleep(0.05)
            if process.poll() is None:
                process.kill()
            process.wait()
        raise DevClusterError(f"redis-server did not start in cluster mode; see {self.workdir}")

    def _spawn(self, server: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        args = [
            server,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--cluster-enabled",
            "yes",
            "--hash-max-listpack-value",  # device buckets compact
            str(LISTPACK_VALUE),
            "--cluster-port",  # the bus port: by default port + 10000, maybe not free
            str(free_port()),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(node_dir),
        ]
        with (node_dir / "redis.log").open("ab") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return process, port

    def _cli(self, cli: str, port: int, *command: str) -> str:
        done = subprocess.run(
            [cli, "-h", HOST, "-p", str(port), *command], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    def _wait(self, ready: object, what: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    raise DevClusterError(f"a redis-server exited; see {self.workdir}")
            if ready():
                return
            time.sleep(0.1)
        raise DevClusterError(f"the cluster did not reach {what} in {START_TIMEOUT}s")


def main() -> int:
    with DevCluster() as cluster:
        print(f"ENRICHER_REDIS_URL={cluster.url}", flush=True)
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
