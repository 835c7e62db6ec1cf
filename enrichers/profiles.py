"""User and group profiles (SPEC "State"): what one message contributes to them, and the one
definition of how contributions merge. The shell applies merges to Redis atomically
(``streams/state/lua/merge_profiles.lua`` applies exactly :meth:`ProfileMerge.add`'s result);
merges are idempotent (traits shallow, later values win; first/last seen are min/max;
anonymousIds by last seen)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from enrichers.identity import Identity
from enrichers.policy import DAY_MS
from enrichers.raw import RawEvent
from enrichers.state import DeviceState


@dataclass(frozen=True, slots=True)
class UserProfileUpdate:
    """Traits of an identify (shallow merge), the anonymousId seen with the user, the time."""

    user_id: str
    anonymous_id: str
    seen_ms: int
    traits: Mapping[str, Any] | None = None
    device: str | None = None
    """The device key: R39 deletes every device a profile lists."""
    linked: bool = False
    """The device already linked this anonymousId and itself to the user earlier on the same
    (UTC) day: the profile's sorted sets need no write, only its last seen (and traits)."""


@dataclass(frozen=True, slots=True)
class GroupProfileUpdate:
    group_id: str
    traits: Mapping[str, Any]
    seen_ms: int


def profile_updates(
    event: RawEvent,
    identity: Identity,
    seen_ms: int,
    device: str | None = None,
    before: DeviceState | None = None,
) -> tuple[UserProfileUpdate | None, GroupProfileUpdate | None]:
    """What a message tells the profiles: every identified message links its anonymousId to
    the user, an identify brings its traits (the whole cache, R16), a group its group traits.
    ``before``: the device's state before the message, to tell a link already written today
    (:attr:`UserProfileUpdate.linked`)."""
    user = None
    if identity.user_id:
        traits = identity.traits if event.type == "identify" else None
        linked = (
            before is not None
            and before.uid == identity.user_id
            and before.aid == identity.anonymous_id
            and before.last_seen_ms is not None
            and before.last_seen_ms // DAY_MS == seen_ms // DAY_MS
        )
        user = UserProfileUpdate(
            identity.user_id, identity.anonymous_id, seen_ms, traits, device, linked
        )
    group = None
    if event.type == "group" and identity.group_id:
        group = GroupProfileUpdate(identity.group_id, identity.traits or {}, seen_ms)
    return user, group


def merge_traits(profile: MutableMapping[str, Any], traits: Mapping[str, Any] | None) -> None:
    """A profile's traits take a message's traits shallowly: later values win."""
    if traits:
        profile.update(traits)


@dataclass
class ProfileMerge:
    """One profile's updates from one batch, coalesced in event order."""

    first_seen_ms: int
    last_seen_ms: int
    anonymous_ids: dict[str, int] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    """Device keys by last seen: the bounded user -> devices index R39 deletions follow."""

    def add(
        self,
        seen_ms: int,
        anonymous_id: str | None,
        traits: Mapping[str, Any] | None,
        device: str | None = None,
    ) -> None:
        self.first_seen_ms = min(self.first_seen_ms, seen_ms)
        self.last_seen_ms = max(self.last_seen_ms, seen_ms)
        if anonymous_id is not None:
            self.anonymous_ids[anonymous_id] = max(seen_ms, self.anonymous_ids.get(anonymous_id, 0))
        if device is not None:
            self.devices[device] = max(seen_ms, self.devices.get(device, 0))
        merge_traits(self.traits, traits)


def coalesce_profiles(
    users: Iterable[UserProfileUpdate], groups: Iterable[GroupProfileUpdate]
) -> tuple[dict[str, ProfileMerge], dict[str, ProfileMerge]]:
    """A batch's profile updates as one merge per profile."""
    user_merges: dict[str, ProfileMerge] = {}
    for update in users:
        merge = user_merges.setdefault(update.user_id, ProfileMerge(update.seen_ms, update.seen_ms))
        if update.linked:  # last seen and traits only: the links are stored (today)
            merge.add(update.seen_ms, None, update.traits)
        else:
            merge.add(update.seen_ms, update.anonymous_id, update.traits, update.device)
    group_merges: dict[str, ProfileMerge] = {}
    for group in groups:
        merge = group_merges.setdefault(group.group_id, ProfileMerge(group.seen_ms, group.seen_ms))
        merge.add(group.seen_ms, None, group.traits)
    return user_merges, group_merges
