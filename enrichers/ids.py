"""Deterministic identifiers (R5, R32).

The core has no randomness: every id is derived from its inputs, so re-processing the same
input into fresh state yields identical output (replays, rebuilds and diffs rely on it).
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Final

from enrichers.state import DIGEST_BYTES

_SEPARATOR = "\x1f"
INT_FROM_BYTES: Final = int.from_bytes
"""``int.from_bytes``, bound once: compiled, a call of ``int.from_bytes(...)`` binds the class
method again every time (issue 21)."""


def derive_uuid4(*parts: str) -> str:
    """A UUID-4 shaped id (lowercase, 36 characters) derived from ``parts``."""
    digest = blake2b(_SEPARATOR.join(parts).encode("utf-8"), digest_size=16).digest()
    # what uuid.UUID(bytes=digest, version=4) prints, without building one: the version
    # nibble set to 4, the variant bits to 10
    raw = bytearray(digest)
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return uuid_text(raw)


def uuid_text(raw: bytes | bytearray) -> str:
    """16 bytes as a lowercase UUID prints them (``8-4-4-4-12`` hex digits)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_message_id(topic: str, partition: int, offset: int) -> str:
    """R32: the messageId of a raw event that has none, from its position in the source."""
    return derive_uuid4("messageId", topic, str(partition), str(offset))


def new_visitor_device_key(message_id: str) -> str:
    """CONTRACT "Device key": a raw event without key, anonymousId or userId is a new visitor,
    named by the anonymousId generated for it."""
    return derive_uuid4("visitor", message_id)


def generated_anonymous_id(device_key: str, message_id: str, generation: int) -> str:
    """R5: the ``generation``-th anonymousId generated on a device, for the event ``message_id``.

    ``generation`` counts the ids generated on the device and survives reset and forget, so an
    id generated after either is never one the device carried before.
    """
    return derive_uuid4("anonymousId", device_key, message_id, str(generation))


def message_id_digest(message_id: str) -> bytes:
    """R33: a compact 52-bit fingerprint of a messageId for the device's recent-ids window, as
    8 big-endian bytes (the window is their concatenation, stored as it is held)."""
    digest = blake2b(message_id.encode("utf-8"), digest_size=8).digest()
    fingerprint: int = INT_FROM_BYTES(digest, "big") >> 12
    return fingerprint.to_bytes(DIGEST_BYTES, "big")


def consentless_anonymous_id(message_id: str) -> str:
    """R37: the anonymousId of a message whose device keeps no record and gave none: derived
    from the message alone, so nothing links it to the device's other messages."""
    return derive_uuid4("consentless", message_id)
