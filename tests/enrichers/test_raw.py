"""Raw-event validation: every dead-letter code of CONTRACT "Dead letters"."""

from __future__ import annotations

import orjson
import pytest

from enrichers import RawEvent, RejectCode, Rejection, parse_raw_event


def rejection_code(value: bytes | None) -> RejectCode | None:
    result = parse_raw_event(value)
    return result.code if isinstance(result, Rejection) else None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"{not json", RejectCode.INVALID_JSON),
        (b"", RejectCode.INVALID_JSON),
        (b"[1, 2]", RejectCode.NOT_AN_OBJECT),
        (b'"identify"', RejectCode.NOT_AN_OBJECT),
        (b"null", RejectCode.NOT_AN_OBJECT),
        (b'{"type": "purchase"}', RejectCode.INVALID_TYPE),
        (b'{"event": "Clicked"}', RejectCode.INVALID_TYPE),
        (b'{"type": 7}', RejectCode.INVALID_TYPE),
        (b'{"type": "track"}', RejectCode.MISSING_EVENT),
        (b'{"type": "track", "event": ""}', RejectCode.MISSING_EVENT),
        (b'{"type": "track", "event": 5}', RejectCode.INVALID_FIELD),
        (b'{"type": "identify", "userId": {"id": 1}}', RejectCode.INVALID_FIELD),
        (b'{"type": "identify", "traits": "vip"}', RejectCode.INVALID_FIELD),
        (b'{"type": "page", "properties": [1]}', RejectCode.INVALID_FIELD),
        (b'{"type": "page", "options": {"context": 3}}', RejectCode.INVALID_FIELD),
        (b'{"type": "setUserTraits", "value": "x"}', RejectCode.INVALID_FIELD),
        (b'{"type": "setUserId", "value": []}', RejectCode.INVALID_FIELD),
        (b'{"type": "group", "groupId": true}', RejectCode.INVALID_FIELD),
        (b'{"type": "track", "event": "e", "timestamp": 17}', RejectCode.INVALID_FIELD),
        (b'{"type": "track", "event": "\xff\xfe"}', RejectCode.INVALID_ENCODING),
    ],
)
def test_bad_input_gets_its_dead_letter_code(value: bytes, code: RejectCode) -> None:
    assert rejection_code(value) is code


def test_value_over_32_kb_is_too_large() -> None:
    padding = "x" * (32 * 1024)
    value = orjson.dumps({"type": "track", "event": "e", "properties": {"p": padding}})
    assert rejection_code(value) is RejectCode.TOO_LARGE


def test_value_of_exactly_32_kb_is_accepted() -> None:
    skeleton = orjson.dumps({"type": "track", "event": "e", "properties": {"p": ""}})
    value = orjson.dumps(
        {"type": "track", "event": "e", "properties": {"p": "x" * (32 * 1024 - len(skeleton))}}
    )
    assert len(value) == 32 * 1024
    assert isinstance(parse_raw_event(value), RawEvent)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "identify", "userId": 42, "traits": None},
        {"type": "setAnonymousId", "value": 0},
        {"type": "setAnonymousId", "value": False},
        {"type": "setUserTraits", "value": None},
        {"type": "track", "event": "e", "options": {"anonymousId": False}},
        {"type": "alias", "userId": "u", "previousId": 3},
        {"type": "forget"},
    ],
)
def test_valid_events_are_accepted(event: dict[str, object]) -> None:
    assert isinstance(parse_raw_event(orjson.dumps(event)), RawEvent)


def test_rejection_explains_the_field() -> None:
    result = parse_raw_event(b'{"type": "identify", "traits": 3}')
    assert isinstance(result, Rejection)
    assert "traits" in result.message


def test_nesting_deeper_than_the_limit_is_invalid() -> None:
    from enrichers.raw import MAX_DEPTH

    def nested(levels: int) -> dict[str, object]:
        value: dict[str, object] = {}
        for _ in range(levels):
            value = {"a": value}
        return value

    ok = {"type": "track", "event": "e", "properties": nested(MAX_DEPTH - 2)}  # 32 levels
    too_deep = {"type": "track", "event": "e", "properties": nested(MAX_DEPTH - 1)}  # 33
    assert isinstance(parse_raw_event(orjson.dumps(ok)), RawEvent)
    assert rejection_code(orjson.dumps(too_deep)) is RejectCode.INVALID_FIELD


def test_numbers_beyond_double_range_are_invalid_json() -> None:
    assert rejection_code(b'{"type": "track", "event": "e", "properties": {"n": 1e999}}') is (
        RejectCode.INVALID_JSON
    )
