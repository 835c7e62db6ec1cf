"""The console's window (issue 20): raw records matched with their outputs in any arrival
order, what the enricher did as badges, filters, and the differences between the forms."""

from __future__ import annotations

from typing import Any

import orjson

from streams.console.window import Window, differences, query_of

RAW = "events.raw"


def raw(window: Window, offset: int, event: dict[str, Any], key: str = "dev-1") -> None:
    window.add_raw(RAW, 0, offset, key.encode(), orjson.dumps(event), 1_700_000_000_000 + offset)


def warehouse(offset: int, message_id: str, **fields: Any) -> bytes:
    message = {
        "messageId": message_id,
        "type": "track",
        "event": "Viewed",
        "anonymousId": "a1",
        "_enrichment": {
            "device": "dev-1",
            "source": f"{RAW}/0/{offset}",
            "anonymousId": "call",
            "restored": False,
        },
        **fields,
    }
    return orjson.dumps(message)


def destinations(message_id: str) -> bytes:
    return orjson.dumps({"messageId": message_id, "type": "track", "anonymousId": "a1"})


def test_outputs_are_matched_to_their_raw_record_whatever_arrives_first() -> None:
    window = Window(10)
    assert window.add_output("destinations", destinations("m1")) is None  # waits
    assert window.add_output("warehouse", warehouse(0, "m1")) is None  # waits
    raw(window, 0, {"type": "track", "event": "Viewed", "messageId": "m1", "anonymousId": "a1"})
    entry = window.entries[f"{RAW}/0/0"]
    assert entry.warehouse is not None and entry.destinations is not None
    labels = [badge["label"] for badge in entry.badges()]
    assert "anonymousId explicit" in labels and "sent to destinations" in labels


def test_a_dead_letter_is_matched_by_its_source_and_shows_its_code() -> None:
    window = Window(10)
    window.add_raw(RAW, 3, 9, None, b"{not json", 0)
    letter = {"error": {"code": "invalid_json", "message": "bad"}, "source": {}}
    letter["source"] = {"topic": RAW, "partition": 3, "offset": 9}
    entry = window.add_output("deadletter", orjson.dumps(letter))
    assert entry is not None and entry.badges() == [
        {"kind": "error", "label": "dead letter: invalid_json"}
    ]
    assert entry.matches({"code": "invalid_json"}) and not entry.matches({"code": "too_large"})


def test_a_repeated_message_id_without_output_is_a_duplicate() -> None:
    window = Window(10)
    raw(window, 0, {"type": "track", "event": "E", "messageId": "m1"})
    window.add_output("warehouse", warehouse(0, "m1"))
    raw(window, 1, {"type": "track", "event": "E", "messageId": "m1"})
    assert [b["label"] for b in window.entries[f"{RAW}/0/1"].badges()] == ["duplicate"]


def test_filters_read_the_enriched_message_and_the_free_text() -> None:
    window = Window(10)
    raw(window, 0, {"type": "track", "event": "Viewed", "messageId": "m1"})
    window.add_output("warehouse", warehouse(0, "m1", userId="u-1"))  # userId from state
    raw(window, 1, {"type": "page", "messageId": "m2", "properties": {"path": "/docs"}}, "dev-2")
    assert [e.id for e in window.newest({"userId": "u-1"}, 10)] == [f"{RAW}/0/0"]
    assert [e.id for e in window.newest({"device": "dev-2"}, 10)] == [f"{RAW}/0/1"]
    assert [e.id for e in window.newest({"q": "/DOCS"}, 10)] == [f"{RAW}/0/1"]
    assert [e.id for e in window.newest({"type": "track", "event": "Viewed"}, 10)] == [f"{RAW}/0/0"]
    assert query_of([("userId", "u"), ("admin", "1"), ("q", "")]) == {"userId": "u"}


def test_the_window_keeps_the_most_recent_entries_only() -> None:
    window = Window(3)
    for offset in range(5):
        raw(window, offset, {"type": "track", "event": "E", "messageId": f"m{offset}"})
    assert [e.id for e in window.newest({}, 10)] == [f"{RAW}/0/{n}" for n in (4, 3, 2)]


def test_differences_name_what_was_added_changed_and_removed() -> None:
    before = {"context": {"ip": "203.0.113.7", "traits": {"plan": "pro"}}, "type": "track"}
    after = {"context": {"ip": "203.0.113.0"}, "type": "track", "userId": "u"}
    assert differences(before, after) == [
        {"path": "context.ip", "op": "changed", "before": "203.0.113.7", "after": "203.0.113.0"},
        {"path": "context.traits", "op": "removed", "before": {"plan": "pro"}},
        {"path": "userId", "op": "added", "after": "u"},
    ]
    assert differences({"n": 1}, {"n": 1.0}) == [
        {"path": "n", "op": "changed", "before": 1, "after": 1.0}
    ]
