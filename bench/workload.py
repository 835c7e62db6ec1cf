"""A generated workload of realistic raw events: all message types, 20k devices, about 600
bytes each, identify about 10 %, with logins of other users (rotations), anonymousId
overrides, resets and client retries."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson

PAGES = ["/", "/pricing", "/docs/getting-started", "/blog/identity", "/cart", "/checkout"]
EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Signed Up"]
AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def raw_events(count: int, devices: int = 20_000, seed: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """(record key, raw value) pairs."""
    rng = random.Random(seed)
    for n in range(count):
        device = rng.randrange(devices)
        key = f"device-{device:06d}"
        roll = rng.random()
        base: dict[str, Any] = {
            "messageId": f"bench-{seed}-{n}",
            "receivedAt": f"2026-11-29T10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}."
            f"{n % 1000:03d}Z",
            "timestamp": "2026-11-29T09:59:58.120Z",
            "sentAt": "2026-11-29T09:59:59.001Z",
            "context": {
                "library": {"name": "analytics.js", "version": "next-1.84.1"},
                "page": {
                    "path": rng.choice(PAGES),
                    "referrer": "https://www.example.com/",
                    "title": "Example",
                    "url": "https://shop.example.com/",
                },
                "userAgent": AGENT,
                "locale": "en-US",
            },
            "requestIp": f"203.0.113.{rng.randrange(256)}",
        }
        if roll < 0.10:
            user = device if rng.random() < 0.9 else rng.randrange(devices)  # some log in as others
            event = {
                "type": "identify",
                "userId": f"user-{user}",
                "traits": {
                    "plan": rng.choice(["free", "pro"]),
                    "seats": rng.randrange(50),
                    "email": f"user-{user}@example.com",
                },
            }
        elif roll < 0.30:
            event = {
                "type": "page",
                "name": "Docs",
                "category": "Help",
                "properties": {"path": rng.choice(PAGES)},
            }
        elif roll < 0.33:
            event = {"type": "screen", "name": "Settings", "properties": {"tab": "privacy"}}
        elif roll < 0.36:
            event = {
                "type": "group",
                "groupId": f"org-{device % 500}",
                "traits": {"name": f"Org {device % 500}", "employees": device % 900},
            }
        elif roll < 0.37:
            event = {"type": "alias", "userId": f"user-{device}", "previousId": f"old-{device}"}
        elif roll < 0.38:
            event = {
                "type": "track",
                "event": "Overridden",
                "options": {"anonymousId": f"override-{device}"},
            }
        elif roll < 0.385:
            yield key.encode(), orjson.dumps({"type": "reset"})
            continue
        else:
            event = {
                "type": "track",
                "event": rng.choice(EVENTS),
                "properties": {
                    "sku": f"SKU-{rng.randrange(10_000)}",
                    "price": 19.99,
                    "currency": "EUR",
                    "quantity": rng.randrange(1, 5),
                },
            }
        yield key.encode(), orjson.dumps({**event, **base})
