"""A batch lets go of each parsed event once it is applied (issue 21: its objects are freed
while still in the processor's caches, not with the whole batch at its end). Applying it again
(R34: a concurrent save, the batch before not saved as handed off) parses the record again,
and must see the very event it saw the first time: cleaned of its placeholder ids (R36)."""

from __future__ import annotations

import orjson

from enrichers import Policy, RawEvent, Source, parse_raw_event, prepare_event
from streams.worker.batch import _Accepted
from streams.worker.records import InRecord

POLICY = Policy()


def accepted(document: dict[str, object]) -> _Accepted:
    record = InRecord("events.raw", 0, 7, b"dev-1", orjson.dumps(document), 1_764_410_000_000)
    parsed = parse_raw_event(record.value)
    assert isinstance(parsed, RawEvent)
    source = Source(record.topic, record.partition, record.offset, "dev-1", record.timestamp_ms)
    prepared = prepare_event(parsed, source, POLICY)
    return _Accepted(record, prepared.event, prepared.source, prepared.device, ())


def test_an_event_let_go_is_parsed_and_cleaned_again_as_it_was_accepted() -> None:
    item = accepted(
        {
            "type": "identify",
            "messageId": "m-1",
            "userId": "undefined",  # R36: a placeholder, taken out when accepted
            "anonymousId": "aid-1",
            "traits": {"plan": "pro"},
        }
    )
    applied = item.applying(POLICY)
    again = item.event(POLICY)
    assert again is not applied, "the parsed event was kept after it was applied"
    assert again == applied
    assert "userId" not in again.fields


def test_an_event_not_let_go_is_the_one_accepted() -> None:
    item = accepted({"type": "track", "event": "Opened", "anonymousId": "aid-1"})
    first = item.event(POLICY)
    assert item.event(POLICY) is first
    assert item.applying(POLICY) is first
