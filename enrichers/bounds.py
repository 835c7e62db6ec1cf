"""R35: bounds never drop a valid event. A device's cached user or group traits are bounded
(the identify and group messages carry the whole cache, R16, R20, so it may not outgrow
Segment's 32 KB message limit); an update that would exceed the bound is not applied to the
cache, and the event goes on with the call's own traits, marked and counted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

MAX_CACHED_TRAIT_KEYS: Final = 256
MAX_CACHED_TRAITS_BYTES: Final = 32 * 1024


def within_bound(traits: Mapping[str, Any]) -> bool:
    if len(traits) > MAX_CACHED_TRAIT_KEYS:
        return False
    return not traits or len(orjson.dumps(traits)) <= MAX_CACHED_TRAITS_BYTES


def bounded_cache(
    before: Mapping[str, Any], after: Mapping[str, Any], merged: bool
) -> tuple[Mapping[str, Any], bool]:
    """The cache to keep and whether the update was left out. A merge left out keeps the cache
    as it was; a replacement left out (a new user or group) empties it, so the previous one's
    traits never stay with the next."""
    if within_bound(after):
        return after, False
    return (before if merged else {}), True
