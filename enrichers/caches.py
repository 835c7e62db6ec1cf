"""Bounded memo tables: a plain dict looked up with ``get`` (cheaper to call than
``functools.lru_cache``, issue 21), started over when full instead of evicting one by one."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remembered(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """``value`` stored under ``key`` (the cache emptied first when it holds ``limit``
    entries), and returned."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
