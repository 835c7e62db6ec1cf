"""Building the enriched messages (SPEC section F, R25, R29; CONTRACT "Enriched messages")."""

from __future__ import annotations

from typing import Any

from enrichers.consent import consented
from enrichers.context import CallContext
from enrichers.identity import Identity
from enrichers.ip import apply_ip_policy
from enrichers.policy import Policy
from enrichers.pseudonyms import pseudonymised
from enrichers.raw import RawEvent
from enrichers.routing import reaches_destinations
from enrichers.timestamps import EventTimes

_PAYLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    "track": ("event", "properties"),
    "page": ("name", "category", "properties"),
    "screen": ("name", "category", "properties"),
    "identify": (),
    "group": (),
    "alias": (),
}


def build_warehouse_message(
    event: RawEvent,
    identity: Identity,
    call: CallContext,
    times: EventTimes,
    message_id: str,
    enrichment: dict[str, Any],
) -> dict[str, Any]:
    """The whole enriched message, ``context.traits`` kept (R25), with ``_enrichment``."""
    message: dict[str, Any] = {
        "type": event.type,
        "messageId": message_id,
        "userId": identity.user_id,
        "anonymousId": identity.anonymous_id,
    }
    for name in _PAYLOAD_FIELDS[event.type]:
        value = event.get(name)
        if value is not None:
            message[name] = value
    if event.type in ("track", "page", "screen") and "properties" not in message:
        message["properties"] = {}
    if event.type == "identify":
        message["traits"] = dict(identity.traits or {})  # R16: the whole cache
    elif event.type == "group":
        message["groupId"] = identity.group_id
        message["traits"] = dict(identity.traits or {})  # R20
    elif event.type == "alias":
        message["previousId"] = identity.previous_id
    message["context"] = call.context
    message["integrations"] = call.integrations
    message["timestamp"] = times.timestamp
    message["originalTimestamp"] = times.original_timestamp
    sent_at = event.get("sentAt")
    if sent_at is not None:
        message["sentAt"] = sent_at
    message["receivedAt"] = times.received_at
    message["_enrichment"] = enrichment
    return message


def split_outputs(
    warehouse: dict[str, Any], policy: Policy
) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """The two outputs of one message, each with its own IP policy (R28): the warehouse
    message as is, and the destinations message without ``context.traits`` (R25) and
    ``_enrichment``, or None when ``integrations`` keeps it off the destinations (R29); and
    whether the destinations message is the warehouse message less its last key,
    ``_enrichment``, key for key (nothing else to take out or change: one serialisation
    serves both)."""
    destinations: dict[str, Any] | None = None
    one_body = False
    # R29 by integrations, R37 by the consent categories mapped to the destinations
    if reaches_destinations(warehouse["integrations"]) and consented(
        warehouse["context"], policy.destinations_consent
    ):
        destinations = dict(warehouse)  # copied whole, then trimmed: quicker than filtered
        del destinations["_enrichment"]
        one_body = policy.one_body and "traits" not in warehouse["context"]
        if not one_body:
            context = dict(warehouse["context"])
            context.pop("traits", None)
            apply_ip_policy(context, policy.ip_destinations)
            destinations["context"] = context
    if policy.ip_warehouse.kind != "keep":
        context = dict(warehouse["context"])
        apply_ip_policy(context, policy.ip_warehouse)
        warehouse["context"] = context
        if one_body and destinations is not None:  # R28: one policy, one context for both
            destinations["context"] = context
    if policy.pii_warehouse:  # R38
        warehouse = pseudonymised(warehouse, policy.pii_warehouse, policy.pii_key)
    if destinations is not None and policy.pii_destinations:
        destinations = pseudonymised(destinations, policy.pii_destinations, policy.pii_key)
    return warehouse, destinations, one_body
