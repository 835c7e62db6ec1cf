"""R37: consent (Segment's ``context.consent.categoryPreferences``, category -> boolean) is
device state. The latest preferences a call sends are remembered and filled into every later
message that carries none; a call's own preferences win and replace them. ``reset`` and
``forget`` clear them. An output mapped to categories receives a message only when every
mapped category is ``true`` on it (a missing category is ``false``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def preferences(context: dict[str, Any] | None) -> dict[str, bool] | None:
    """The call's category preferences, when it sends any (an object of booleans)."""
    consent = context.get("consent") if context is not None else None
    # None and dict first: an isinstance check against the Mapping ABC runs interpreted
    if consent is None or not isinstance(consent, (dict, Mapping)):
        return None
    given = consent.get("categoryPreferences")
    if given is None or not isinstance(given, (dict, Mapping)):
        return None
    return {str(k): v for k, v in given.items() if isinstance(v, bool)}


def fill_preferences(context: dict[str, Any], remembered: Mapping[str, bool]) -> None:
    """A message without preferences gets the device's remembered ones."""
    consent = context.get("consent")
    filled = dict(consent) if isinstance(consent, Mapping) else {}
    filled["categoryPreferences"] = dict(remembered)
    context["consent"] = filled


def consented(context: dict[str, Any] | None, categories: tuple[str, ...]) -> bool:
    """Whether every one of ``categories`` is true on the message (none mapped: always)."""
    if not categories:  # the default: nothing to read
        return True
    given = preferences(context) or {}
    return all(given.get(category) is True for category in categories)
