"""Building the Redis client from ``ENRICHER_REDIS_URL``: one Redis, or a Redis Cluster.

``redis://HOST:PORT/DB``, ``rediss://...`` and ``unix://PATH`` name one Redis server.
``redis+cluster://HOST:PORT[,HOST:PORT...]`` (``rediss+cluster://`` for TLS) names a Redis
Cluster by one or more of its nodes (seeds: the client discovers the rest and follows slot
moves and failovers). User name and password go in the URL as usual
(``redis+cluster://user:secret@10.0.0.1:7000,10.0.0.2:7000``).

Everything above this module talks to a :data:`RedisClient`; :class:`streams.state.store.StateStore`
groups each batch's commands per hash slot, and redis-py's cluster pipeline sends them as one
round trip per node."""

from __future__ import annotations

from typing import Any, Final, TypeAlias
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""What the state store and the lookups are given: one Redis or a Redis Cluster."""

CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
SOCKET_TIMEOUT: Final = 5.0


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The (host, port) seed nodes of a ``redis+cluster://`` URL."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    seeds = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT in the cluster URL, got {part!r}")
        seeds.append((host.strip("[]"), int(port)))
    return seeds


def connect(url: str, **options: Any) -> RedisClient:
    """A client for ``url`` (not connected yet: the first command connects). ``options`` go
    to every connection (e.g. ``socket_timeout``)."""
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT)
    if not is_cluster_url(url):
        return aioredis.from_url(url, **options)
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if has_password:
            options.setdefault("username", unquote(user) or None)
            options.setdefault("password", unquote(password))
        else:
            options.setdefault("password", unquote(user))
    if parts.scheme.lower() == "rediss+cluster":
        options.setdefault("ssl", True)
    nodes = [ClusterNode(host, port) for host, port in cluster_seeds(url)]
    return RedisCluster(startup_nodes=nodes, **options)


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


def cluster_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether the Redis Cluster of a ``redis+cluster://`` URL answers PING through any of
    its seed nodes (synchronous, for the development stack's checks)."""
    from redis.cluster import RedisCluster as SyncRedisCluster
    from redis.exceptions import RedisClusterException, RedisError

    for host, port in cluster_seeds(url):
        try:
            client = SyncRedisCluster(
                host=host, port=port, socket_connect_timeout=timeout, socket_timeout=timeout
            )
        except (RedisError, RedisClusterException, OSError):
            continue
        try:
            if client.ping():
                return True
        except (RedisError, RedisClusterException, OSError):
            pass
        finally:
            client.close()
    return False
