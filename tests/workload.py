"""A deterministic stream of raw events over many devices, with logins, rotations and resets,
and the state a clean single run of the pure core leaves per device (the reference)."""

from __future__ import annotations

import random
from typing import Any

from enrichers import DeviceState
from tests.rules import Rules, parsed


def mixed_events(count: int, devices: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """(device key, raw event) pairs; every message event has a unique messageId."""
    rng = random.Random(seed)
    events: list[tuple[str, dict[str, Any]]] = []
    for n in range(count):
        device = f"dev-{rng.randrange(devices)}"
        roll = rng.random()
        body: dict[str, Any]
        if roll < 0.10:
            body = {
                "type": "identify",
                "userId": f"user-{rng.randrange(devices * 2)}",
                "traits": {"plan": rng.choice(["free", "pro"]), f"t{n % 5}": n},
            }
        elif roll < 0.12:
            body = {"type": rng.choice(["reset", "forget", "setUserId"])}
        elif roll < 0.20:
            body = {"type": "page", "name": "Home", "properties": {"path": f"/p/{n % 17}"}}
        elif roll < 0.25:
            body = {"type": "group", "groupId": f"g{n % 13}", "traits": {"n": n}}
        else:
            body = {"type": "track", "event": "Clicked", "properties": {"n": n}}
        if body["type"] not in ("reset", "forget", "setUserId"):
            body["messageId"] = f"msg-{seed}-{n}"
        events.append((device, body))
    return events


def messages_in(events: list[tuple[str, dict[str, Any]]]) -> int:
    """How many of the events are message events (each has a messageId)."""
    return sum("messageId" in body for _, body in events)


def reference_states(
    events: list[tuple[str, dict[str, Any]]], topic: str, partition_of: dict[str, int] | None = None
) -> dict[str, DeviceState]:
    """The identity state per device after one clean run (bookkeeping fields left out)."""
    rules = Rules(topic=topic)
    for offset, (key, body) in enumerate(events):
        rules.apply(parsed(body), key, offset)
    return rules.states
