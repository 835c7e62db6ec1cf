"""JavaScript-flavoured value helpers: what Analytics.js does to ids and falsy values."""

from __future__ import annotations

from typing import Any


def is_number(value: Any) -> bool:
    """A JSON number (a JavaScript number), booleans excluded."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def js_number_string(value: int | float) -> str:
    """``String(n)`` as JavaScript writes it for the numbers that occur as ids."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value) if isinstance(value, int) else repr(value)


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
