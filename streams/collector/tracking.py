"""Segment's Tracking API, request by request: which endpoint, which write key, which
messages, and the raw records they become (CONTRACT "Raw events", "Device key").

Pure: no I/O, no clock, no randomness. The server hands in the request's bytes and facts
(the time, the client address, the device cookie, a messageId source) and gets back either
the records to produce or the refusal to answer with. A request is accepted or refused as a
whole, so a client's retry never duplicates half of a batch.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from enrichers.devices import device_key
from enrichers.hygiene import DEFAULT as DEFAULT_PLACEHOLDERS
from enrichers.hygiene import Placeholders, named_device, placeholder_free
from enrichers.raw import MESSAGE_TYPES, Rejection, validate_raw_event

MAX_MESSAGE_BYTES: Final = 32 * 1024
"""Segment's per-message limit; also the worker's (``too_large`` dead letters)."""

MAX_BATCH_BYTES: Final = 500 * 1024
"""Segment's limit on one batch request."""

BATCH_ENDPOINTS: Final = frozenset({"batch", "b", "import"})
"""``/v1/batch``, Analytics.js's short ``/v1/b``, and Segment's legacy ``/v1/import``."""

SINGLE_ENDPOINTS: Final[Mapping[str, str]] = {
    **{name: name for name in ("identify", "track", "page", "screen", "group", "alias")},
    # the short paths Analytics.js posts to: the first letter of the type
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}

ENDPOINTS: Final = frozenset(SINGLE_ENDPOINTS) | BATCH_ENDPOINTS

_BATCH_DEFAULTS: Final = ("context", "integrations")
"""Top-level fields of a batch request that apply to each message lacking its own."""


@dataclass(frozen=True, slots=True)
class TrackingRequest:
    """What the server knows of one request to ``/v1/<endpoint>``."""

    endpoint: str
    body: bytes
    authorization: str | None
    request_ip: str
    received_at: str
    device_cookie: str | None = None
    placeholders: Placeholders = DEFAULT_PLACEHOLDERS
    """R36: id values that name no device."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record for the raw topic: the device key (None when only placeholder ids would
    name it, R36) and the raw event's JSON."""

    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    records: list[RawRecord]


@dataclass(frozen=True, slots=True)
class Refused:
    """An answer other than 200: the HTTP status and a JSON body's code and message."""

    status: int
    code: str
    message: str

    def body(self) -> bytes:
        return orjson.dumps({"success": False, "code": self.code, "message": self.message})


ACCEPTED_BODY: Final = orjson.dumps({"success": True})


def basic_auth_user(authorization: str | None) -> str | None:
    """The user of an HTTP Basic ``Authorization`` header (Segment: the write key as the user,
    the password empty), or None when the header is absent or not Basic."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def client_ip(peer: str | None, forwarded: str | None) -> str:
    """R27: the request's address. ``forwarded`` is the trusted proxy header's value (e.g.
    ``X-Forwarded-For: client, proxy1``): its last entry is the one the proxy in front of the
    collector wrote, the earlier ones are the client's say. An IPv4-mapped IPv6 address is
    given as IPv4. Falls back to the socket's address when the header is absent or invalid."""
    if forwarded:
        candidate = _as_ip(forwarded.split(",")[-1].strip())
        if candidate is not None:
            return candidate
    return (_as_ip(peer) if peer else None) or (peer or "")


