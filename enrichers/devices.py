"""The device an event belongs to (CONTRACT "Device key"): one rule for the worker, the
collector and the importer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from enrichers.delivery import Source, resolve_message_id
from enrichers.ids import new_visitor_device_key
from enrichers.raw import RawEvent
from enrichers.values import id_string, is_truthy


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """The device an event belongs to. ``new_visitor`` when the key was generated: then it is
    also the anonymousId of the device's first event."""

    key: str
    new_visitor: bool = False


def device_key(named: str | None, event: Mapping[str, Any]) -> str | None:
    """CONTRACT "Device key": the device named by the record (a record key, a first-party
    cookie), else the event's anonymousId, else its userId (numbers as strings, falsy values
    do not count); None for a new visitor."""
    if named:
        return named
    for candidate in (event.get("anonymousId"), event.get("userId")):
        if is_truthy(candidate):
            key = id_string(candidate)
            if key:
                return key
    return None


def resolve_device(event: RawEvent, source: Source) -> DeviceRef:
    """The device of a raw record; a new visitor is named by the anonymousId generated for it
    (derived from its messageId, R5)."""
    key = device_key(source.key, event.fields)
    if key is not None:
        return DeviceRef(key)
    return DeviceRef(new_visitor_device_key(resolve_message_id(event, source)), new_visitor=True)
