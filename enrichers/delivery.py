"""Delivery bookkeeping (R32, R33, R34): which message a raw record is, whether its state change
was already applied or it is a client's retry, and what the device remembers of it.

This is not identity: it survives reset, forget and expiry (R3, R4, R33), so a replay or a
retry is recognised whatever happened to the device's ids in between."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from enrichers.ids import derived_message_id, message_id_digest
from enrichers.raw import RawEvent
from enrichers.state import RECENT_MESSAGE_IDS, DeviceState


@dataclass(frozen=True, slots=True)
class Source:
    """Where a raw record came from."""

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp_ms: int
    topic_id: str = ""
    """Kafka's id of the topic, when the broker gives one: a topic deleted and created again
    under the same name is another source."""

    @property
    def stream(self) -> str:
        """The name under which a device remembers the last offset applied from here (R34):
        the partition of this topic (by its id, so a recreated topic starts a fence of its
        own instead of having its new records taken as applied)."""
        if self.topic_id:
            return f"{self.topic}/{self.partition}@{self.topic_id[:8]}"
        return f"{self.topic}/{self.partition}"

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One raw record as a delivery: its messageId and, when the client gave one, the digest
    that recognises a retry of it (R33)."""

    message_id: str
    digest: int | None


def explicit_message_id(event: RawEvent) -> str | None:
    """R23: ``options.messageId``, else the raw ``messageId``; empty strings are not ids."""
    for candidate in (event.options.get("messageId"), event.get("messageId")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def resolve_message_id(event: RawEvent, source: Source) -> str:
    """R23, R32: the explicit messageId, else one derived from the source position."""
    explicit = explicit_message_id(event)
    if explicit is not None:
        return explicit
    return derived_message_id(source.topic, source.partition, source.offset)


def delivery_of(event: RawEvent, source: Source) -> Delivery:
    explicit = explicit_message_id(event)
    if explicit is None:
        return Delivery(derived_message_id(source.topic, source.partition, source.offset), None)
    return Delivery(explicit, message_id_digest(explicit))


def already_applied(state: DeviceState, source: Source) -> bool:
    """R34: the device remembers the last offset applied from each source partition; a record
    at or before it was re-delivered after its state was saved."""
    return state.applied.get(source.stream, -1) >= source.offset


def is_retry(state: DeviceState, delivery: Delivery) -> bool:
    """R33: the messageId is one of the device's last accepted ones (a client retry)."""
    return delivery.digest is not None and delivery.digest in state.recent


def applied_through(state: DeviceState, source: Source) -> Mapping[str, int]:
    """R34: the fence after applying ``source``."""
    return {**state.applied, source.stream: source.offset}


def recent_after(state: DeviceState, delivery: Delivery) -> tuple[int, ...]:
    """R33: the window of accepted messageIds after accepting ``delivery``."""
    if delivery.digest is None:
        return state.recent
    return (*state.recent, delivery.digest)[-RECENT_MESSAGE_IDS:]