def _as_ip(text: str) -> str | None:
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def known_write_key(candidate: Any, write_keys: Collection[str]) -> bool:
    """Whether ``candidate`` is one of the write keys, compared in constant time (every key,
    whatever matched), so response times tell nothing about a key."""
    if not isinstance(candidate, str):
        return False
    given = candidate.encode()
    matched = False
    for key in write_keys:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def shape_request(
    request: TrackingRequest,
    write_keys: Collection[str],
    new_message_id: Callable[[], str],
) -> Accepted | Refused:
    """Authenticate, check the limits, split a batch, and build one raw record per message."""
    if request.endpoint not in ENDPOINTS:
        return Refused(404, "not_found", f"no Tracking API endpoint /v1/{request.endpoint}")
    basic_key = basic_auth_user(request.authorization)
    if basic_key is not None and not known_write_key(basic_key, write_keys):
        return _unauthorized()
    is_batch = request.endpoint in BATCH_ENDPOINTS
    limit = MAX_BATCH_BYTES if is_batch else MAX_MESSAGE_BYTES
    if len(request.body) > limit:
        what = "a batch request" if is_batch else "a message"
        return Refused(
            400, "too_large", f"{len(request.body)} bytes is over the {limit}-byte limit of {what}"
        )
    try:
        body = orjson.loads(request.body) if request.body.strip() else None
    except orjson.JSONDecodeError as exc:
        return Refused(400, "invalid_json", f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return Refused(400, "invalid_json", "the body must be a JSON object")
    if basic_key is None and not known_write_key(body.get("writeKey"), write_keys):
        return _unauthorized()
    if is_batch:
        messages = body.get("batch")
        if not isinstance(messages, list):
            return Refused(400, "invalid_batch", "a batch request needs a 'batch' array")
        defaults = {
            name: body[name] for name in _BATCH_DEFAULTS if isinstance(body.get(name), dict)
        }
        sent_at = body.get("sentAt")
    else:
        messages = [{**body, "type": SINGLE_ENDPOINTS[request.endpoint]}]
        defaults, sent_at = {}, None
    records = []
    for index, message in enumerate(messages):
        where = f"batch[{index}]" if is_batch else "the message"
        shaped = _shape_message(message, where, request, defaults, sent_at, new_message_id)
        if isinstance(shaped, Refused):
            return shaped
        records.append(shaped)
    return Accepted(records)


def _unauthorized() -> Refused:
    return Refused(401, "unauthorized", "unknown write key (HTTP Basic user or 'writeKey')")


def _shape_message(
    message: Any,
    where: str,
    request: TrackingRequest,
    defaults: Mapping[str, Any],
    sent_at: Any,
    new_message_id: Callable[[], str],
) -> RawRecord | Refused:
    if not isinstance(message, dict):
        return Refused(400, "invalid_message", f"{where} is not a JSON object")
    if message.get("type") not in MESSAGE_TYPES:
        wanted = ", ".join(sorted(MESSAGE_TYPES))
        return Refused(
            400, "invalid_type", f"{where}: type {message.get('type')!r} is not one of {wanted}"
        )
    if device_key(request.device_cookie, message) is None:
        return Refused(400, "missing_id", f"{where}: a userId or an anonymousId is required")
    placeholders = request.placeholders
    key = device_key(  # R36: a placeholder id names no device
        named_device(request.device_cookie, placeholders), placeholder_free(message, placeholders)
    )
    shaped = {name: value for name, value in defaults.items() if name not in message}
    shaped.update(message)
    shaped.pop("writeKey", None)
    if sent_at is not None and "sentAt" not in shaped:
        shaped["sentAt"] = sent_at
    if not shaped.get("messageId"):
        shaped["messageId"] = new_message_id()
    # the collector's own fields: what a client says of them does not count (R27, R31)
    shaped["receivedAt"] = request.received_at
    shaped["requestIp"] = request.request_ip
    value = orjson.dumps(shaped)
    if len(value) > MAX_MESSAGE_BYTES:
        return Refused(
            400,
            "too_large",
            f"{where}: {len(value)} bytes is over the {MAX_MESSAGE_BYTES}-byte message limit",
        )
    parsed = validate_raw_event(shaped)
    if isinstance(parsed, Rejection):
        return Refused(400, parsed.code.value, f"{where}: {parsed.message}")
    return RawRecord(None if key is None else key.encode("utf-8"), value)
