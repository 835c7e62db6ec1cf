"""R31: receivedAt, originalTimestamp and the clock-skew corrected timestamp."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from enrichers.caches import remembered

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
    return _parsed(text)[0]


def _parsed(text: Any) -> tuple[int | None, bool]:
    """:func:`parse_iso_ms`, and whether ``text`` is written as :func:`format_iso_ms` writes
    (then it is used as given). What clients send is checked by its shape and its second
    (parsed once, then cached): no pattern match, no datetime per value (issue 21)."""
    if not isinstance(text, str) or not text:
        return None, False
    if len(text) == 24 and text[23] == "Z" and text[19] == ".":
        second_ms = _canonical_second_ms(text[:19])
        millis = _MILLIS.get(text[20:23])
        if second_ms is not None and millis is not None:
            return second_ms + millis, True
    return _parsed_iso(text), False


def _parsed_iso(text: str) -> int | None:
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


_MILLIS: Final[dict[str, int]] = {f"{n:03d}": n for n in range(1000)}
"""The milliseconds of a canonical date-time, by their three digits."""
_MILLIS_Z: Final[tuple[str, ...]] = tuple(f"{n:03d}Z" for n in range(1000))
"""A canonical date-time's end, by its milliseconds."""


CACHED: Final = 8192
"""Seconds kept by :func:`_canonical_second_ms` and :func:`_second_prefix` (each cache starts
over when full): events of a batch share a few seconds."""
_SECOND_MS: Final[dict[str, int]] = {}
_PREFIXES: Final[dict[int, str]] = {}


def _canonical_second_ms(prefix: str) -> int | None:
    """Epoch milliseconds at which ``YYYY-MM-DDTHH:MM:SS`` in UTC starts, None when ``prefix``
    is not that (exactly as :func:`format_iso_ms` writes it) or no such second exists. Cached
    in a dict: cheaper to call than ``lru_cache``; and kept in milliseconds: compiled, a
    second times 1,000 leaves the fast path of small integers (issue 21)."""
    second_ms = _SECOND_MS.get(prefix)
    if second_ms is None:
        seconds = _second_of(prefix)
        if seconds is not None:
            second_ms = remembered(_SECOND_MS, prefix, seconds * 1000, CACHED)
    return second_ms


def _second_of(prefix: str) -> int | None:
    try:
        moment = datetime.fromisoformat(prefix).replace(tzinfo=UTC)
    except ValueError:
        return None
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds if _second_prefix(seconds) == prefix + "." else None


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
    # (floor division and remainder by a constant: compiled, ``divmod`` is a generic call)
    return _second_prefix(epoch_ms // 1000) + _MILLIS_Z[epoch_ms % 1000]


def _second_prefix(epoch_seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a second (cached, as :func:`_canonical_second_ms`)."""
    prefix = _PREFIXES.get(epoch_seconds)
    if prefix is None:
        m = _EPOCH + timedelta(seconds=epoch_seconds)
        prefix = remembered(
            _PREFIXES,
            epoch_seconds,
            f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.",
            CACHED,
        )
    return prefix


@dataclass(frozen=True, slots=True, init=False)
class EventTimes:
    received_at_ms: int
    received_at: str
    original_timestamp: str
    timestamp: str

    def __init__(
        self,
        received_at_ms: int,
        received_at: str,
        original_timestamp: str,
        timestamp: str,
    ) -> None:
        # written out, not generated by dataclass, so that mypyc compiles it (issue 21)
        object.__setattr__(self, "received_at_ms", received_at_ms)
        object.__setattr__(self, "received_at", received_at)
        object.__setattr__(self, "original_timestamp", original_timestamp)
        object.__setattr__(self, "timestamp", timestamp)


def resolve_times(
    received_at: Any, timestamp: Any, sent_at: Any, record_timestamp_ms: int
) -> EventTimes:
    """R31. ``receivedAt`` is the raw one when valid, else the record's timestamp. Without a raw
    ``timestamp`` the event is taken to have happened when it was received."""
    received_ms, as_written = _parsed(received_at)
    if received_ms is None:  # a record timestamp outside years 1-9999 is held at the bounds
        received_ms = min(max(record_timestamp_ms, MIN_MS), MAX_MS)
        received = format_iso_ms(received_ms)
    else:
        received = received_at if as_written else format_iso_ms(received_ms)
    original_ms, original_as_written = _parsed(timestamp)
    sent_ms = parse_iso_ms(sent_at)
    original: str | None
    if original_ms is not None:
        corrected_ms = original_ms
        if sent_ms is not None:  # clock skew: as far from receipt as it was from sending
            skewed = received_ms - (sent_ms - original_ms)
            if MIN_MS <= skewed <= MAX_MS:  # else no correction is made
                corrected_ms = skewed
        original = timestamp if original_as_written else format_iso_ms(original_ms)
    else:
        corrected_ms = received_ms
        # not a date: kept as the client sent it
        original = timestamp if isinstance(timestamp, str) and timestamp else None
    corrected = received if corrected_ms == received_ms else format_iso_ms(corrected_ms)
    return EventTimes(received_ms, received, original or received, corrected)
