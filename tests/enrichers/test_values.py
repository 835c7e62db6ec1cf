"""Ids given as numbers become strings as JavaScript writes them (R6, R8, R11, R22): the
expected strings below are what ``String(n)`` printed in Node.js for the same numbers."""

from __future__ import annotations

import pytest

from enrichers.values import id_string

JAVASCRIPT = [
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (-1e-7, "-1e-7"),
    (1e-6, "0.000001"),
    (0.000001234, "0.000001234"),
    (0.1, "0.1"),
    (-0.5, "-0.5"),
    (100.0, "100"),
    (123.456, "123.456"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (1.5e21, "1.5e+21"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (12, "12"),
    (0, "0"),
    (2**70, "1.1805916207174113e+21"),
    (1234567890123456789, "1234567890123456800"),
]


@pytest.mark.parametrize(("number", "expected"), JAVASCRIPT)
def test_a_number_id_is_written_as_javascript_writes_it(number: float, expected: str) -> None:
    assert id_string(number) == expected
