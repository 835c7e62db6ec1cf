"""Regulations (SPEC R39): what an erasure or suppression request is, which ids of an event it
concerns, and the digests the suppression list holds instead of the ids.

A regulation is a record of the topic ``events.regulations`` (CONTRACT): ``{"id", "type",
"userIds", "anonymousIds", "devices", "requestedAt"}``. The same shape comes from the
``enricher regulate`` command, a JSON Lines file, and ``POST /regulations``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from enrichers.caches import remembered
from enrichers.hygiene import Placeholders
from enrichers.timestamps import format_iso_ms, parse_iso_ms
from enrichers.values import id_string, is_truthy

RegulationType = Literal["suppress", "delete", "delete-and-suppress", "unsuppress"]
TYPES: Final[tuple[RegulationType, ...]] = (
    "suppress",
    "delete",
    "delete-and-suppress",
    "unsuppress",
)
IdKind = Literal["userId", "anonymousId", "device"]
KINDS: Final[tuple[IdKind, ...]] = ("userId", "anonymousId", "device")
_FIELDS: Final[Mapping[IdKind, str]] = {
    "userId": "userIds",
    "anonymousId": "anonymousIds",
    "device": "devices",
}
MAX_IDS: Final = 10_000
"""Most ids one regulation names: its record stays far below a broker's 1 MiB record limit
(ids are bounded too); a longer list is sent as several regulations."""
MAX_ID_LENGTH: Final = 1_000


class InvalidRegulation(ValueError):
    """A regulation that cannot be applied, with what is wrong (never an id's value)."""


@dataclass(frozen=True, slots=True)
class Regulation:
    id: str
    type: RegulationType
    user_ids: tuple[str, ...] = ()
    anonymous_ids: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    requested_at_ms: int = 0

    @property
    def suppresses(self) -> bool:
        return self.type in ("suppress", "delete-and-suppress")

    @property
    def deletes(self) -> bool:
        return self.type in ("delete", "delete-and-suppress")

    @property
    def unsuppresses(self) -> bool:
        return self.type == "unsuppress"

    def ids(self) -> Iterator[tuple[IdKind, str]]:
        """Every id the regulation names, with its kind."""
        for user_id in self.user_ids:
            yield "userId", user_id
        for anonymous_id in self.anonymous_ids:
            yield "anonymousId", anonymous_id
        for device in self.devices:
            yield "device", device

    def counts(self) -> dict[str, int]:
        """How many ids of each kind: what status reports show instead of the ids."""
        return {
            "userIds": len(self.user_ids),
            "anonymousIds": len(self.anonymous_ids),
            "devices": len(self.devices),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "userIds": list(self.user_ids),
            "anonymousIds": list(self.anonymous_ids),
            "devices": list(self.devices),
            "requestedAt": format_iso_ms(self.requested_at_ms),
        }


@dataclass
class RegulationIds:
    """Ids gathered for a regulation (from options, a file or a request body)."""

    user_ids: list[str] = field(default_factory=list)
    anonymous_ids: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)

    def add(self, kind: IdKind, value: Any, placeholders: Placeholders) -> None:
        identifier = id_string(value) if is_truthy(value) else None
        if identifier is None or not identifier.strip():
            raise InvalidRegulation(f"a {kind} must be a non-empty string or number")
        if len(identifier) > MAX_ID_LENGTH:
            raise InvalidRegulation(f"a {kind} is over {MAX_ID_LENGTH} characters")
        if kind != "device" and placeholders.label(identifier) is not None:
            # R36: events never carry it (it is removed before any rule), so it names nobody
            raise InvalidRegulation(f"a {kind} is a placeholder id (R36), which names nobody")
        {"userId": self.user_ids, "anonymousId": self.anonymous_ids, "device": self.devices}[
            kind
        ].append(identifier)

    def add_line(self, document: Any, placeholders: Placeholders) -> None:
        """One JSON Lines entry: ``{"userId": ...}``, ``{"anonymousId": ...}`` or
        ``{"device": ...}`` (one or several of them)."""
        if not isinstance(document, dict):
            raise InvalidRegulation("each line must be a JSON object")
        named = [kind for kind in KINDS if kind in document]
        if not named or set(document) - set(KINDS):
            raise InvalidRegulation('each line names "userId", "anonymousId" or "device"')
        for kind in named:
            self.add(kind, document[kind], placeholders)

    def add_body(self, body: Mapping[str, Any], placeholders: Placeholders) -> None:
        """``"userIds"``, ``"anonymousIds"``, ``"devices"`` lists of a request body."""
        for kind, name in _FIELDS.items():
            values = body.get(name, [])
            if not isinstance(values, list):
                raise InvalidRegulation(f'"{name}" must be a list')
            for value in values:
                self.add(kind, value, placeholders)

    def __len__(self) -> int:
        return len(self.user_ids) + len(self.anonymous_ids) + len(self.devices)

    def regulations(
        self, kind: str, new_id: Iterable[str], requested_at_ms: int
    ) -> list[Regulation]:
        """The regulations of these ids, at most :data:`MAX_IDS` ids each (duplicates once)."""
        if kind not in TYPES:
            raise InvalidRegulation(f"the type is one of {', '.join(TYPES)}")
        if not len(self):
            raise InvalidRegulation("a regulation names at least one id")
        named = [
            (k, v)
            for k, values in (
                ("userId", self.user_ids),
                ("anonymousId", self.anonymous_ids),
                ("device", self.devices),
            )
            for v in dict.fromkeys(values)
        ]
        ids = iter(new_id)
        regulations = []
        for start in range(0, len(named), MAX_IDS):
            part = named[start : start + MAX_IDS]
            regulations.append(
                Regulation(
                    next(ids),
                    kind,  # checked against TYPES above
                    tuple(v for k, v in part if k == "userId"),
                    tuple(v for k, v in part if k == "anonymousId"),
                    tuple(v for k, v in part if k == "device"),
                    requested_at_ms,
                )
            )
        return regulations


