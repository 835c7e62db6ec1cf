"""Which outputs get a message (SPEC R29): Segment's ``integrations`` object, read once by the
worker for the destinations topic and by each sink for itself.

A message reaches the destinations topic when any destination may want it; each destination
sink then asks whether *it* is one of them. Control events emit no message at all
(:attr:`enrichers.raw.RawEvent.is_control`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _enables(setting: Any) -> bool:
    """``true`` or a settings object enables a destination by name."""
    return setting is True or isinstance(setting, Mapping)


def _all_enabled(integrations: Mapping[str, Any]) -> bool:
    """``All`` is true unless it is explicitly ``false``."""
    return integrations.get("All", True) is not False


def reaches_destinations(integrations: Mapping[str, Any]) -> bool:
    """Whether the message goes to the destinations topic: always, unless ``All`` is false
    and no destination is enabled by name."""
    if _all_enabled(integrations):
        return True
    return any(name != "All" and _enables(value) for name, value in integrations.items())


def integration_enabled(
    integrations: Mapping[str, Any] | None, name: str, obeys_all: bool = True
) -> bool:
    """Whether the destination ``name`` gets a message with this ``integrations`` object.

    As Segment routes: an explicit ``false`` for the name skips it; ``true`` or a settings
    object enables it; otherwise ``All`` decides. The name is matched exactly first, then
    ignoring case (``"Webhook"`` and ``"webhook"`` name the same sink).

    ``obeys_all=False`` is for warehouse loaders: Segment's warehouses receive messages sent
    with ``All: false`` (the object picks third-party tools, not the user's own warehouse),
    so only an explicit ``false`` for the name skips them.
    """
    if not isinstance(integrations, Mapping):
        return True
    setting = _lookup(integrations, name)
    if setting is False:
        return False
    if _enables(setting):
        return True
    return not obeys_all or _all_enabled(integrations)


def _lookup(integrations: Mapping[str, Any], name: str) -> Any:
    if name in integrations:
        return integrations[name]
    folded = name.casefold()
    for key, value in integrations.items():
        if key != "All" and isinstance(key, str) and key.casefold() == folded:
            return value
    return None
