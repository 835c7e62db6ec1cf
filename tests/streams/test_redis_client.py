"""ENRICHER_REDIS_URL names one Redis or a Redis Cluster (``redis+cluster://``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.dev.cluster import DevCluster
from streams.dev.stack import DevStack
from streams.settings import Settings
from streams.state.redis_client import cluster_answers, cluster_seeds, connect, is_cluster
from streams.worker.retry import is_transient


def test_a_cluster_url_is_a_valid_setting() -> None:
    url = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
    assert Settings.load(environ={"ENRICHER_REDIS_URL": url}).redis_url == url


def test_cluster_url_names_its_seed_nodes() -> None:
    assert cluster_seeds("redis+cluster://user:pw@a:7000, b:7001,[::1]:7002/0") == [
        ("a", 7000),
        ("b", 7001),
        ("::1", 7002),
    ]
    with pytest.raises(ValueError, match="HOST:PORT"):
        cluster_seeds("redis+cluster://a")


def test_credentials_in_a_cluster_url_reach_the_connections() -> None:
    client = connect("rediss+cluster://alice:s%40cret@a:7000")
    assert isinstance(client, RedisCluster)
    kwargs = client.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("alice", "s@cret")
    assert kwargs["connection_class"].__name__ == "SSLConnection"


def test_the_client_follows_the_url(redis_url: str) -> None:
    async def roundtrip() -> tuple[bool, object]:
        client = connect(redis_url)
        try:
            return is_cluster(client), await client.ping()
        finally:
            await client.aclose()

    cluster, pong = asyncio.run(roundtrip())
    assert cluster == redis_url.startswith("redis+cluster://")
    assert pong is True


def test_a_cluster_failover_is_waited_out_not_a_crash() -> None:
    assert is_transient(ClusterDownError("CLUSTERDOWN The cluster is down"))
    assert is_transient(MasterDownError("MASTERDOWN Link with MASTER is down"))
    assert not is_transient(ResponseError("CROSSSLOT Keys in request don't hash to the same slot"))


def test_an_unreachable_cluster_is_waited_out_not_a_crash() -> None:
    try:
        try:
            raise RedisConnectionError("Connection refused")
        except RedisConnectionError as cause:
            raise RedisClusterException("Redis Cluster cannot be connected") from cause
    except RedisClusterException as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(RedisClusterException("Keys in request don't hash to the same slot"))


def test_the_development_stack_uses_a_given_cluster(redis_cluster: str) -> None:
    """``make run`` / ``enricher demo`` with a cluster URL keep state in that cluster."""
    assert cluster_answers(redis_cluster)
    with DevStack(redis_url=redis_cluster) as endpoints:
        assert endpoints.redis_url == redis_cluster


def test_a_cluster_that_is_not_there_does_not_answer(tmp_path: Path) -> None:
    with DevCluster(tmp_path) as cluster:
        url = cluster.url
    assert not cluster_answers(url, timeout=0.5)
