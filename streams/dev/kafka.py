"""A local Apache Kafka: one KRaft node (broker and controller in one process) on free ports.

The broker's jars come from Maven Central through ``kafka/pom.xml`` beside this file: Maven
resolves them once into its local repository, and the classpath is cached by the pom's
digest. The log dir is formatted on the first start and kept, so :meth:`LocalKafka.stop` then
:meth:`LocalKafka.start` (or a SIGKILL and a start) restarts the same broker, topics,
offsets and all, on the same ports.

Settings are tuned for tests (no initial rebalance delay, replication factors 1, short
minimum session timeouts, small internal topics); everything else is Kafka's default, record
size limits included (``message.max.bytes`` 1 MiB)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from streams.dev.processes import (
    HOST,
    Child,
    ChildExited,
    DevStackError,
    Spawner,
    free_port,
    kafka_metadata_ok,
    stop_child,
    tcp_open,
    wait_ready,
)

KAFKA_VERSION: Final = "4.1.1"
"""The version ``kafka/pom.xml`` pins (and ``deploy/compose.yaml`` runs)."""

START_TIMEOUT_S: Final = 90.0
RESOLVE_TIMEOUT_S: Final = 900.0

_SINGLE_NODE: Final = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
}
"""What one node needs: the internal topics' replication (default 3) cannot exceed it."""

_TEST_SETTINGS: Final = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.num.partitions": "2",
    "default.replication.factor": "1",
    "num.partitions": "1",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
    # a broker restarted after a crash registers again only once the controller's session of
    # its crashed incarnation expires (9 s by default): the fault tests restart it often
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
}

_LOG4J2: Final = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


class JavaMissing(DevStackError):
    """Java or Maven is not installed: the local Apache Kafka cannot run here."""


def java_and_maven() -> str | None:
    """Why the local Apache Kafka cannot run here, or None when Java and Maven are present."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH"
    return None


def _pom() -> Path:
    return Path(str(resources.files("streams.dev").joinpath("kafka", "pom.xml")))


def kafka_classpath() -> str:
    """The broker's classpath, resolved by Maven on first use and cached by the pom's digest."""
    problem = java_and_maven()
    if problem is not None:
        raise JavaMissing(f"the local Apache Kafka needs Java 17+ and Maven: {problem}")
    pom = _pom()
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    cached = cache / "identity-enricher" / f"kafka-{digest}.classpath"
    if cached.is_file():
        classpath = cached.read_text().strip()
        if all(Path(jar).is_file() for jar in classpath.split(os.pathsep)):
            return classpath
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    done = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "dependency:build-classpath",
         f"-Dmdep.outputFile={partial}"],
        capture_output=True,
        text=True,
        timeout=RESOLVE_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0 or not partial.is_file():
        raise DevStackError(
            f"Maven could not resolve Apache Kafka {KAFKA_VERSION} from {pom}:\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    partial.replace(cached)
    return cached.read_text().strip()


@dataclass(frozen=True)
class KafkaPorts:
    broker: int
    controller: int
    sasl_ssl: int = 0
    ssl: int = 0


@dataclass(frozen=True)
class SecureListeners:
    """TLS listeners beside the plain one: ``SASL_SSL`` (SCRAM-SHA-256/512 users created when
    the log dir is formatted) and ``SSL`` with client certificates required (mutual TLS). The
    broker's certificate is a PEM keystore (key and chain), its truststore the test CA."""

    keystore: Path
    truststore: Path
    users: dict[str, str]

    def settings(self, ports: KafkaPorts) -> dict[str, str]:
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return {
            "listeners": (
                f"PLAINTEXT://{HOST}:{ports.broker},CONTROLLER://{HOST}:{ports.controller},"
                f"SASL_SSL://{HOST}:{ports.sasl_ssl},SSL://{HOST}:{ports.ssl}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://{HOST}:{ports.broker},SASL_SSL://{HOST}:{ports.sasl_ssl},"
                f"SSL://{HOST}:{ports.ssl}"
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
            ),
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.ssl.ssl.client.auth": "required",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
        }

    def format_args(self) -> list[str]:
        args = []
        for user, password in self.users.items():
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        return args


