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

import ssl
from collections.abc import Callable
from typing import Any, Final, TypeAlias
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import AuthenticationError, NoPermissionError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.settings import Settings

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


_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # redis-py's own packer then (the hiredis extra not installed)
    _hiredis_pack = None

PACKED_BY_HIREDIS: Final = frozenset({"EVALSHA", "MGET"})
"""The batch path's commands (issue 21): thousands of arguments per batch, all ``str``, ``bytes``
or ``int`` built by the store."""


class _HiredisPacking:
    """Connection mixin: the batch path's commands packed by hiredis in one C call. redis-py
    passes each argument through its ``Encoder`` in Python first (0.48 against 0.09 µs per
    argument measured here); for ``str``, ``bytes`` and ``int`` the bytes sent are the same
    (tested). Other commands, and any argument hiredis does not take, go through redis-py."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if _hiredis_pack is not None and args[0] in PACKED_BY_HIREDIS:
            try:
                return [_hiredis_pack(args)]
            except TypeError:
                pass
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


_PACKING: dict[type[Any], type[Any]] = {}


def hiredis_packing(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` (plain, TLS or Unix socket) with :class:`_HiredisPacking`."""
    if issubclass(connection_class, _HiredisPacking):
        return connection_class
    packing = _PACKING.get(connection_class)
    if packing is None:
        name = connection_class.__name__
        packing = _PACKING[connection_class] = type(name, (_HiredisPacking, connection_class), {})
    return packing


def connect(url: str, **options: Any) -> RedisClient:
    """A client for ``url`` (not connected yet: the first command connects). ``options`` go
    to every connection (e.g. ``socket_timeout``)."""
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT)
    if not is_cluster_url(url):
        client = aioredis.from_url(url, **options)
        pool = client.connection_pool
        pool.connection_class = hiredis_packing(pool.connection_class)
        return client
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
    cluster = RedisCluster(startup_nodes=nodes, **options)
    # the seeds' connections, and those of the nodes discovered later
    for node in cluster.startup_nodes:
        node.connection_class = hiredis_packing(node.connection_class)
    kwargs = cluster.connection_kwargs
    kwargs["connection_class"] = hiredis_packing(kwargs["connection_class"])
    return cluster


def connect_to(settings: Settings) -> RedisClient:
    """The client of ``ENRICHER_REDIS_URL``, with ``ENRICHER_REDIS_TLS_CAFILE`` for TLS."""
    options: dict[str, Any] = {}
    if settings.redis_tls_cafile:
        options["ssl_ca_certs"] = settings.redis_tls_cafile
    return connect(settings.redis_url, **options)


class RedisAccessDenied(RuntimeError):
    """Redis refused the credentials or the TLS handshake failed: stop, do not wait."""


async def check_redis_access(client: RedisClient) -> None:
    """PING once: raises :class:`RedisAccessDenied` naming the setting to fix when Redis
    refuses the user or password of ``ENRICHER_REDIS_URL`` or its certificate is not trusted;
    an unreachable Redis is an outage (waited out by the callers' retries)."""
    try:
        await client.ping()
    except (AuthenticationError, NoPermissionError) as exc:
        raise RedisAccessDenied(
            "Redis refused the user and password of ENRICHER_REDIS_URL "
            f"({type(exc).__name__}): check them, and the user's ACL"
        ) from None
    except RedisConnectionError as exc:
        if isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc):
            raise RedisAccessDenied(
                "TLS with Redis failed (its certificate is not trusted, or the port speaks no "
                "TLS): check ENRICHER_REDIS_URL (rediss://) and ENRICHER_REDIS_TLS_CAFILE"
            ) from None
    except RedisClusterException:
        return  # a cluster not reachable yet: an outage


async def unlink_matching(client: RedisClient, pattern: str, chunk: int = 1000) -> int:
    """Remove every key matching ``pattern`` (a SCAN, on every primary of a cluster, and UNLINK
    in chunks); returns how many. For the bench's and the tests' apps, not for production."""
    removed = 0
    keys: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=chunk):
        keys.append(key)
        if len(keys) >= chunk:
            removed += await client.unlink(*keys)
            keys = []
    if keys:
        removed += await client.unlink(*keys)
    return removed


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
