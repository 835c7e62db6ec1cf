"""Reading Retry-After (delay-seconds or an HTTP date)."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.sinks.webhook import retry_after_seconds


def test_retry_after_in_seconds() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0 ") == 0.0


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Sun, 29 Nov 2026 01:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Sun, 29 Nov 2026 00:59:00 GMT", now) == 0.0  # already past


def test_missing_or_unreadable_retry_after_is_none() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
