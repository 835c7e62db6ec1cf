"""R31: receivedAt, originalTimestamp and the clock-skew corrected timestamp."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def parse_iso_ms(text: Any) -> int | None:
    """Epoch milliseconds of an ISO-8601 string, or None when it is not one. A time without a
    zone is taken as UTC."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MILLISECOND


def format_iso_ms(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_second_prefix(seconds)}{millis:03d}Z"


@lru_cache(maxsize=8192)
def _second_prefix(epoch_seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a second; events of a batch share a few seconds."""
    moment = _EPOCH + timedelta(seconds=epoch_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.")


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
    if received_ms is None:
        received_ms = record_timestamp_ms
    original_ms = parse_iso_ms(timestamp)
    sent_ms = parse_iso_ms(sent_at)
    if original_ms is not None and sent_ms is not None:
        corrected = format_iso_ms(received_ms - (sent_ms - original_ms))
    elif original_ms is not None:
        corrected = format_iso_ms(original_ms)
    else:
        corrected = format_iso_ms(received_ms)
    if original_ms is not None:
        original = format_iso_ms(original_ms)
    elif isinstance(timestamp, str) and timestamp:
        original = timestamp  # not a date: kept as the client sent it
    else:
        original = format_iso_ms(received_ms)
    return EventTimes(received_ms, format_iso_ms(received_ms), original, corrected)
