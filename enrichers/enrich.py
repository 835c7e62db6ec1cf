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

from enrichers.consent import fill_preferences, preferences
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
from enrichers.devices import DeviceRef, resolve_device
from enrichers.hygiene import named_device, without_placeholders
from enrichers.identity import Identity, apply_identity
from enrichers.ids import consentless_anonymous_id
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
    keeps_record: bool = True
    """R37: False when the device keeps no record (no identity consent): none is saved, and
    any it had is deleted."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A raw event ready for the rules: placeholder ids taken out (R36), its device named."""

    event: RawEvent
    source: Source
    device: DeviceRef
    blocked: tuple[str, ...] = ()


def prepare_event(event: RawEvent, source: Source, policy: Policy) -> Prepared:
    """R36, then CONTRACT "Device key": placeholders are never ids, nor device keys."""
    cleaned = without_placeholders(event, policy.placeholders)
    key = named_device(source.key, policy.placeholders)
    blocked = cleaned.blocked if key == source.key else (*cleaned.blocked, "(record key)")
    if key != source.key:
        source = replace(source, key=key)
    return Prepared(cleaned.event, source, resolve_device(cleaned.event, source), blocked)


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
    call = None if event.is_control else _call(event, policy)  # R23-R27
    given = preferences(call.context) if call is not None else None  # R37
    kept = _keeps_a_record(given if given is not None else state.consent, policy)
    named = device
    if not kept:  # R37: no identity consent, no record: only the call's ids
        state = replace(state.without_identity(), generated=0)
        named = DeviceRef(consentless_anonymous_id(delivery.message_id), new_visitor=True)
    change = apply_identity(state, event, named, delivery.message_id)  # R5-R22, R35
    new_state = _delivered(change.state, state, source, delivery, times)  # R33, R34, R1
    if given is not None:  # R37: the latest preferences are remembered
        new_state = replace(new_state, consent=given)
    identity = change.identity
    if identity is None or call is None:  # R29: a control event changes state only
        return EventOutcome(
            Status.CONTROL, new_state, not_cached=change.not_cached, keeps_record=kept
        )
    if given is None and new_state.consent is not None:  # R37: filled in
        fill_preferences(call.context, new_state.consent)
    _fill_context_traits(call, event, identity, new_state, policy, user_traits)  # R30
    enrichment = {
        "device": device.key,
        "source": str(source),
        "restored": identity.anonymous_id_source == "stored" or identity.user_id_restored,
        "policy": policy.fingerprint,
        "anonymousId": identity.anonymous_id_source,  # call, stored or generated (R5-R7)
    }
    if identity.rotated:  # R12
        enrichment["rotated"] = True
    if change.not_cached is not None:  # R35: marked
        enrichment["traitsNotCached"] = change.not_cached
    message = build_warehouse_message(event, identity, call, times, delivery.message_id, enrichment)
    warehouse, destinations = split_outputs(message, policy)  # R25, R28, R29, R37, R38
    user_update, group_update = (
        profile_updates(event, identity, times.received_at_ms, device.key, state)
        if kept
        else (None, None)
    )
    return EventOutcome(
        Status.MESSAGE,
        new_state,
        warehouse,
        destinations,
        identity,
        user_update,
        group_update,
        change.not_cached,
        kept,
    )


def _keeps_a_record(remembered: Mapping[str, bool] | None, policy: Policy) -> bool:
    """R37: with an identity consent category, only a device that consented keeps a record."""
    category = policy.identity_consent
    return not category or (remembered or {}).get(category) is True


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
    return changed.delivered(
        last_seen, recent_after(before, delivery), applied_through(before, source)
    )


def _call(event: RawEvent, policy: Policy) -> CallContext:
    """R23-R27: the message's context and integrations."""
    return build_context(
        event.get("context"),
        event.get("integrations"),
        event.options,
        event.get("requestIp"),
        policy.collect_ipv6,
    )


def _fill_context_traits(
    call: CallContext,
    event: RawEvent,
    identity: Identity,
    state: DeviceState,
    policy: Policy,
    user_traits: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    """R30: context traits, when on: from the user profile when identified, the device's
    cache when anonymous."""
    if policy.context_traits and event.type != "identify":
        profiles = user_traits or {}
        known = profiles.get(identity.user_id, {}) if identity.user_id else state.utraits
        fill_context_traits(call.context, known, policy.context_traits)
