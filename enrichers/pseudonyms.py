"""R38: pseudonymised fields. An output may name fields (dotted paths such as
``traits.email``, ``context.traits.email``, ``properties.phone``, ``userId``) whose string or
number values it receives as ``HMAC-SHA256(key, value-as-string)`` in lowercase hex: the same
value always gives the same digest under one key, so joins still work. Absent fields stay
absent; objects, lists, booleans and nulls are left as they are."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from enrichers.values import is_number


def pseudonym(key: bytes, value: str | int | float) -> str:
    """The digest of a value: a string as it is, a number as JSON writes it."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonymised(message: dict[str, Any], paths: tuple[str, ...], key: bytes) -> dict[str, Any]:
    """``message`` with the values at ``paths`` replaced by their digests; the objects on a
    path are copied, the rest of the message is shared."""
    for path in paths:
        message = _replaced(message, path.split("."), key)
    return message


def _replaced(node: Mapping[str, Any], steps: list[str], key: bytes) -> dict[str, Any]:
    name, rest = steps[0], steps[1:]
    if name not in node:
        return dict(node) if not isinstance(node, dict) else node
    value = node[name]
    if rest:
        if not isinstance(value, Mapping):
            return node if isinstance(node, dict) else dict(node)
        replaced: Any = _replaced(value, rest, key)
    elif isinstance(value, str) or is_number(value):
        replaced = pseudonym(key, value)
    else:
        return node if isinstance(node, dict) else dict(node)
    return {**node, name: replaced}
