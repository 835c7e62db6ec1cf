"""The identity rules of Analytics.js (SPEC sections B to E, R5-R22), one device at a time.

:func:`apply_identity` takes a device's state and one validated raw event and returns the new
state and, for message events, the identity fields of the message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from enrichers.bounds import bounded_cache
from enrichers.devices import DeviceRef
from enrichers.ids import generated_anonymous_id
from enrichers.raw import RawEvent
from enrichers.state import DeviceState
from enrichers.values import id_string, is_truthy, visible

AnonymousIdSource = Literal["call", "stored", "generated"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Identity fields of one message."""

    user_id: str | None
    anonymous_id: str
    anonymous_id_source: AnonymousIdSource
    user_id_restored: bool
    traits: Mapping[str, Any] | None = None
    group_id: str | None = None
    previous_id: str | None = None
    rotated: bool = False


@dataclass(frozen=True, slots=True)
class IdentityChange:
    state: DeviceState
    identity: Identity | None
    not_cached: str | None = None
    """R35: ``"user"`` or ``"group"`` when the call's traits were left out of that cache."""


def explicit_anonymous_id(event: RawEvent) -> str | None:
    """R6: ``options.anonymousId``, else the top-level ``anonymousId``; falsy values are
    ignored, numbers become strings."""
    for candidate in (event.options.get("anonymousId"), event.get("anonymousId")):
        if is_truthy(candidate):
            return id_string(candidate)
    return None


def _store_user_id(state: DeviceState, new_id: str | None) -> tuple[DeviceState, bool]:
    """R12/R13: storing a different id over a non-null one empties the anonymousId."""
    rotates = new_id is not None and state.uid is not None and new_id != state.uid
    if rotates:
        return replace(state, uid=new_id, aid=None), True
    return replace(state, uid=new_id), False


def _cached_traits(
    cached: Mapping[str, Any], stored_id: str | None, call_id: str | None, call: Any
) -> tuple[Mapping[str, Any], Mapping[str, Any], bool]:
    """R16 (and R20 for groups): merge into the cache while the stored id is absent or the same,
    else replace it. ``null`` or absent traits count as ``{}``. Returns the cache to keep, the
    traits of the message (the whole cache; the call's own when R35 left them out of it) and
    whether they were left out."""
    traits = call or {}
    merged = visible(stored_id) is None or visible(stored_id) == call_id
    updated = {**cached, **traits} if merged else dict(traits)
    kept, left_out = bounded_cache(cached, updated, merged)
    return kept, (dict(traits) if left_out else updated), left_out


def _apply_control(state: DeviceState, event: RawEvent) -> IdentityChange:
    value = event.get("value")
    # R18 (R20 for groups): replaces the cache; {} or null clears it; R35: not beyond the bound
    if event.type == "setUserTraits":
        traits, left_out = bounded_cache(state.utraits, dict(value or {}), True)
        return IdentityChange(replace(state, utraits=traits), None, "user" if left_out else None)
    if event.type == "setGroupTraits":
        traits, left_out = bounded_cache(state.gtraits, dict(value or {}), True)
        return IdentityChange(replace(state, gtraits=traits), None, "group" if left_out else None)
    return IdentityChange(_apply_other_control(state, event, value), None)


def _apply_other_control(state: DeviceState, event: RawEvent, value: Any) -> DeviceState:
    match event.type:
        case "reset":  # R10
            return state.without_identity()
        case "forget":  # R3
            return state.without_identity()
        case "expireCookies":  # R2: localStorage restores everything
            return state
        case "setAnonymousId":  # R8: numbers, 0 included, become strings; "" or null empty it
            return replace(state, aid=id_string(value) or None)
        case "setUserId":  # R13
            return _store_user_id(state, id_string(value))[0]
        case "setGroupId":  # R20 mirrors R13, without rotation
            return replace(state, gid=id_string(value))
    raise AssertionError(f"not a control type: {event.type}")


