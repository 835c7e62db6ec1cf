"""JavaScript-flavoured value helpers: what Analytics.js does to ids and falsy values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def is_number(value: Any) -> bool:
    """A JSON number (a JavaScript number), booleans excluded."""
    # a tuple, not ``int | float``: compiled, the union is built on every call (issue 21)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def js_number_string(value: int | float) -> str:
    """``String(n)`` as JavaScript writes it (ECMAScript Number::toString): the shortest digits
    that read back as ``n``, in plain notation for exponents from -7 to 20, else as ``1e-7``,
    ``1.5e+21``."""
    if isinstance(value, int):
        if abs(value) <= 2**53:  # beyond, JavaScript holds the nearest double
            return str(value)
        value = float(value)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    shortest = Decimal(repr(abs(value))).normalize()  # repr: the shortest round-trip digits
    _, digit_tuple, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = exponent + k  # value = 0.digits x 10^n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    power = n - 1
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


def id_string(value: Any) -> str | None:
    """An id given as a string or a number, as a string; anything else is not an id."""
    if isinstance(value, str):
        return value
    if is_number(value):
        return js_number_string(value)
    return None


def is_truthy(value: Any) -> bool:
    """JavaScript truthiness for the JSON values an id can take."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value != ""
    if is_number(value):
        return bool(value != 0)
    return True


def visible(uid: str | None) -> str | None:
    """SPEC "State": the stored id when it is a non-empty string, else null."""
    return uid if uid else None