class LocalKafka:
    """One KRaft node in ``workdir`` (its log dir, config and log file live there).

    ``start()`` formats the log dir the first time and picks free ports; later starts reuse
    both. ``extra_settings`` override or add server properties (listeners for TLS and SASL,
    for example); ``format_args`` are added to the storage tool's format command (SCRAM users).
    """

    def __init__(
        self,
        workdir: Path,
        extra_settings: dict[str, str] | None = None,
        format_args: list[str] | None = None,
        heap: str = "768m",
        defaults_only: bool = False,
        secure: SecureListeners | None = None,
    ) -> None:
        """``defaults_only``: Kafka's own defaults, but for what a single node needs;
        ``secure``: TLS and SASL listeners beside the plain one."""
        self._tuning = {} if defaults_only else _TEST_SETTINGS
        self._secure = secure
        self.workdir = workdir
        self._extra = dict(extra_settings or {})
        self._format_args = list(format_args or [])
        self._heap = heap
        self._child: Child | None = None
        self._ports: KafkaPorts | None = None
        self.start_timeout = START_TIMEOUT_S

    @property
    def bootstrap(self) -> str:
        if self._ports is None:
            raise DevStackError("the local Kafka has not been started")
        return f"{HOST}:{self._ports.broker}"

    @property
    def ports(self) -> KafkaPorts:
        if self._ports is None:
            raise DevStackError("the local Kafka has not been started")
        return self._ports

    def running(self) -> bool:
        return self._child is not None and self._child.proc.poll() is None

    def start(self) -> str:
        """Start (or restart on its log dir) and wait until it answers; its bootstrap address."""
        if self.running():
            return self.bootstrap
        self.workdir.mkdir(parents=True, exist_ok=True)
        classpath = kafka_classpath()
        config = self.workdir / "server.properties"
        if self._ports is None:
            secured = (free_port(), free_port()) if self._secure is not None else (0, 0)
            self._ports = KafkaPorts(free_port(), free_port(), *secured)
        config.write_text(self._server_properties(self._ports))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        if not (self.workdir / "data" / "meta.properties").is_file():
            self._format(classpath, config)
        deadline = time.monotonic() + self.start_timeout
        while True:  # a port of the last run may linger in TIME_WAIT: retry a bind failure
            try:
                self._spawn(classpath, config, deadline)
                return self.bootstrap
            except ChildExited as exc:
                if time.monotonic() + 1.0 >= deadline:
                    raise DevStackError(f"Apache Kafka did not start: {exc}") from None
                time.sleep(1.0)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM, then SIGKILL after a grace period)."""
        child, self._child = self._child, None
        if child is not None:
            stop_child(child, timeout=30.0)

    def kill(self) -> None:
        """SIGKILL: what a crash does (the log dir recovers on the next start)."""
        child, self._child = self._child, None
        if child is not None:
            child.proc.kill()
            child.proc.wait(10)
            child.log_file.close()

    def _server_properties(self, ports: KafkaPorts) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{ports.controller}",
            "listeners": f"PLAINTEXT://{HOST}:{ports.broker},CONTROLLER://{HOST}:{ports.controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{ports.broker}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            **_SINGLE_NODE,
            **self._tuning,
            **(self._secure.settings(ports) if self._secure is not None else {}),
            **self._extra,
        }
        return "".join(f"{name}={value}\n" for name, value in settings.items())

    def _java(self, classpath: str, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms128m", f"-Xmx{self._heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp", classpath,
            main, *args,
        ]  # fmt: skip

    def _format(self, classpath: str, config: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        users = self._secure.format_args() if self._secure is not None else []
        # --cluster-id=...: a generated id may start with "-", which a separate argument would
        # make look like an option
        command = self._java(
            classpath, "kafka.tools.StorageTool", "format",
            f"--cluster-id={cluster_id}", "-c", str(config), *self._format_args, *users,
        )  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise DevStackError(
                f"formatting the Kafka log dir failed:\n{(done.stdout + done.stderr)[-3000:]}"
            )

    def _spawn(self, classpath: str, config: Path, deadline: float) -> None:
        path = self.workdir / "kafka.log"
        log = path.open("ab")
        log.write(
            f"--- starting Apache Kafka {KAFKA_VERSION} at {time.strftime('%X')} ---\n".encode()
        )
        log.flush()
        command = self._java(classpath, "kafka.Kafka", str(config))
        child = Child("Apache Kafka", Spawner.popen(command, log, self.workdir), log, path)
        self._child = child
        port = self.ports.broker
        bootstrap = self.bootstrap

        def ready() -> bool:
            return tcp_open(HOST, port) and kafka_metadata_ok(bootstrap)

        try:
            wait_ready(child, deadline, ready, f"answer on {bootstrap}", self.start_timeout)
        except BaseException:
            self._child = None
            stop_child(child)
            raise
