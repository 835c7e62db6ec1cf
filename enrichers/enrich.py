"""One raw event through all the rules: the core's entry point.

``bytes -> parse_raw_event -> resolve_device -> enrich_event(state, ...) -> (state, messages)``

:func:`enrich_event` is the rules in the order they apply; each step lives in the module of
its rule family (delivery, timestamps, identity, context, messages, profiles).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from enrichers.context import CallContext, build_context, fill_context_traits
from enrichers.delivery import (
    Delivery,
    Source,
    already_applied,
    applied_through,
    delivery_of,
    is_retry,
    recent_after,
)
from enrichers.devices import DeviceRef
from enrichers.identity import Identity, apply_identity
from enrichers.messages import build_warehouse_message, split_outputs
from enrichers.policy import Policy
from enrichers.profiles import GroupProfileUpdate, UserProfileUpdate, profile_updates
from enrichers.raw import RawEvent
from enrichers.state import DeviceState
from enrichers.timestamps import EventTimes, resolve_times


class Status(StrEnum):
    MESSAGE = "message"  # a message event: one message per output (R29)
    CONTROL = "control"  # a control event: state only (R29)
    DUPLICATE = "duplicate"  # R33: a client retry, nothing changes
    ALREADY_APPLIED = "already_applied"  # R34: re-delivered after its state was saved


@dataclass(frozen=True, slots=True)
class EventOutcome:
    status: Status
    state: DeviceState
    warehouse: dict[str, Any] | None = None
    destinations: dict[str, Any] | None = None
    identity: Identity | None = None
    user_update: UserProfileUpdate | None = None
    group_update: GroupProfileUpdate | None = None
    not_cached: str | None = None
    """R35: which traits cache (``"user"``, ``"group"``) left this event's traits out."""


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
    if already_applied(state, source):  # R34
        return EventOutcome(Status.ALREADY_APPLIED, state)
    delivery = delivery_of(event, source)  # R32
    if is_retry(state, delivery):  # R33
        return EventOutcome(
            Status.DUPLICATE, replace(state, applied=applied_through(state, source))
        )
    times = _event_times(event, source)  # R31
    state = _expired(state, times, policy)  # R1, R4
    change = apply_identity(state, event, device, delivery.message_id)  # R5-R22, R35
    new_state = _delivered(change.state, state, source, delivery, times)  # R33, R34, R1
    identity = change.identity
    if identity is None:  # R29: a control event changes state only
        return EventOutcome(Status.CONTROL, new_state, not_cached=change.not_cached)
    call = _call_context(event, identity, new_state, policy, user_traits)  # R23-R27, R30
    enrichment = {
        "device": device.key,
        "source": str(source),
        "restored": identity.anonymous_id_source == "stored" or identity.user_id_restored,
        "policy": policy.fingerprint,
    }
    if change.not_cached is not None:  # R35: marked
        enrichment["traitsNotCached"] = change.not_cached
    message = build_warehouse_message(event, identity, call, times, delivery.message_id, enrichment)
    warehouse, destinations = split_outputs(message, policy)  # R25, R28, R29
    user_update, group_update = profile_updates(event, identity, times.received_at_ms)
    return EventOutcome(
        Status.MESSAGE,
        new_state,
        warehouse,
        destinations,
        identity,
        user_update,
        group_update,
        change.not_cached,
    )


def _event_times(event: RawEvent, source: Source) -> EventTimes:
    """R31, with R23's ``options.timestamp`` over the raw one."""
    timestamp = event.options.get("timestamp") or event.get("timestamp")
    return resolve_times(
        event.get("receivedAt"), timestamp, event.get("sentAt"), source.timestamp_ms
    )


def _expired(state: DeviceState, times: EventTimes, policy: Policy) -> DeviceState:
    """R1, R4: a record idle for longer than the device TTL (in event time) is absent."""
    if (
        state.last_seen_ms is not None
        and times.received_at_ms - state.last_seen_ms > policy.device_ttl_ms
    ):
        return state.without_identity()
    return state


def _delivered(
    changed: DeviceState,
    before: DeviceState,
    source: Source,
    delivery: Delivery,
    times: EventTimes,
) -> DeviceState:
    """The changed state with the delivery remembered: the fence (R34), the messageId window
    (R33) and the last time the device was seen (R1)."""
    last_seen = max(times.received_at_ms, before.last_seen_ms or times.received_at_ms)
    return replace(
        changed,
        last_seen_ms=last_seen,
        recent=recent_after(before, delivery),
        applied=applied_through(before, source),
    )


def _call_context(
    event: RawEvent,
    identity: Identity,
    state: DeviceState,
    policy: Policy,
    user_traits: Mapping[str, Mapping[str, Any]] | None,
) -> CallContext:
    """R23-R27: the message's context and integrations; R30: context traits when on."""
    call = build_context(
        event.get("context"),
        event.get("integrations"),
        event.options,
        event.get("requestIp"),
        policy.collect_ipv6,
    )
    if policy.context_traits and event.type != "identify":
        # R30: the user profile when identified, the device's cache when anonymous
        profiles = user_traits or {}
        known = profiles.get(identity.user_id, {}) if identity.user_id else state.utraits
        fill_context_traits(call.context, known, policy.context_traits)
    return call
