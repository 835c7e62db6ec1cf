"""The postgres sink end to end: raw events -> worker -> events.warehouse -> ``enricher sink run
postgres`` -> tables Segment users query."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.pipeline import Pipeline
from tests.sinks import SinkProcess, columns, query, scratch_database, tables, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def dsn() -> Iterator[str]:
    with scratch_database() as url:
        yield url


def start_loader(pipeline: Pipeline, dsn: str, log: str = "sink.log", **env: str) -> SinkProcess:
    sink = SinkProcess.start(
        pipeline,
        "postgres",
        {
            "ENRICHER_SINK_POSTGRES_DSN": dsn,
            "ENRICHER_SINK_POSTGRES_BATCH_WITHIN": "0.05",
            **env,
        },
        log,
    )
    sink.wait_ready()
    return sink


def count(dsn: str, table: str) -> int:
    if table not in tables(dsn):
        return 0
    return int(query(dsn, f'SELECT count(*) FROM "{table}"')[0][0])


def first_round() -> list[tuple[str, dict[str, Any]]]:
    ip_context = {"ip": "203.0.113.7", "page": {"path": "/checkout"}}
    return [
        (
            "d1",
            {
                "type": "identify",
                "userId": "u1",
                "traits": {"email": "a@example.com", "planId": "pro", "age": 30},
                "context": {**ip_context, "traits": {"plan_id": "pro"}},
            },
        ),
        (
            "d1",
            {
                "type": "track",
                "event": "Order Completed",
                "properties": {
                    "revenue": 12.5,
                    "currency": "EUR",
                    "paidAt": "2026-11-29T01:00:00Z",
                },
                "context": ip_context,
            },
        ),
        ("d2", {"type": "page", "name": "Home", "properties": {"path": "/", "title": "Home"}}),
        ("d3", {"type": "screen", "name": "Settings", "properties": {"dark": True}}),
        ("d1", {"type": "group", "groupId": "g1", "traits": {"name": "Acme", "employees": 40}}),
        ("d1", {"type": "alias", "userId": "u1-new", "previousId": "u1"}),
    ]


def test_warehouse_loader_writes_segment_tables_adds_columns_and_widens_on_type_conflict(
    pipeline: Pipeline, dsn: str
) -> None:
    pipeline.start_worker()
    loader = start_loader(pipeline, dsn)
    pipeline.produce_json(first_round())
    expected = {"identifies", "users", "tracks", "order_completed", "pages", "screens"}
    expected |= {"groups", "accounts", "aliases"}
    assert wait_for(lambda: count(dsn, "aliases") == 1 and expected <= tables(dsn), 60), (
        loader.log()[-3000:]
    )
    warehouse = {r.json()["messageId"]: r.json() for r in pipeline.read("warehouse", 6)}

    identifies = columns(dsn, "identifies")
    assert identifies["received_at"] == "timestamp with time zone"
    assert identifies["age"] == "double precision"
    row = query(
        dsn,
        "SELECT id, user_id, anonymous_id, email, plan_id, context_ip, context_traits_plan_id,"
        " context_page_path FROM identifies",
    )
    (identify_id,) = [m for m, v in warehouse.items() if v["type"] == "identify"]
    assert row == [
        (
            identify_id,
            "u1",
            warehouse[identify_id]["anonymousId"],
            "a@example.com",
            "pro",
            "203.0.113.7",
            "pro",  # context.traits stays on the warehouse side (R25)
            "/checkout",
        )
    ]
    order = columns(dsn, "order_completed")
    assert order["revenue"] == "double precision"
    assert order["paid_at"] == "timestamp with time zone"
    assert "gift_wrap" not in order
    assert query(dsn, "SELECT event, event_text FROM tracks") == [
        ("order_completed", "Order Completed")
    ]
    assert query(dsn, "SELECT name, path, title FROM pages") == [("Home", "/", "Home")]
    assert query(dsn, "SELECT name, dark FROM screens") == [("Settings", True)]
    assert query(dsn, "SELECT group_id, name, employees FROM groups") == [("g1", "Acme", 40.0)]
    assert query(dsn, "SELECT id, name FROM accounts") == [("g1", "Acme")]
    assert query(dsn, "SELECT user_id, previous_id FROM aliases") == [("u1", "u1")]

    # second round: a new property (a new column) and a value that does not fit its column
    pipeline.produce_json(
        [
            (
                "d2",
                {
                    "type": "track",
                    "event": "Order Completed",
                    "properties": {"revenue": "lots", "currency": "USD", "giftWrap": True},
                },
            ),
            ("d1", {"type": "identify", "userId": "u1", "traits": {"email": "b@example.com"}}),
            # integrations (R29): an explicit false skips the loader; All: false does not,
            # the warehouse gets everything else (as Segment's warehouses do)
            ("d3", {"type": "track", "event": "Hidden", "integrations": {"postgres": False}}),
            (
                "d3",
                {"type": "track", "event": "Tools Only", "integrations": {"All": False, "X": True}},
            ),
        ]
    )
    assert wait_for(
        lambda: count(dsn, "order_completed") == 2 and count(dsn, "identifies") == 2, 60
    )
    order = columns(dsn, "order_completed")
    assert order["gift_wrap"] == "boolean"
    assert order["revenue"] == "text"  # widened, nothing dropped
    assert sorted(query(dsn, "SELECT revenue, currency, gift_wrap FROM order_completed")) == [
        ("12.5", "EUR", None),
        ("lots", "USD", True),
    ]
    # one row per user with the latest traits (R16: the identify carries the merged cache)
    assert query(dsn, "SELECT id, email, plan_id FROM users") == [("u1", "b@example.com", "pro")]
    assert wait_for(lambda: count(dsn, "tools_only") == 1, 30)
    assert "hidden" not in tables(dsn)
    assert sorted(query(dsn, "SELECT event_text FROM tracks")) == [
        ("Order Completed",),
        ("Order Completed",),
        ("Tools Only",),
    ]
    loader.stop()
    assert loader.process.returncode == 0


def test_killing_the_loader_midway_loses_nothing_and_duplicates_no_row(
    pipeline: Pipeline, dsn: str
) -> None:
    pipeline.start_worker()
    devices = 20
    events = [
        (
            f"dev-{n % devices}",
            {"type": "track", "event": "Clicked", "properties": {"n": n, "button": f"b{n % 7}"}},
        )
        for n in range(1000)
    ]
    pipeline.produce_json(events[:700])
    assert len(pipeline.read("warehouse", 700)) == 700
    loader = start_loader(pipeline, dsn, "sink-0.log", ENRICHER_SINK_POSTGRES_BATCH_MAX="5")
    assert wait_for(lambda: count(dsn, "clicked") > 0, 60), loader.log()[-3000:]
    loader.kill()  # SIGKILL: no goodbye, whatever was in flight is cut off
    at_kill = count(dsn, "clicked")
    assert 0 < at_kill < 700, "the kill should land while the loader is busy"
    pipeline.produce_json(events[700:])
    restarted = start_loader(pipeline, dsn, "sink-1.log")
    message_ids = {r.json()["messageId"] for r in pipeline.read("warehouse", 1000)}
    assert len(message_ids) == 1000
    assert wait_for(lambda: count(dsn, "clicked") >= 1000, 120), restarted.log()[-3000:]
    restarted.stop()
    assert count(dsn, "clicked") == 1000
    assert count(dsn, "tracks") == 1000
    loaded = {row[0] for row in query(dsn, "SELECT id FROM clicked")}
    assert loaded == message_ids
    numbers = sorted(int(row[0]) for row in query(dsn, "SELECT n FROM clicked"))
    assert numbers == list(range(1000))


def test_two_loaders_in_one_group_share_the_partitions_and_load_each_row_once(
    pipeline: Pipeline, dsn: str
) -> None:
    pipeline.start_worker()
    first = start_loader(pipeline, dsn, "sink-a.log", ENRICHER_SINK_POSTGRES_BATCH_MAX="20")
    second = start_loader(pipeline, dsn, "sink-b.log", ENRICHER_SINK_POSTGRES_BATCH_MAX="20")

    def last_assignment(log: str) -> str | None:
        lines = [line for line in log.splitlines() if "sink partitions assigned:" in line]
        return lines[-1].split("sink partitions assigned:")[1].strip() if lines else None

    def both_assigned() -> bool:
        # each member holds some partitions after the rebalance the second one caused
        return all(last_assignment(log) not in (None, "[]") for log in (first.log(), second.log()))

    assert wait_for(both_assigned, 60), first.log()[-2000:] + second.log()[-2000:]
    events = [
        (
            f"dev-{n % 40}",
            {"type": "track", "event": "Shared", "properties": {"n": n, f"k{n % 5}": n}},
        )
        for n in range(600)
    ]
    pipeline.produce_json(events)
    message_ids = {r.json()["messageId"] for r in pipeline.read("warehouse", 600)}
    assert wait_for(lambda: count(dsn, "shared") >= 600, 120)
    first.stop()
    second.stop()
    assert {row[0] for row in query(dsn, "SELECT id FROM shared")} == message_ids
    assert count(dsn, "shared") == 600
    assert {f"k{i}" for i in range(5)} <= set(columns(dsn, "shared"))