def parse_regulation(document: Any) -> Regulation:
    """A regulation record's value (as the topic holds it)."""
    if not isinstance(document, dict):
        raise InvalidRegulation("a regulation is a JSON object")
    identifier, kind = document.get("id"), document.get("type")
    if not isinstance(identifier, str) or not identifier:
        raise InvalidRegulation('a regulation has an "id"')
    if kind not in TYPES:
        raise InvalidRegulation(f"the type is one of {', '.join(TYPES)}")
    lists: dict[str, tuple[str, ...]] = {}
    for name in _FIELDS.values():
        values = document.get(name) or []
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise InvalidRegulation(f'"{name}" must be a list of ids')
        lists[name] = tuple(values)
    requested = document.get("requestedAt")
    requested_ms = parse_iso_ms(requested) if isinstance(requested, str) else None
    return Regulation(
        identifier,
        kind,
        lists["userIds"],
        lists["anonymousIds"],
        lists["devices"],
        requested_ms or 0,
    )


_PREFIX: Final[Mapping[str, bytes]] = {"userId": b"u\0", "anonymousId": b"a\0", "device": b"d\0"}


class Digests:
    """The suppression list's names for ids: keyed BLAKE2b of the kind and the id, so the list
    (and anything else stored about a regulation) never holds an id, and an id cannot be
    confirmed by hashing guesses without the key. The digests of recent ids are kept in
    memory (a device's ids come back on every event it sends: issue 21)."""

    CACHED: Final = 32_768
    """Most digests kept per kind of id (device, anonymousId, userId); a kind's cache starts
    over when full."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._keyed = hashlib.blake2b(key=key, digest_size=16)  # copied: the key hashed once
        self._caches: dict[str, dict[str, bytes]] = {kind: {} for kind in _PREFIX}
        """Per kind of id, the digests by the id's text (no bytes built to find one)."""

    @classmethod
    def from_secret(cls, secret: bytes) -> Digests:
        return cls(hashlib.sha256(b"identity-enricher regulations\0" + secret).digest())

    def of(self, kind: str, identifier: str) -> bytes:
        cache = self._caches[kind]
        digest = cache.get(identifier)
        if digest is None:
            hasher = self._keyed.copy()
            hasher.update(_PREFIX[kind] + identifier.encode("utf-8", "surrogatepass"))
            digest = remembered(cache, identifier, hasher.digest(), self.CACHED)
        return digest

    def __repr__(self) -> str:
        return "Digests(<key>)"  # the key is a secret

    @property
    def fingerprint(self) -> str:
        """Says which key made the digests (stored next to them, to notice a changed key)."""
        return hashlib.blake2b(b"fingerprint", key=self.key, digest_size=8).hexdigest()


def event_ids(
    fields: dict[str, Any], device_key: str, stored_user_id: str | None
) -> list[tuple[IdKind, str]]:
    """R39: the ids by which a raw event may be suppressed: its userId, its anonymousId, its
    device key, and the userId its device has stored."""
    ids: list[tuple[IdKind, str]] = [("device", device_key)]
    # (each field in turn, not a loop over a tuple of names: compiled, that is generic)
    user_id = _given_id(fields.get("userId"))
    if user_id:
        ids.append(("userId", user_id))
    anonymous_id = _given_id(fields.get("anonymousId"))
    if anonymous_id:
        ids.append(("anonymousId", anonymous_id))
    if stored_user_id:
        ids.append(("userId", stored_user_id))
    return ids


def _given_id(value: Any) -> str | None:
    """An id field's id: its text when given (a falsy value is none: R6)."""
    return id_string(value) if is_truthy(value) else None


def raw_ids(document: Any, key: str | None) -> list[tuple[IdKind, str]]:
    """The ids of a record the worker cannot process (to be dead-lettered): a suppressed
    person's malformed event is dropped too (R39), as far as its ids can be read."""
    ids: list[tuple[IdKind, str]] = [("device", key)] if key else []
    if isinstance(document, dict):
        ids += event_ids(document, "", None)[1:]
        for name in ("anonymousId", "userId"):
            identifier = _given_id(document.get(name))
            if identifier and not key:
                ids.append(("device", identifier))
                break
    return ids
