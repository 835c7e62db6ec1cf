"""R31 at the edges: every ISO-8601 input form, years 0001-9999 written in four digits, and no
timestamp value that turns a valid event into a dead letter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrichers.timestamps import MAX_MS, MIN_MS, format_iso_ms, parse_iso_ms, resolve_times

RECORD_MS = 1_700_000_000_000


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-03-01T10:00:00.123Z", "2024-03-01T10:00:00.123Z"),
        ("2024-03-01T12:00:00.123+02:00", "2024-03-01T10:00:00.123Z"),  # an offset
        ("2024-03-01T10:00:00.123", "2024-03-01T10:00:00.123Z"),  # no zone: UTC
        ("2024-03-01", "2024-03-01T00:00:00.000Z"),  # a date alone: its midnight
        ("2024-03-01T10:00:00.123987654Z", "2024-03-01T10:00:00.123Z"),  # digits truncated
        ("2024-03-01T10:00Z", "2024-03-01T10:00:00.000Z"),
        ("20240301T100000Z", "2024-03-01T10:00:00.000Z"),  # basic format
        ("2024-W09-5T10:00:00Z", "2024-03-01T10:00:00.000Z"),  # a week date
        ("2024-03-01T24:00:00Z", "2024-03-02T00:00:00.000Z"),  # the end of the day
        ("1969-12-31T23:59:59.9995Z", "1969-12-31T23:59:59.999Z"),  # before the epoch
    ],
)
def test_r31_any_iso_8601_date_time_is_read(given: str, expected: str) -> None:
    epoch_ms = parse_iso_ms(given)
    assert epoch_ms is not None and format_iso_ms(epoch_ms) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("0099-06-30T12:00:00Z", "0099-06-30T12:00:00.000Z"),
        ("0999-12-31T23:59:59.999Z", "0999-12-31T23:59:59.999Z"),
    ],
)
def test_r31_years_below_1000_are_written_in_four_digits(given: str, expected: str) -> None:
    epoch_ms = parse_iso_ms(given)
    assert epoch_ms is not None and format_iso_ms(epoch_ms) == expected


def test_r31_the_first_and_last_written_milliseconds() -> None:
    assert format_iso_ms(MIN_MS) == "0001-01-01T00:00:00.000Z"
    assert format_iso_ms(MAX_MS) == "9999-12-31T23:59:59.999Z"


@pytest.mark.parametrize("given", ["9999-12-31T23:59:59.999-14:00", "0001-01-01T00:00:00+01:00"])
def test_r31_a_time_outside_years_1_to_9999_in_utc_is_not_a_date(given: str) -> None:
    assert parse_iso_ms(given) is None
    times = resolve_times(None, given, None, RECORD_MS)
    assert times.original_timestamp == given  # kept as the client sent it
    assert times.timestamp == format_iso_ms(RECORD_MS)


def test_r31_a_far_sent_at_makes_no_correction_past_year_1() -> None:
    times = resolve_times(
        "2024-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", RECORD_MS
    )
    assert times.timestamp == times.original_timestamp == "2000-01-01T00:00:00.000Z"


def test_r31_a_received_at_near_year_1_makes_no_correction_before_it() -> None:
    times = resolve_times(
        "0001-01-01T00:00:00.000Z", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", RECORD_MS
    )
    assert times.received_at == "0001-01-01T00:00:00.000Z"
    assert times.timestamp == "2024-01-01T00:00:00.000Z"


@pytest.mark.parametrize("record_ms", [-(2**63), -1, 2**63 - 1])
def test_r31_any_record_timestamp_gives_a_written_received_at(record_ms: int) -> None:
    times = resolve_times(None, None, None, record_ms)
    assert len(times.received_at) == 24 and times.received_at.endswith("Z")


@settings(max_examples=500, deadline=None)
@given(
    st.integers(MIN_MS, MAX_MS),
    st.integers(MIN_MS, MAX_MS),
    st.one_of(st.none(), st.integers(MIN_MS, MAX_MS)),
)
def test_r31_canonical_and_other_spellings_of_a_time_give_the_same_times(
    received_ms: int, original_ms: int, sent_ms: int | None
) -> None:
    """The canonical spelling (passed through as written) and another spelling of the same
    instants (a zone offset, parsed and written again) resolve to identical times."""

    def offset(ms: int) -> str:
        return format_iso_ms(ms)[:-1] + "+00:00"

    sent = None if sent_ms is None else format_iso_ms(sent_ms)
    canonical = resolve_times(format_iso_ms(received_ms), format_iso_ms(original_ms), sent, 0)
    assert resolve_times(offset(received_ms), offset(original_ms), sent, 0) == canonical
    for written in (canonical.received_at, canonical.original_timestamp, canonical.timestamp):
        assert written == format_iso_ms(parse_iso_ms(written) or 0)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-02-30T10:00:00.000Z", None),  # the shape, but no such day
        ("2024-03-01T10:00:60.000Z", None),  # no such second
        ("2024-03-01T10:00:00.12aZ", None),
        ("2024-03-01 10:00:00.123Z", "2024-03-01T10:00:00.123Z"),  # read, written canonical
        ("2024-03-01T10:00:00,123Z", "2024-03-01T10:00:00.123Z"),
        ("\uff12024-03-01T10:00:00.123Z", None),  # a digit that is not ASCII
    ],
)
def test_r31_only_the_canonical_spelling_is_passed_through_as_written(
    given: str, expected: str | None
) -> None:
    """Issue 21 recognises the canonical spelling by its shape: a value of that shape that is
    not a canonical date-time is read as any other (or is no date), never passed through."""
    times = resolve_times(given, None, None, RECORD_MS)
    assert times.received_at == (expected or format_iso_ms(RECORD_MS))
    assert parse_iso_ms(given) == (None if expected is None else parse_iso_ms(expected))
