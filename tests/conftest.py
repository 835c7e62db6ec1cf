"""Shared fixtures: the embedded development stack (a real Tansu broker and a real Redis)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streams.devcluster import DevCluster
from streams.devstack import DevStack, StackEndpoints
from tests.pipeline import stop_launched_since


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    """One broker and one Redis for the whole run; every test isolates itself by topic names
    and app id. ENRICHER_TEST_REDIS_URL picks the Redis (default: the local one, else a
    redis-server started for the run)."""
    redis_url = os.environ.get("ENRICHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    with DevStack(redis_url=redis_url) as endpoints:
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
