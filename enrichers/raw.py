"""Raw events: decoding and validating one record of ``events.raw`` (CONTRACT "Raw events").

Bad input is data, not an exception: :func:`parse_raw_event` returns a :class:`Rejection`
with the dead-letter code of CONTRACT "Dead letters".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

from enrichers.values import is_number

MAX_EVENT_BYTES: Final = 32 * 1024
"""Segment's per-message limit; a larger raw value is dead-lettered as ``too_large``."""

MAX_DEPTH: Final = 32
"""Deepest nesting of objects and arrays accepted in a raw event (deeper is ``invalid_field``):
it keeps every message serialisable and every traversal cheap."""

MESSAGE_TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})
CONTROL_TYPES: Final = frozenset(
    {
        "reset",
        "setAnonymousId",
        "setUserId",
        "setUserTraits",
        "setGroupId",
        "setGroupTraits",
        "forget",
        "expireCookies",
    }
)


class RejectCode(StrEnum):
    """Dead-letter codes (CONTRACT "Dead letters")."""

    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_TYPE = "invalid_type"
    MISSING_EVENT = "missing_event"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a raw record cannot be processed."""

    code: RejectCode
    message: str


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A validated raw event: ``type`` is known and every field has an acceptable type."""

    type: str
    fields: Mapping[str, Any]

    @property
    def is_control(self) -> bool:
        """R29: control events change state and emit no message."""
        return self.type in CONTROL_TYPES

    def get(self, name: str) -> Any:
        return self.fields.get(name)

    @property
    def options(self) -> Mapping[str, Any]:
        options = self.fields.get("options")
        return options if options is not None else {}


def _is_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or is_number(value)


def _is_anonymous_id(value: Any) -> bool:
    # R6: falsy values, `false` included, are accepted and ignored.
    return _is_id(value) or value is False


def _is_object(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _is_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


_FIELD_CHECKS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "messageId": (_is_text, "a string"),
    "userId": (_is_id, "a string or a number"),
    "anonymousId": (_is_anonymous_id, "a string or a number"),
    "groupId": (_is_id, "a string or a number"),
    "previousId": (_is_id, "a string or a number"),
    "event": (_is_text, "a string"),
    "name": (_is_text, "a string"),
    "category": (_is_text, "a string"),
    "properties": (_is_object, "an object"),
    "traits": (_is_object, "an object"),
    "context": (_is_object, "an object"),
    "integrations": (_is_object, "an object"),
    "options": (_is_object, "an object"),
    "timestamp": (_is_text, "a string"),
    "sentAt": (_is_text, "a string"),
    "receivedAt": (_is_text, "a string"),
    "requestIp": (_is_text, "a string"),
}

_OPTION_CHECKS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "userId": (_is_id, "a string or a number"),
    "anonymousId": (_is_anonymous_id, "a string or a number"),
    "messageId": (_is_text, "a string"),
    "timestamp": (_is_text, "a string"),
    "context": (_is_object, "an object"),
    "integrations": (_is_object, "an object"),
    "traits": (_is_object, "an object"),
}

_VALUE_CHECKS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "setAnonymousId": (_is_anonymous_id, "a string, a number or null"),
    "setUserId": (_is_id, "a string, a number or null"),
    "setGroupId": (_is_id, "a string, a number or null"),
    "setUserTraits": (_is_object, "an object or null"),
    "setGroupTraits": (_is_object, "an object or null"),
}


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels deep (a scalar is 0 levels),
    without recursion; only containers are visited."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is dict or kind is list:
                pending.append((child, depth + 1))
    return False


def _field_problem(fields: Mapping[str, Any]) -> str | None:
    """The first problem, in the order of the checks; the fields present are tried first (an
    event carries a few of the checked fields), the ordered walk only when one fails."""
    checks = _FIELD_CHECKS
    for name, value in fields.items():
        check = checks.get(name)
        if check is not None and not check[0](value):
            return _ordered_field_problem(fields)
    options = fields.get("options")
    if options:
        for name, value in options.items():
            check = _OPTION_CHECKS.get(name)
            if check is not None and not check[0](value):
                return _ordered_field_problem(fields)
    value_check = _VALUE_CHECKS.get(fields["type"])
    if value_check is not None and not value_check[0](fields.get("value")):
        return _ordered_field_problem(fields)
    return None


def _ordered_field_problem(fields: Mapping[str, Any]) -> str | None:
    for name, (check, wanted) in _FIELD_CHECKS.items():
        if name in fields and not check(fields[name]):
            return f"field {name!r} must be {wanted}"
    options = fields.get("options") or {}
    for name, (check, wanted) in _OPTION_CHECKS.items():
        if name in options and not check(options[name]):
            return f"field 'options.{name}' must be {wanted}"
    value_check = _VALUE_CHECKS.get(fields["type"])
    if value_check is not None and not value_check[0](fields.get("value")):
        return f"field 'value' of {fields['type']} must be {value_check[1]}"
    return None


def parse_raw_event(value: bytes | None) -> RawEvent | Rejection:
    """Decode and validate one raw record value."""
    if value is None:
        return Rejection(RejectCode.NOT_AN_OBJECT, "the record has no value")
    if len(value) > MAX_EVENT_BYTES:
        return Rejection(
            RejectCode.TOO_LARGE, f"{len(value)} bytes is over the {MAX_EVENT_BYTES}-byte limit"
        )
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as not_utf8:
            return Rejection(RejectCode.INVALID_ENCODING, f"the value is not UTF-8: {not_utf8}")
        return Rejection(RejectCode.INVALID_JSON, str(exc))
    if not isinstance(decoded, dict):
        return Rejection(
            RejectCode.NOT_AN_OBJECT, f"the value is a JSON {type(decoded).__name__}, not an object"
        )
    # objects and arrays cannot nest deeper than the brackets the value holds: most events
    # are not walked for their depth at all
    shallow = value.count(b"{") + value.count(b"[") <= MAX_DEPTH
    return validate_raw_event(decoded, depth_known=shallow)


def validate_raw_event(decoded: dict[str, Any], depth_known: bool = False) -> RawEvent | Rejection:
    """Validate an already decoded raw event object (the checks after decoding, for a
    producer such as the collector that holds the object it is about to write).
    ``depth_known``: the object is known not to nest deeper than :data:`MAX_DEPTH`."""
    event_type = decoded.get("type")
    if not isinstance(event_type, str) or not (
        event_type in MESSAGE_TYPES or event_type in CONTROL_TYPES
    ):
        return Rejection(RejectCode.INVALID_TYPE, f"unknown event type {event_type!r}")
    problem = _field_problem(decoded)
    if problem is not None:
        return Rejection(RejectCode.INVALID_FIELD, problem)
    if not depth_known and nests_deeper_than(decoded, MAX_DEPTH):
        return Rejection(
            RejectCode.INVALID_FIELD, f"objects and arrays nest deeper than {MAX_DEPTH} levels"
        )
    if event_type == "track" and not decoded.get("event"):
        return Rejection(RejectCode.MISSING_EVENT, "a track event needs a non-empty 'event'")
    return RawEvent(event_type, decoded)
