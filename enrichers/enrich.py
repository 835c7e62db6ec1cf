"""One raw event through all the rules: the core's entry point.

``bytes -> parse_raw_event -> resolve_device -> enrich_event(state, ...) -> (state, messages)``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from enrichers.context import build_context, fill_context_traits
from enrichers.identity import DeviceRef, Identity, apply_identity
from enrichers.ids import derived_message_id, message_id_digest, new_visitor_device_key
from enrichers.messages import build_warehouse_message, split_outputs
from enrichers.policy import Policy
from enrichers.profiles import GroupProfileUpdate, UserProfileUpdate
from enrichers.raw import RawEvent, RejectCode, Rejection
from enrichers.state import (
    MAX_CACHED_TRAIT_KEYS,
    MAX_CACHED_TRAITS_BYTES,
    RECENT_MESSAGE_IDS,
    DeviceState,
)
from enrichers.timestamps import resolve_times
from enrichers.values import id_string, is_truthy


@dataclass(frozen=True, slots=True)
class Source:
    """Where a raw record came from."""

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp_ms: int

    @property
    def stream(self) -> str:
        """The name under which a device remembers the last offset applied from here (R34)."""
        return f"{self.topic}/{self.partition}"

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class Status(StrEnum):
    MESSAGE = "message"  # a message event: one message per output (R29)
    CONTROL = "control"  # a control event: state only (R29)
    DUPLICATE = "duplicate"  # R33: a client retry, nothing changes
    ALREADY_APPLIED = "already_applied"  # R34: re-delivered after its state was saved
    REJECTED = "rejected"  # valid on its own, but its state change breaks a bound


@dataclass(frozen=True, slots=True)
class EventOutcome:
    status: Status
    state: DeviceState
    warehouse: dict[str, Any] | None = None
    destinations: dict[str, Any] | None = None
    identity: Identity | None = None
    user_update: UserProfileUpdate | None = None
    group_update: GroupProfileUpdate | None = None
    rejection: Rejection | None = None


def resolve_message_id(event: RawEvent, source: Source) -> str:
    """R23, R32: ``options.messageId``, else the raw one, else derived from the source."""
    explicit = _explicit_message_id(event)
    return (
        explicit
        if explicit is not None
        else derived_message_id(source.topic, source.partition, source.offset)
    )


def _explicit_message_id(event: RawEvent) -> str | None:
    for candidate in (event.options.get("messageId"), event.get("messageId")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def resolve_device(event: RawEvent, source: Source) -> DeviceRef:
    """CONTRACT "Device key": the record key, else the raw anonymousId, else the raw userId,
    else a new visitor named by the anonymousId generated for it."""
    if source.key:
        return DeviceRef(source.key)
    for candidate in (event.get("anonymousId"), event.get("userId")):
        if is_truthy(candidate):
            key = id_string(candidate)
            if key:
                return DeviceRef(key)
    return DeviceRef(new_visitor_device_key(resolve_message_id(event, source)), new_visitor=True)


_CHANGES_TRAITS = frozenset({"identify", "group", "setUserTraits", "setGroupTraits"})


def _oversized_cache(state: DeviceState) -> str | None:
    for name, traits in (("user", state.utraits), ("group", state.gtraits)):
        if not traits:
            continue
        if len(traits) > MAX_CACHED_TRAIT_KEYS:
            return (
                f"cached {name} traits would hold {len(traits)} keys, over {MAX_CACHED_TRAIT_KEYS}"
            )
        size = len(orjson.dumps(traits))
        if size > MAX_CACHED_TRAITS_BYTES:
            return (
                f"cached {name} traits would take {size} bytes (at most {MAX_CACHED_TRAITS_BYTES})"
            )
    return None


def enrich_event(
    state: DeviceState,
    event: RawEvent,
    device: DeviceRef,
    source: Source,
    policy: Policy,
    user_traits: Mapping[str, Mapping[str, Any]] | None = None,
) -> EventOutcome:
    """Apply every rule to one event of one device, given the device's current state.

    ``user_traits`` holds the user profiles' traits by userId, for the context-traits policy
    (R30); it is only read when that policy is on."""
    # R34: the device remembers the last offset applied from each source partition.
    if state.applied.get(source.stream, -1) >= source.offset:
        return EventOutcome(Status.ALREADY_APPLIED, state)
    applied = {**state.applied, source.stream: source.offset}

    options = event.options
    timestamp = options.get("timestamp") or event.get("timestamp")
    times = resolve_times(
        event.get("receivedAt"), timestamp, event.get("sentAt"), source.timestamp_ms
    )
    explicit_id = _explicit_message_id(event)
    # R33: a client retry of one of the last accepted messageIds changes nothing.
    digest = message_id_digest(explicit_id) if explicit_id is not None else None
    if digest is not None and digest in state.recent:
        return EventOutcome(Status.DUPLICATE, replace(state, applied=applied))

    # R1, R4: a record idle for longer than the device TTL (in event time) is absent.
    if (
        state.last_seen_ms is not None
        and times.received_at_ms - state.last_seen_ms > policy.device_ttl_ms
    ):
        state = state.without_identity()

    message_id = explicit_id or derived_message_id(source.topic, source.partition, source.offset)
    change = apply_identity(state, event, device, message_id)
    oversized = _oversized_cache(change.state) if event.type in _CHANGES_TRAITS else None
    if oversized is not None:
        # the event is dead-lettered and changes nothing; its offset counts as applied
        return EventOutcome(
            Status.REJECTED,
            replace(state, applied=applied),
            rejection=Rejection(RejectCode.TOO_LARGE, oversized),
        )
    recent = state.recent if digest is None else (*state.recent, digest)[-RECENT_MESSAGE_IDS:]
    last_seen = max(times.received_at_ms, state.last_seen_ms or times.received_at_ms)
    new_state = replace(change.state, last_seen_ms=last_seen, recent=recent, applied=applied)
    identity = change.identity
    if identity is None:
        return EventOutcome(Status.CONTROL, new_state)

    call = build_context(
        event.get("context"),
        event.get("integrations"),
        options,
        event.get("requestIp"),
        policy.collect_ipv6,
    )
    if policy.context_traits and event.type != "identify":
        # R30: the user profile when identified, the device's cache when anonymous
        if identity.user_id:
            known = (user_traits or {}).get(identity.user_id, {})
        else:
            known = new_state.utraits
        fill_context_traits(call.context, known, policy.context_traits)
    enrichment = {
        "device": device.key,
        "source": str(source),
        "restored": identity.anonymous_id_source == "stored" or identity.user_id_restored,
        "policy": policy.fingerprint,
    }
    warehouse, destinations = split_outputs(
        build_warehouse_message(event, identity, call, times, message_id, enrichment), policy
    )
    user_update = None
    if identity.user_id:
        user_update = UserProfileUpdate(
            identity.user_id,
            identity.anonymous_id,
            times.received_at_ms,
            identity.traits if event.type == "identify" else None,
        )
    group_update = None
    if event.type == "group" and identity.group_id:
        group_update = GroupProfileUpdate(
            identity.group_id, identity.traits or {}, times.received_at_ms
        )
    return EventOutcome(
        Status.MESSAGE,
        new_state,
        warehouse,
        destinations,
        identity,
        user_update,
        group_update,
    )
