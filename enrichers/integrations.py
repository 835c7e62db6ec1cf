"""Segment's ``integrations`` object, seen by one named destination (SPEC R29).

A message reaches the destinations topic when any destination may want it (R29, decided by
the worker); each destination sink then asks whether *it* is one of them. Pure logic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def integration_enabled(
    integrations: Mapping[str, Any] | None, name: str, obeys_all: bool = True
) -> bool:
    """Whether the destination ``name`` gets a message with this ``integrations`` object.

    As Segment routes: an explicit ``false`` for the name skips it; ``true`` or a settings
    object enables it; otherwise ``All`` decides, and ``All`` is ``true`` unless it is
    explicitly ``false`` (R29). The name is matched exactly first, then ignoring case
    (``"Webhook"`` and ``"webhook"`` name the same sink).

    ``obeys_all=False`` is for warehouse loaders: Segment's warehouses receive messages sent
    with ``All: false`` (the object picks third-party tools, not the user's own warehouse),
    so only an explicit ``false`` for the name skips them.
    """
    if not isinstance(integrations, Mapping):
        return True
    setting = _lookup(integrations, name)
    if setting is False:
        return False
    if setting is True or isinstance(setting, Mapping):
        return True
    return not obeys_all or integrations.get("All", True) is not False


def _lookup(integrations: Mapping[str, Any], name: str) -> Any:
    if name in integrations:
        return integrations[name]
    folded = name.casefold()
    for key, value in integrations.items():
        if key != "All" and isinstance(key, str) and key.casefold() == folded:
            return value
    return None
