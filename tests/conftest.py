"""Shared fixtures: the development stack (a real broker and a real Redis).

The end-to-end tests run on Apache Kafka (the local KRaft node of streams/dev/kafka.py) when
Java and Maven are present, else on the embedded Tansu broker, and say which in the session
header. ``ENRICHER_TEST_BROKER=kafka|tansu|HOST:PORT`` chooses. Tests marked ``tansu_smoke``
run on Tansu as well, so that the zero-install path of ``make run`` stays proven."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import build

# ENRICHER_TEST_BUILD=pure: the Python sources, even where compiled modules are installed;
# =compiled: fail unless the compiled core runs (CI); unset: whichever is installed
_BUILD = os.environ.get("ENRICHER_TEST_BUILD", "").strip()
if _BUILD == "pure":
    build.prefer_sources()
elif build.stale_extensions():
    pytest.exit(
        "compiled modules are older than their sources (run `make install` to build them "
        f"again, or set ENRICHER_TEST_BUILD=pure): {', '.join(build.stale_extensions())}",
        returncode=4,
    )

from streams.dev.cluster import DevCluster  # noqa: E402 (after the build is chosen)
from streams.dev.kafka import KAFKA_VERSION, java_and_maven  # noqa: E402
from streams.dev.stack import DevStack, StackEndpoints  # noqa: E402
from tests.pipeline import LAUNCHED, stop_launched_since  # noqa: E402


def _choose_broker() -> tuple[str, str]:
    """(broker, why): ``kafka``, ``tansu`` or an external ``HOST:PORT``."""
    chosen = os.environ.get("ENRICHER_TEST_BROKER", "").strip()
    if chosen in ("", "kafka"):
        missing = java_and_maven()
        if missing is None:
            return "kafka", f"Apache Kafka {KAFKA_VERSION}, a local KRaft node"
        if chosen == "kafka":
            raise pytest.UsageError(f"ENRICHER_TEST_BROKER=kafka, but {missing}")
        return "tansu", (
            f"Tansu (embedded), because {missing}: install OpenJDK 17+ and Maven to run the "
            "end-to-end tests on Apache Kafka"
        )
    if chosen == "tansu":
        return "tansu", "Tansu (embedded), as ENRICHER_TEST_BROKER asks"
    if ":" not in chosen:
        raise pytest.UsageError(f"ENRICHER_TEST_BROKER={chosen!r}: kafka, tansu or HOST:PORT")
    return chosen, f"the broker at {chosen} (ENRICHER_TEST_BROKER)"


BROKER, BROKER_WHY = _choose_broker()


def pytest_report_header() -> list[str]:
    smoke = "; tests marked tansu_smoke also on Tansu" if BROKER != "tansu" else ""
    core = build.describe()
    wanted = {"pure": "core in pure Python", "compiled": "core compiled with mypyc"}
    if _BUILD in wanted and core != wanted[_BUILD]:
        pytest.exit(f"ENRICHER_TEST_BUILD={_BUILD}, but the {core}", returncode=4)
    return [f"broker: {BROKER_WHY}{smoke}", f"build: {core}"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tansu_smoke: also runs on the embedded Tansu broker (the make run path)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the session's broker; the Tansu smoke subset on Tansu as well."""
    if "stack" not in metafunc.fixturenames:
        return
    brokers = [BROKER]
    if BROKER != "tansu" and metafunc.definition.get_closest_marker("tansu_smoke"):
        brokers.append("tansu")
    metafunc.parametrize("stack", brokers, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Tansu smoke subset runs on the single Redis only: the Redis Cluster is the state's
    side, the same whatever the broker, and its runs on the session's broker cover it (each
    Tansu-and-cluster run cost the suite about 20 seconds)."""
    dropped = [item for item in items if _tansu_with_cluster(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def _tansu_with_cluster(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return bool(
        params.get("stack") == "tansu" and BROKER != "tansu" and params.get("pipeline") == "cluster"
    )


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[StackEndpoints]:
    """One broker and one Redis for the whole run; every test isolates itself by topic names
    and app id. ENRICHER_TEST_REDIS_URL picks the Redis (default: the local one, else a
    redis-server started for the run)."""
    broker: str = getattr(request, "param", BROKER)
    redis_url = os.environ.get("ENRICHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if broker not in ("kafka", "tansu"):  # an external broker and Redis, used as they are
        try:
            yield StackEndpoints(f"kafka://{broker}", broker, redis_url, "external")
        finally:
            stop_launched_since(0)
        return
    with DevStack(redis_url=redis_url, broker=broker) as endpoints:
        try:
            yield endpoints
        finally:
            stop_launched_since(0)  # nothing the tests started outlives the stack


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis Cluster of three masters (redis-server in cluster mode on free ports,
    joined by ``redis-cli --cluster create``), started on first use and stopped after the
    run: its ``redis+cluster://`` URL."""
    with DevCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


@pytest.fixture(params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest, stack: StackEndpoints) -> str:
    """Each test using it runs twice: on the single Redis and on the Redis Cluster."""
    if request.param == "cluster":
        url: str = request.getfixturevalue("redis_cluster")
        return url
    return stack.redis_url


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[DevStack]:
    """A stack of the test's own, on the session's kind of broker, for a test that kills or
    restarts the broker (Redis is the shared one)."""
    broker = BROKER if BROKER in ("kafka", "tansu") else "tansu"
    redis_url = os.environ.get("ENRICHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    stack = DevStack(redis_url=redis_url, workdir=tmp_path / "stack", broker=broker)
    stack.start()
    launched = len(LAUNCHED)
    try:
        yield stack
    finally:
        stop_launched_since(launched)
        stack.stop()


def needs_apache_kafka() -> pytest.MarkDecorator:
    """For a test of what only a real Kafka broker does (Tansu accepts any record size, keeps
    nothing over a restart...)."""
    return pytest.mark.skipif(BROKER == "tansu", reason=f"needs Apache Kafka: {BROKER_WHY}")