def apply_identity(
    state: DeviceState, event: RawEvent, device: DeviceRef, message_id: str
) -> IdentityChange:
    """Apply one event's identity rules to ``state``."""
    if event.is_control:
        return _apply_control(state, event)

    stored_aid = state.aid
    rotated = False
    traits: Mapping[str, Any] | None = None
    group_id: str | None = None
    not_cached: str | None = None
    if event.type == "identify":
        # R11: the given id (numbers as strings, "" counts), else the stored visible id.
        call_id = id_string(event.get("userId"))
        if call_id is None:
            call_id = visible(state.uid)
        utraits, traits, left_out = _cached_traits(
            state.utraits, state.uid, call_id, event.get("traits")
        )
        if is_truthy(call_id):  # R12, R14: only a truthy id is stored
            state, rotated = _store_user_id(state, call_id)
        state = replace(state, utraits=utraits)
        not_cached = "user" if left_out else None
    elif event.type == "group":
        # R20: R11, R12's storing step (never a rotation) and R16 on the group.
        call_gid = id_string(event.get("groupId"))
        if call_gid is None:
            call_gid = visible(state.gid)
        gtraits, traits, left_out = _cached_traits(
            state.gtraits, state.gid, call_gid, event.get("traits")
        )
        if is_truthy(call_gid):
            state = replace(state, gid=call_gid)
        state = replace(state, gtraits=gtraits)
        not_cached = "group" if left_out else None
        group_id = visible(state.gid)

    # R6 (after R11-R13 for identify and group, R7): an explicit anonymousId is stored.
    explicit_aid = explicit_anonymous_id(event)
    source: AnonymousIdSource
    if explicit_aid is not None:
        state = replace(state, aid=explicit_aid)
        source = "call"
    elif state.aid:
        source = "stored" if state.aid == stored_aid else "generated"
    else:
        # R5: no truthy anonymousId, so one is generated and stored.
        if device.new_visitor and state.generated == 0:
            new_aid = device.key
        else:
            new_aid = generated_anonymous_id(device.key, message_id, state.generated)
        state = replace(state, aid=new_aid, generated=state.generated + 1)
        source = "generated"
    anonymous_id = state.aid
    assert anonymous_id is not None

    user_id, user_id_restored = _message_user_id(state, event)
    previous_id: str | None = None
    if event.type == "alias":
        # R22: the stored id overwrites `to`; previousId is `from`, else the stored ids.
        previous_id = id_string(event.get("previousId"))
        if previous_id is None:
            previous_id = visible(state.uid) or anonymous_id
        if user_id is None:
            user_id = id_string(event.get("userId"))
    return IdentityChange(
        state,
        Identity(
            user_id=user_id,
            anonymous_id=anonymous_id,
            anonymous_id_source=source,
            user_id_restored=user_id_restored,
            traits=traits,
            group_id=group_id,
            previous_id=previous_id,
            rotated=rotated,
        ),
        not_cached,
    )


def _message_user_id(state: DeviceState, event: RawEvent) -> tuple[str | None, bool]:
    """R15: the stored visible id, else ``options.userId`` (never stored), else null; a
    top-level userId on track/page/screen/group is the caller's and kept as given.
    Returns the id and whether it came from stored state rather than the call."""
    if event.type in ("track", "page", "screen", "group"):
        explicit = id_string(event.get("userId"))
        if explicit is not None:
            return explicit, False
    stored = visible(state.uid)
    if stored:
        called = event.type == "identify" and id_string(event.get("userId")) == stored
        return stored, not called
    return id_string(event.options.get("userId")), False


def user_ids_named(event: RawEvent, state: DeviceState) -> Iterator[str]:
    """Every userId a message of this event on this device may carry (R15, R22): the stored
    one, and the ones given on the call (top level or ``options.userId``)."""
    if state.uid:
        yield state.uid
    for candidate in (event.get("userId"), event.options.get("userId")):
        user_id = id_string(candidate)
        if user_id:
            yield user_id
