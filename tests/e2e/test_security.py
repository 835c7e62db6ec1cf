"""Secure by default (issue 17): Kafka with SASL_SSL (SCRAM-SHA-512) and with mutual TLS, Redis
with an ACL user over TLS, lookups behind bearer tokens. Refused credentials or an untrusted
certificate stop a process within seconds, with the setting to fix, having consumed nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from streams.dev.kafka import LocalKafka, SecureListeners
from streams.dev.processes import free_port
from streams.dev.stack import StackEndpoints
from streams.dev.tls import Certificate, issue, make_ca
from tests.collector import CollectorProcess, read_matching
from tests.conftest import needs_apache_kafka
from tests.e2e.test_sink_files import published_lines
from tests.pipeline import LOOKUP_TOKEN, Pipeline
from tests.sinks import start_file_sink, wait_for

pytestmark = [pytest.mark.e2e, needs_apache_kafka()]

USER, PASSWORD = "enricher", "enricher-secret-9"


@dataclass
class SecureKafka:
    kafka: LocalKafka
    ca: Certificate
    client: Certificate
    stranger_ca: Certificate

    def stack(self, redis_url: str) -> StackEndpoints:
        """The plain listener, for the test's own producing and reading."""
        bootstrap = self.kafka.bootstrap
        return StackEndpoints(f"kafka://{bootstrap}", bootstrap, redis_url, "kafka")

    def sasl_ssl(self, password: str = PASSWORD, ca: Path | None = None) -> dict[str, str]:
        return {
            "ENRICHER_BROKER": f"kafka://127.0.0.1:{self.kafka.ports.sasl_ssl}",
            "ENRICHER_BROKER_SECURITY_PROTOCOL": "SASL_SSL",
            "ENRICHER_BROKER_SASL_MECHANISM": "SCRAM-SHA-512",
            "ENRICHER_BROKER_SASL_USERNAME": USER,
            "ENRICHER_BROKER_SASL_PASSWORD": password,
            "ENRICHER_BROKER_SSL_CAFILE": str(ca or self.ca.cert),
        }

    def mutual_tls(self) -> dict[str, str]:
        return {
            "ENRICHER_BROKER": f"kafka://127.0.0.1:{self.kafka.ports.ssl}",
            "ENRICHER_BROKER_SECURITY_PROTOCOL": "SSL",
            "ENRICHER_BROKER_SSL_CAFILE": str(self.ca.cert),
            "ENRICHER_BROKER_SSL_CERTFILE": str(self.client.cert),
            "ENRICHER_BROKER_SSL_KEYFILE": str(self.client.key),
        }


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A broker of its own with SASL_SSL and mTLS listeners beside a plain one."""
    root = tmp_path_factory.mktemp("secure-kafka")
    ca = make_ca(root / "ca")
    server = issue(ca, root / "ca", "broker", server=True)
    client = issue(ca, root / "ca", "worker", server=False)
    stranger = make_ca(root / "stranger", "stranger-ca")
    kafka = LocalKafka(
        root / "kafka", secure=SecureListeners(server.pem, ca.cert, {USER: PASSWORD})
    )
    kafka.start()
    try:
        yield SecureKafka(kafka, ca, client, stranger)
    finally:
        kafka.stop()


def secure_pipeline(
    secure_kafka: SecureKafka, stack: StackEndpoints, tmp_path: Path, env: dict[str, str]
) -> Pipeline:
    pipeline = Pipeline(secure_kafka.stack(stack.redis_url), tmp_path)
    pipeline.extra_env.update(env)
    return pipeline


def events(name: str, count: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (f"dev-{n % 5}", {"type": "track", "event": name, "messageId": f"{name}-{n}"})
        for n in range(count)
    ]


def test_worker_collector_sink_and_replay_over_sasl_ssl(
    secure_kafka: SecureKafka, stack: StackEndpoints, tmp_path: Path
) -> None:
    pipeline = secure_pipeline(secure_kafka, stack, tmp_path, secure_kafka.sasl_ssl())
    try:
        pipeline.start_worker()
        pipeline.produce_json(events("sasl", 20))
        assert len(pipeline.read("warehouse", 20)) == 20

        collector = CollectorProcess.start(pipeline.env(), tmp_path / "collector.log")
        assert (
            collector.post("/v1/track", {"type": "track", "event": "E", "userId": "c1"}).status
            == 200
        )
        found = read_matching(
            pipeline.stack.bootstrap, pipeline.topic("raw"), lambda v: v.get("userId") == "c1", 1
        )
        assert len(found) == 1

        files = tmp_path / "files"
        sink = start_file_sink(pipeline, files)
        assert wait_for(lambda: len(published_lines(files)) >= 21, 60), sink.log()[-2000:]

        replay = subprocess.run(
            [sys.executable, "-m", "streams.cli", "replay", "--mode", "diff"],
            env=pipeline.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
        assert "0 differences" in replay.stdout
    finally:
        pipeline.stop_all()


def test_the_worker_over_mutual_tls(
    secure_kafka: SecureKafka, stack: StackEndpoints, tmp_path: Path
) -> None:
    pipeline = secure_pipeline(secure_kafka, stack, tmp_path, secure_kafka.mutual_tls())
    try:
        pipeline.start_worker()
        pipeline.produce_json(events("mtls", 15))
        assert len(pipeline.read("warehouse", 15)) == 15
    finally:
        pipeline.stop_all()


@pytest.mark.parametrize("refusal", ["wrong password", "untrusted certificate"])
def test_refused_credentials_stop_the_worker_within_seconds_having_consumed_nothing(
    secure_kafka: SecureKafka, stack: StackEndpoints, tmp_path: Path, refusal: str
) -> None:
    if refusal == "wrong password":
        env, says = secure_kafka.sasl_ssl(password="not-the-password"), "refused the credentials"
    else:
        env, says = secure_kafka.sasl_ssl(ca=secure_kafka.stranger_ca.cert), "does not trust"
    pipeline = secure_pipeline(secure_kafka, stack, tmp_path, env)
    pipeline.produce_json(events("refused", 5))
    worker = pipeline.start_worker(wait=False)
    started = time.monotonic()
    try:
        code = worker.process.wait(30)
    finally:
        pipeline.stop_all()
    assert code != 0 and time.monotonic() - started < 30
    assert says in worker.log() and "ENRICHER_BROKER_S" in worker.log()
    assert PASSWORD not in worker.log() and "not-the-password" not in worker.log()
    assert pipeline.read("warehouse", 0, timeout=2) == []  # consumed nothing

    collector = subprocess.run(
        [sys.executable, "-m", "streams.cli", "collector"],
        env={**pipeline.env(), "ENRICHER_COLLECTOR_WRITE_KEYS": "k"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert collector.returncode == 3 and says in collector.stderr


@dataclass
class SecureRedis:
    url: str
    ca: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    """redis-server with TLS only and an ACL user (the default user off)."""
    root = tmp_path_factory.mktemp("secure-redis")
    ca = make_ca(root, "redis-ca")
    server = issue(ca, root, "redis", server=True)
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [
            binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key),
            "--tls-ca-cert-file", str(ca.cert), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(root),
            "--user", "default", "off",
            "--user", f"{USER}", "on", f">{PASSWORD}", "~*", "&*", "+@all",
        ],
        stdout=(root / "redis.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(ca.cert), socket_timeout=1)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)
    try:
        yield SecureRedis(url, ca.cert, process)
    finally:
        process.terminate()
        process.wait(10)


def test_state_in_redis_with_an_acl_user_over_tls(
    secure_redis: SecureRedis, stack: StackEndpoints, tmp_path: Path
) -> None:
    pipeline = Pipeline(stack, tmp_path)
    pipeline.extra_env.update(
        ENRICHER_REDIS_URL=secure_redis.url, ENRICHER_REDIS_TLS_CAFILE=str(secure_redis.ca)
    )
    try:
        worker = pipeline.start_worker()
        pipeline.produce_json(
            [("dev-a", {"type": "identify", "userId": "u-tls", "messageId": "tls-1"})]
        )
        assert len(pipeline.read("warehouse", 1)) == 1
        status, found = worker.get("/devices/dev-a")
        assert status == 200 and found["userId"] == "u-tls"  # the state is in that Redis
    finally:
        pipeline.stop_all()


def test_a_wrong_redis_password_stops_the_worker_with_a_clear_error(
    secure_redis: SecureRedis, stack: StackEndpoints, tmp_path: Path
) -> None:
    pipeline = Pipeline(stack, tmp_path)
    pipeline.extra_env.update(
        ENRICHER_REDIS_URL=secure_redis.url.replace(PASSWORD, "wrong-one"),
        ENRICHER_REDIS_TLS_CAFILE=str(secure_redis.ca),
    )
    worker = pipeline.start_worker(wait=False)
    try:
        assert worker.process.wait(30) != 0
    finally:
        pipeline.stop_all()
    assert "Redis refused the user and password of ENRICHER_REDIS_URL" in worker.log()
    assert "wrong-one" not in worker.log()


def test_lookups_need_a_bearer_token(stack: StackEndpoints, tmp_path: Path) -> None:
    pipeline = Pipeline(stack, tmp_path)
    worker = pipeline.start_worker()
    try:
        pipeline.produce_json([("dev-t", {"type": "identify", "userId": "u-t", "messageId": "t"})])
        assert len(pipeline.read("warehouse", 1)) == 1
        assert worker.get("/devices/dev-t")[0] == 200  # with the token
        status, body = worker.get("/devices/dev-t", token=None)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert worker.get("/users/u-t", token="not-a-token")[0] == 401
        for open_path in ("/healthz", "/metrics", "/stats"):
            assert worker.get_status(open_path) in (200, 503)  # open, no personal data
        for faust_view in ("/router/", "/table/", "/graph/", "/"):
            assert worker.get_status(faust_view) == 404, faust_view
    finally:
        pipeline.stop_all()

    (tmp_path / "unconfigured").mkdir()
    unconfigured = Pipeline(stack, tmp_path / "unconfigured")
    unconfigured.extra_env["ENRICHER_LOOKUP_TOKENS"] = ""
    worker = unconfigured.start_worker()
    try:
        status, body = worker.get("/devices/dev-t")
        assert status == 403 and "ENRICHER_LOOKUP_TOKENS" in body["error"]["message"]
    finally:
        unconfigured.stop_all()
    assert LOOKUP_TOKEN not in worker.log()
    assert os.environ.get("ENRICHER_LOOKUP_OPEN") is None


def test_a_gzip_bomb_is_refused_with_413_without_inflating_it(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    import zlib

    pipeline = Pipeline(stack, tmp_path)
    collector = CollectorProcess.start(pipeline.env(), tmp_path / "collector.log")
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(16 * 1024 * 1024)
    parts = [compressor.compress(b'{"batch": [')] + [compressor.compress(zeros) for _ in range(256)]
    bomb = b"".join(parts) + compressor.flush()  # 4 GiB inflated, a few MB on the wire
    assert len(bomb) < 10 * 1024 * 1024
    started = time.monotonic()
    reply = collector.post(
        "/v1/batch", bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert reply.status == 413 and reply.json()["code"] == "too_large"
    assert time.monotonic() - started < 30
    rss_kb = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{collector.process.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
    )
    # the bomb was never inflated whole: the collector's peak stays far below its 4 GiB
    assert rss_kb < 400 * 1024, f"the collector peaked at {rss_kb // 1024} MB"


def test_oversized_urls_headers_and_cookies_are_refused(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    pipeline = Pipeline(stack, tmp_path)
    collector = CollectorProcess.start(pipeline.env(), tmp_path / "collector.log")
    message = {"type": "track", "event": "E", "userId": "u"}
    assert collector.post("/v1/track", message).status == 200
    assert collector.post("/v1/track?" + "a" * 20_000, message).status in (400, 414)
    assert collector.post("/v1/track", message, {"X-Big": "b" * 20_000}).status in (400, 431)
    assert collector.post("/v1/track", message, {"Cookie": "did=" + "c" * 20_000}).status in (
        400,
        431,
    )


def test_with_a_device_cookie_cors_never_echoes_an_unlisted_origin(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    pipeline = Pipeline(stack, tmp_path)
    env = {
        **pipeline.env(),
        "ENRICHER_COLLECTOR_DEVICE_COOKIE": "did",
        "ENRICHER_COLLECTOR_CORS_ORIGINS": "*,https://shop.example",
    }
    collector = CollectorProcess.start(env, tmp_path / "collector.log")
    message = {"type": "track", "event": "E", "userId": "u"}
    listed = collector.post("/v1/track", message, {"Origin": "https://shop.example"})
    assert listed.headers.get("Access-Control-Allow-Origin") == "https://shop.example"
    assert listed.headers.get("Access-Control-Allow-Credentials") == "true"
    stranger = collector.post("/v1/track", message, {"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_no_secret_is_printed(stack: StackEndpoints, tmp_path: Path) -> None:
    secrets = {
        "ENRICHER_BROKER_SASL_PASSWORD": "sasl-secret-1",
        "ENRICHER_LOOKUP_TOKENS": "lookup-secret-2",
        "ENRICHER_COLLECTOR_WRITE_KEYS": "write-secret-3",
        "ENRICHER_REDIS_URL": "redis://user:redis-secret-4@127.0.0.1:1/0",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENRICHER_")}
    for command in (["settings"], ["--help"]):
        shown = subprocess.run(
            [sys.executable, "-m", "streams.cli", *command],
            env={**env, **secrets},
            capture_output=True,
            text=True,
            timeout=60,
        )
        for secret in ("sasl-secret-1", "lookup-secret-2", "write-secret-3"):
            assert secret not in shown.stdout + shown.stderr, (command, secret)
    pipeline = Pipeline(stack, tmp_path)
    pipeline.extra_env.update(
        {k: v for k, v in secrets.items() if k != "ENRICHER_REDIS_URL"},
        ENRICHER_BROKER_SECURITY_PROTOCOL="PLAINTEXT",
    )
    worker = pipeline.start_worker()
    collector = CollectorProcess.start(pipeline.env(), tmp_path / "collector.log")
    stats = collector.request("/stats")
    pipeline.stop_all()
    collector.stop()
    for secret in ("sasl-secret-1", "lookup-secret-2", "write-secret-3"):
        assert secret not in worker.log() + collector.log() + stats.body.decode()
