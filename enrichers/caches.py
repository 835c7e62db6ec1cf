"""Bounded memo tables: plain dicts looked up with ``get`` (cheaper to call than
``functools.lru_cache``, issue 21), started over when full (:func:`remembered`) or kept in two
generations (:class:`Generations`) instead of evicting one by one."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remembered(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """``value`` stored under ``key`` (the cache emptied first when it holds ``limit``
    entries), and returned."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


class Generations(Generic[K, V]):
    """A bounded memo table that always keeps the most recent entries: two generations of up
    to ``limit // 2`` entries, the older dropped when the newer fills (where :func:`remembered`
    drops everything: right for values cheap to make again, not for larger ones that a hit
    saves much work on). A lookup finds either generation; what it finds in the older stays
    there. (Two plain dicts: an LRU table's bookkeeping on every hit costs more than it
    saves here, issue 21.)"""

    __slots__ = ("_half", "_newer", "_older")

    def __init__(self, limit: int) -> None:
        self._half = limit // 2
        self._newer: dict[K, V] = {}
        self._older: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        found = self._newer.get(key)
        return found if found is not None else self._older.get(key)

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` (nothing when the limit is below 2)."""
        if len(self._newer) >= self._half:
            if not self._half:
                return
            self._older = self._newer
            self._newer = {}
        self._newer[key] = value

    def __len__(self) -> int:
        """Entries held (a key in both generations counts twice): at most ``limit``."""
        return len(self._newer) + len(self._older)
