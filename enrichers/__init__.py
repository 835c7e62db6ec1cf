"""The pure core of identity-enricher: the SPEC rules as plain functions, no I/O.

Given a device's state and one raw event, :func:`enrich_event` returns the new state and the
messages. Ids and times come in as arguments; nothing here reads a clock or a random source.
"""

from enrichers.delivery import Source, resolve_message_id
from enrichers.devices import DeviceRef, device_key, resolve_device
from enrichers.enrich import EventOutcome, Prepared, Status, enrich_event, prepare_event
from enrichers.hygiene import Placeholders
from enrichers.identity import Identity
from enrichers.ip import IpPolicy
from enrichers.policy import DEFAULT_POLICY, Policy
from enrichers.profiles import GroupProfileUpdate, UserProfileUpdate
from enrichers.raw import RawEvent, RejectCode, Rejection, parse_raw_event
from enrichers.state import EMPTY_DEVICE, DeviceState

__all__ = [
    "DEFAULT_POLICY",
    "EMPTY_DEVICE",
    "DeviceRef",
    "DeviceState",
    "EventOutcome",
    "GroupProfileUpdate",
    "Identity",
    "IpPolicy",
    "Placeholders",
    "Policy",
    "Prepared",
    "RawEvent",
    "RejectCode",
    "Rejection",
    "Source",
    "Status",
    "UserProfileUpdate",
    "device_key",
    "enrich_event",
    "parse_raw_event",
    "prepare_event",
    "resolve_device",
    "resolve_message_id",
]
