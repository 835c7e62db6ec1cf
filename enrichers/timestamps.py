"""R31: receivedAt, originalTimestamp and the clock-skew corrected timestamp."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
MIN_MS: Final = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MILLISECOND
"""0001-01-01T00:00:00.000Z: the first millisecond written (R31)."""
MAX_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // _MILLISECOND
"""9999-12-31T23:59:59.999Z: the last."""


def parse_iso_ms(text: Any) -> int | None:
    """Epoch milliseconds of an ISO-8601 date-time (or date: its midnight) in years 0001-9999
    UTC, or None when it is not one. No zone means UTC; any number of fraction digits is
    accepted and truncated to milliseconds; ``24:00`` is the end of the day (R31)."""
    if not isinstance(text, str) or not text:
        return None
    if _CANONICAL.fullmatch(text):  # what clients send: the second parsed once, then cached
        seconds = _canonical_second(text[:19])
        if seconds is not None:
            return seconds * 1000 + int(text[20:23])
    moment: datetime | None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = _end_of_day(text)
        if moment is None:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch_ms = (moment - _EPOCH) // _MILLISECOND
    return epoch_ms if MIN_MS <= epoch_ms <= MAX_MS else None


_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)
"""``YYYY-MM-DDTHH:MM:SS.mmmZ``, as :func:`format_iso_ms` writes it and Analytics.js sends."""


@lru_cache(maxsize=8192)
def _canonical_second(prefix: str) -> int | None:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` in UTC, None when no such second exists."""
    try:
        moment = datetime.fromisoformat(prefix).replace(tzinfo=UTC)
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(seconds=1)


_END_OF_DAY = re.compile(r"^(.+)T24(?::?00(?::?00(?:[.,]0+)?)?)?(Z|[+-]\d\d(?::?\d\d)?)?$")


def _end_of_day(text: str) -> datetime | None:
    """``...T24:00[:00[.000]]``: ISO 8601's midnight at the end of a day."""
    match = _END_OF_DAY.match(text)
    if match is None:
        return None
    try:
        start = datetime.fromisoformat(f"{match.group(1)}T00:00:00{match.group(2) or ''}")
        return start + timedelta(days=1)
    except (ValueError, OverflowError):
        return None


def format_iso_ms(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, the year always in four digits; ``epoch_ms``
    must lie in years 0001-9999 (:data:`MIN_MS` to :data:`MAX_MS`)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_second_prefix(seconds)}{millis:03d}Z"


@lru_cache(maxsize=8192)
def _second_prefix(epoch_seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a second; events of a batch share a few seconds."""
    m = _EPOCH + timedelta(seconds=epoch_seconds)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."


@dataclass(frozen=True, slots=True)
class EventTimes:
    received_at_ms: int
    received_at: str
    original_timestamp: str
    timestamp: str


def resolve_times(
    received_at: Any, timestamp: Any, sent_at: Any, record_timestamp_ms: int
) -> EventTimes:
    """R31. ``receivedAt`` is the raw one when valid, else the record's timestamp. Without a raw
    ``timestamp`` the event is taken to have happened when it was received."""
    received_ms = parse_iso_ms(received_at)
    if received_ms is None:  # a record timestamp outside years 1-9999 is held at the bounds
        received_ms = min(max(record_timestamp_ms, MIN_MS), MAX_MS)
        received = format_iso_ms(received_ms)
    else:
        received = _written(received_at, received_ms)
    original_ms = parse_iso_ms(timestamp)
    sent_ms = parse_iso_ms(sent_at)
    original: str | None
    if original_ms is not None:
        corrected_ms = original_ms
        if sent_ms is not None:  # clock skew: as far from receipt as it was from sending
            skewed = received_ms - (sent_ms - original_ms)
            if MIN_MS <= skewed <= MAX_MS:  # else no correction is made
                corrected_ms = skewed
        original = _written(timestamp, original_ms)
    else:
        corrected_ms = received_ms
        # not a date: kept as the client sent it
        original = timestamp if isinstance(timestamp, str) and timestamp else None
    corrected = received if corrected_ms == received_ms else format_iso_ms(corrected_ms)
    return EventTimes(received_ms, received, original or received, corrected)


def _written(text: str, epoch_ms: int) -> str:
    """``epoch_ms`` as :func:`format_iso_ms` writes it: ``text`` itself when already so."""
    return text if len(text) == 24 and _CANONICAL.fullmatch(text) else format_iso_ms(epoch_ms)
