"""ENRICHER_REDIS_URL names one Redis or a Redis Cluster (``redis+cluster://``)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    ClusterDownError,
    DataError,
    MasterDownError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.dev.cluster import DevCluster
from streams.dev.stack import DevStack
from streams.settings import Settings
from streams.state.redis_client import (
    PACKED_BY_HIREDIS,
    cluster_answers,
    cluster_seeds,
    connect,
    hiredis_packing,
    is_cluster,
    unlink_matching,
)
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
    assert issubclass(kwargs["connection_class"], SSLConnection)


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


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6379/0", SSLConnection),
        ("unix:///run/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_the_batch_path_commands_are_packed_by_hiredis_on_every_kind_of_connection(
    url: str, kind: type[Connection]
) -> None:
    pool = connect(url).connection_pool
    assert issubclass(pool.connection_class, kind)
    assert pool.connection_class is hiredis_packing(kind)


class RefusingEncoder:
    def encode(self, value: object) -> bytes:
        raise AssertionError("encoded by redis-py")


def test_packing_by_hiredis_sends_the_bytes_redis_py_sends() -> None:
    """Issue 21: EVALSHA and MGET go through hiredis in one call; the bytes are redis-py's."""
    fast, plain = hiredis_packing(Connection)(), Connection()
    record = b"~=1;raw/0=5\n" + bytes(range(256)) * 30  # past redis-py's 6,000-byte chunks
    commands = [
        ("EVALSHA", "ab" * 20, 2, "app:device:{é 😀}", "app:device:{}", 7, record, b"", -3),
        ("MGET", *(f"app:device:{{d{n}}}" for n in range(3000))),
        ("SCRIPT LOAD", "return 1"),  # not one of them: redis-py splits the name
        ("HSET", "k", "f", 1.5),
    ]
    for command in commands:
        assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command))
    assert b"".join(fast.pack_commands(commands)) == b"".join(plain.pack_commands(commands))
    assert {name for name, *_ in commands} & PACKED_BY_HIREDIS == {"EVALSHA", "MGET"}
    for packer in (fast, plain):  # what redis-py refuses is refused as before
        with pytest.raises(DataError):
            packer.pack_command("MGET", None)
    # and hiredis packed them: redis-py's encoder never saw an argument
    fast.encoder = plain.encoder = RefusingEncoder()
    fast._command_packer = plain._command_packer = None  # redis-py's packer: its encoder
    fast.pack_commands(commands[:2])
    with pytest.raises(AssertionError, match="encoded by redis-py"):
        plain.pack_commands(commands[:2])


def test_a_cluster_client_packs_by_hiredis_on_every_node(redis_cluster: str) -> None:
    async def classes() -> set[type[object]]:
        client = connect(redis_cluster)
        try:
            await client.ping()
            assert isinstance(client, RedisCluster)
            return {node.connection_class for node in client.get_nodes()}
        finally:
            await client.aclose()

    assert asyncio.run(classes()) == {hiredis_packing(Connection)}


def test_unlink_matching_removes_one_apps_keys_on_every_node(redis_url: str) -> None:
    async def run() -> tuple[int, list[bytes]]:
        client = connect(redis_url)
        try:
            gone, kept = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
            for n in range(2500):  # over many slots, more than one UNLINK
                await client.set(f"{gone}:device:{{d{n}}}", b"x")
            await client.set(f"{kept}:device:{{d1}}", b"x")
            removed = await unlink_matching(client, f"{gone}:*")
            left = [k async for k in client.scan_iter(match=f"{gone}:*")]
            left += [k async for k in client.scan_iter(match=f"{kept}:*")]
            await client.delete(f"{kept}:device:{{d1}}")
            return removed, left
        finally:
            await client.aclose()

    removed, left = asyncio.run(run())
    assert removed == 2500 and len(left) == 1 and b":device:{d1}" in left[0]


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
