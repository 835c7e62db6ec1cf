"""Profile updates (SPEC "State"): what one message contributes to the user and group
profiles. The shell merges them into Redis; they are idempotent (later values win)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class UserProfileUpdate:
    """Traits of an identify (shallow merge), the anonymousId seen with the user, the time."""

    user_id: str
    anonymous_id: str
    seen_ms: int
    traits: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class GroupProfileUpdate:
    group_id: str
    traits: Mapping[str, Any]
    seen_ms: int
