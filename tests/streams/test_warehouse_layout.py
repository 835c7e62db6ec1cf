"""The warehouse layout (pure): tables, flattened columns, inferred types, fitting values."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.sinks.warehouse_layout import (
    event_table,
    fit,
    infer_type,
    merge_profiles,
    plan_table,
    snake_case,
    table_rows,
)

MESSAGE = {
    "messageId": "m1",
    "anonymousId": "a1",
    "userId": "u1",
    "receivedAt": "2026-11-29T01:00:00.000Z",
    "sentAt": "2026-11-29T01:00:00.000Z",
    "originalTimestamp": "2026-11-29T00:59:59.000Z",
    "timestamp": "2026-11-29T01:00:00.000Z",
    "context": {"ip": "1.2.3.4", "page": {"path": "/a"}, "traits": {"planId": "pro"}},
    "integrations": {},
}


def test_names_become_snake_case_identifiers() -> None:
    assert snake_case("planId") == "plan_id"
    assert snake_case("Order Completed") == "order_completed"
    assert snake_case("HTTPStatus") == "http_status"
    assert snake_case("2nd try!") == "_2nd_try"
    assert snake_case("") == "_"
    long = snake_case("x" * 100)
    assert len(long) == 63 and long != snake_case("x" * 99)


def test_track_events_go_to_tracks_and_a_table_named_after_the_event() -> None:
    rows = table_rows(
        {
            **MESSAGE,
            "type": "track",
            "event": "Order Completed",
            "properties": {"revenue": 5, "item": {"sku": "A"}, "tags": ["x"]},
        }
    )
    assert [r.table for r in rows] == ["tracks", "order_completed"]
    tracks, named = (r.values for r in rows)
    assert tracks["event"] == "order_completed" and tracks["event_text"] == "Order Completed"
    assert "revenue" not in tracks
    assert named["revenue"] == 5 and named["item_sku"] == "A" and named["tags"] == '["x"]'
    assert named["context_ip"] == "1.2.3.4" and named["context_page_path"] == "/a"
    assert named["context_traits_plan_id"] == "pro"
    assert named["id"] == "m1" and named["received_at"] == MESSAGE["receivedAt"]


def test_an_event_named_like_a_standard_table_gets_its_own_table() -> None:
    assert event_table("Users") == "_users"
    assert event_table("Signed Up") == "signed_up"


def test_identify_fills_identifies_and_the_users_row() -> None:
    rows = table_rows({**MESSAGE, "type": "identify", "traits": {"email": "e", "id": "t"}})
    assert [r.table for r in rows] == ["identifies", "users"]
    identifies, users = (r.values for r in rows)
    assert identifies["email"] == "e"
    assert identifies["id"] == "m1" and identifies["trait_id"] == "t"  # reserved names prefixed
    assert users == {
        "id": "u1",
        "received_at": MESSAGE["receivedAt"],
        "email": "e",
        "trait_id": "t",
    }


def test_an_anonymous_identify_makes_no_users_row() -> None:
    rows = table_rows({**MESSAGE, "userId": None, "type": "identify", "traits": {"a": 1}})
    assert [r.table for r in rows] == ["identifies"]


def test_group_fills_groups_and_accounts_page_screen_and_alias_their_tables() -> None:
    group = table_rows({**MESSAGE, "type": "group", "groupId": "g", "traits": {"name": "Acme"}})
    assert [(r.table, r.values.get("name")) for r in group] == [
        ("groups", "Acme"),
        ("accounts", "Acme"),
    ]
    assert group[0].values["group_id"] == "g" and group[1].values["id"] == "g"
    page = table_rows({**MESSAGE, "type": "page", "name": "Home", "properties": {"path": "/"}})
    assert page[0].table == "pages" and page[0].values["path"] == "/"
    assert table_rows({**MESSAGE, "type": "screen", "name": "S"})[0].table == "screens"
    alias = table_rows({**MESSAGE, "type": "alias", "previousId": "p"})
    assert alias[0].table == "aliases" and alias[0].values["previous_id"] == "p"


def test_new_columns_get_types_from_their_first_value() -> None:
    assert infer_type(True) == "boolean"
    assert infer_type(3) == "double precision"
    assert infer_type(2.5) == "double precision"
    assert infer_type("2026-11-29T01:00:00Z") == "timestamptz"
    assert infer_type("2026-11-29") == "timestamptz"
    assert infer_type("2026-13-45") == "text"
    assert infer_type("hello") == "text"


def test_values_that_can_be_converted_are_converted() -> None:
    assert fit("3.5", "double precision") == 3.5
    assert fit(3, "double precision") == 3.0
    assert fit("TRUE", "boolean") is True
    assert fit(4.0, "text") == "4.0"
    assert fit(False, "text") == "false"
    assert fit("2026-11-29T01:00:00Z", "timestamptz") == datetime(2026, 11, 29, 1, tzinfo=UTC)


def test_a_value_that_does_not_fit_widens_its_column_to_text_and_nothing_is_dropped() -> None:
    existing = {"id": "text", "received_at": "timestamptz", "revenue": "double precision"}
    plan = plan_table(
        "order_completed", [{"id": "m1", "revenue": 1}, {"id": "m2", "revenue": "lots"}], existing
    )
    assert plan.widen == ["revenue"] and not plan.add
    assert [row["revenue"] for row in plan.rows] == ["1", "lots"]


def test_a_new_column_takes_text_when_its_values_disagree_within_a_batch() -> None:
    plan = plan_table(
        "t", [{"id": "a", "x": 1}, {"id": "b", "x": "one"}, {"id": "c", "y": None}], {}
    )
    assert plan.add == {"x": "text"} and not plan.widen
    assert [row["x"] for row in plan.rows[:2]] == ["1", "one"]
    assert "y" not in plan.columns  # a null alone makes no column


def test_a_new_table_starts_with_the_standard_columns() -> None:
    plan = plan_table("tracks", [{"id": "a", "received_at": "2026-11-29T01:00:00Z"}], {})
    assert plan.columns["received_at"] == "timestamptz" and plan.columns["sent_at"] == "timestamptz"
    assert not plan.add


def test_a_bad_standard_timestamp_widens_the_column_rather_than_losing_the_value() -> None:
    plan = plan_table("tracks", [{"id": "a", "sent_at": "yesterday"}], {})
    assert plan.widen == ["sent_at"] and plan.rows[0]["sent_at"] == "yesterday"


def test_profile_rows_keep_the_latest_values_per_id() -> None:
    rows = [
        {"id": "u1", "received_at": "2026-11-29T02:00:00.000Z", "email": "new", "plan": None},
        {"id": "u1", "received_at": "2026-11-29T01:00:00.000Z", "email": "old", "plan": "pro"},
        {"id": "u2", "received_at": "2026-11-29T01:00:00.000Z", "email": "x"},
    ]
    merged = {row["id"]: row for row in merge_profiles(rows)}
    assert merged["u1"] == {
        "id": "u1",
        "received_at": "2026-11-29T02:00:00.000Z",
        "email": "new",
        "plan": "pro",
    }
    assert merged["u2"]["email"] == "x"
