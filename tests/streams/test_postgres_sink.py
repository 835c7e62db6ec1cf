"""The postgres sink against a real PostgreSQL (its own scratch database), without Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from streams.sinks import PermanentSinkError, RetryableSinkError, SinkRecord
from streams.sinks.options import COMMON_OPTIONS
from streams.sinks.postgres import PostgresSink
from tests.sinks import columns, query, scratch_database


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with scratch_database() as url:
        yield url


def loader(dsn: str, schema: str = "public") -> PostgresSink:
    config: dict[str, Any] = {option.name: option.default for option in COMMON_OPTIONS}
    config.update(dsn=dsn, schema=schema, connect_timeout=5.0)
    return PostgresSink(config)


def message(message_id: str, kind: str = "track", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind,
        "messageId": message_id,
        "anonymousId": "a1",
        "userId": "u1",
        "receivedAt": "2026-11-29T01:00:00.000Z",
        "timestamp": "2026-11-29T01:00:00.000Z",
        "originalTimestamp": "2026-11-29T01:00:00.000Z",
        "context": {},
        "integrations": {},
    }
    return {**base, **fields}


def records(*messages: dict[str, Any]) -> list[SinkRecord]:
    return [SinkRecord(m, "events.warehouse", 0, n, None, 0) for n, m in enumerate(messages)]


def load(sink: PostgresSink, *batches: Sequence[SinkRecord]) -> None:
    async def scenario() -> None:
        await sink.start()
        try:
            for batch in batches:
                await sink.write(batch)
        finally:
            await sink.stop()

    asyncio.run(scenario())


def test_loading_a_batch_twice_adds_no_row(dsn: str) -> None:
    batch = records(
        message("r1", event="Repeated", properties={"n": 1}),
        message("r2", event="Repeated", properties={"n": 2}),
    )
    load(loader(dsn), batch, batch)
    load(loader(dsn), batch)  # a restarted loader, too
    assert query(dsn, "SELECT id, n FROM repeated ORDER BY id") == [("r1", 1.0), ("r2", 2.0)]


def test_a_users_row_keeps_the_newest_identify_even_when_an_older_one_comes_later(
    dsn: str,
) -> None:
    newer = message(
        "i2", "identify", userId="late", receivedAt="2026-11-29T02:00:00.000Z", traits={"v": "new"}
    )
    older = message(
        "i1", "identify", userId="late", receivedAt="2026-11-29T01:00:00.000Z", traits={"v": "old"}
    )
    load(loader(dsn), records(newer), records(older))
    assert query(dsn, "SELECT v FROM users WHERE id = 'late'") == [("new",)]
    assert query(dsn, "SELECT count(*) FROM identifies WHERE user_id = 'late'") == [(2,)]


def test_a_message_without_message_id_is_rejected_alone(dsn: str) -> None:
    sink = loader(dsn)
    batch = records(message("ok1", event="Lonely"), message(None, event="Lonely"))  # type: ignore[arg-type]

    async def scenario() -> None:
        await sink.start()
        try:
            with pytest.raises(PermanentSinkError) as raised:
                await sink.write(batch)
            assert raised.value.records == [batch[1]]
        finally:
            await sink.stop()

    asyncio.run(scenario())
    assert query(dsn, "SELECT id FROM lonely") == [("ok1",)]


def test_two_loaders_adding_columns_to_one_table_at_once_both_succeed(dsn: str) -> None:
    first, second = loader(dsn), loader(dsn)

    async def add_columns(n: int, sink: PostgresSink) -> None:
        for i in range(5):  # one write at a time per loader, as the runner does
            props = {f"p{n}_{i}": i}
            await sink.write(records(message(f"c{n}-{i}", event="Contended", properties=props)))

    async def scenario() -> None:
        await asyncio.gather(first.start(), second.start())
        try:
            await asyncio.gather(add_columns(0, first), add_columns(1, second))
        finally:
            await asyncio.gather(first.stop(), second.stop())

    asyncio.run(scenario())
    found = columns(dsn, "contended")
    assert {f"p{n}_{i}" for n in range(2) for i in range(5)} <= set(found)
    assert query(dsn, "SELECT count(*) FROM contended") == [(10,)]


def test_tables_go_into_the_configured_schema(dsn: str) -> None:
    load(loader(dsn, schema="shop"), records(message("s1", "page", name="Home")))
    assert query(dsn, "SELECT id, name FROM shop.pages") == [("s1", "Home")]


def test_a_message_postgresql_cannot_hold_is_rejected_and_the_rest_of_its_batch_loaded(
    dsn: str,
) -> None:
    sink = loader(dsn)
    wide = message("w1", event="Wide", properties={f"p{n}": n for n in range(1700)})
    batch = records(message("w0", event="Wide", properties={"p0": 0}), wide)

    async def scenario() -> None:
        await sink.start()
        try:
            with pytest.raises(PermanentSinkError) as raised:
                await sink.write(batch)  # over PostgreSQL's 1,600 columns a table
            assert raised.value.records == [batch[1]]
        finally:
            await sink.stop()

    asyncio.run(scenario())
    assert query(dsn, "SELECT id FROM wide") == [("w0",)]


def test_a_database_that_is_not_there_is_a_retryable_error(dsn: str) -> None:
    sink = loader(dsn.rsplit("/", 1)[0] + "/enricher_test_missing_database")
    with pytest.raises(RetryableSinkError):
        asyncio.run(sink.start())


def test_a_lost_connection_is_retryable_and_the_next_write_reconnects(dsn: str) -> None:
    sink = loader(dsn)
    database = dsn.rsplit("/", 1)[1]

    async def scenario() -> None:
        await sink.start()
        try:
            await sink.write(records(message("l1", event="Lost")))
            query(
                dsn.rsplit("/", 1)[0] + "/postgres",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                database,
            )
            with pytest.raises(RetryableSinkError):
                await sink.write(records(message("l2", event="Lost")))
            await sink.write(records(message("l2", event="Lost")))  # the runner's retry
        finally:
            await sink.stop()

    asyncio.run(scenario())
    assert query(dsn, "SELECT id FROM lost ORDER BY id") == [("l1",), ("l2",)]
