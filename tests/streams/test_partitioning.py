"""Records keep the partition Kafka's default partitioner gives their key (a device's messages
in order, on the partition any other producer of that key would use), computed in C."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.settings import Settings
from streams.worker import partitioning
from streams.worker.clients import new_producer
from streams.worker.partitioning import KeyPartitioner, murmur2, partition_for
from streams.worker.run import build_worker


@given(st.binary(max_size=200))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


def test_known_keys_land_where_the_java_client_puts_them() -> None:
    # Kafka's Utils.murmur2 ("21" and "foobar", from its own tests), as signed 32-bit ints
    assert murmur2(b"21") - (1 << 32) == -973932308
    assert murmur2(b"foobar") - (1 << 32) == -790332482
    assert partitioning._c_murmur2 is not None  # the declared dependency is installed


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=500))
def test_every_producer_partitions_as_aiokafkas_default(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partition_for(key, count) == expected
    assert KeyPartitioner()(key, partitions, partitions[:1]) == expected


def test_unkeyed_records_go_to_an_available_partition() -> None:
    assert {KeyPartitioner()(None, [0, 1, 2, 3], [2, 3]) for _ in range(50)} == {2, 3}
    assert KeyPartitioner()(None, [0, 1], []) in (0, 1)


def test_the_projects_producers_use_it() -> None:
    async def partitioner() -> object:
        return new_producer(Settings.load({}))._partitioner

    assert isinstance(asyncio.run(partitioner()), KeyPartitioner)


@pytest.fixture
def saved_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("saved_logging")
@pytest.mark.parametrize("loglevel", ["warning", "error"])
def test_a_quiet_worker_makes_no_debug_records(loglevel: str) -> None:
    """Issue 21: Faust's start-up spinner set the root logger to DEBUG at warning and above,
    so aiokafka made (and handled) a record for every debug call of every request."""
    worker = build_worker(Settings.load({}), loglevel)
    worker._setup_logging()
    assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.INFO)
