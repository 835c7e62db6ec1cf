"""Device state (SPEC "State"): what a browser keeps in cookies and localStorage, plus the
bookkeeping the server needs (recent messageIds, applied source offsets, last seen time)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

RECENT_MESSAGE_IDS: Final = 64
"""R33: how many accepted messageIds per device are remembered for duplicate detection."""


_EMPTY: Final[Mapping[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One device's record. Identity fields follow SPEC "State"; the rest is bookkeeping that
    survives reset and forget (R3 deletes identity, not the memory of what was applied)."""

    aid: str | None = None
    uid: str | None = None
    utraits: Mapping[str, Any] = field(default_factory=dict)
    gid: str | None = None
    gtraits: Mapping[str, Any] = field(default_factory=dict)
    last_seen_ms: int | None = None
    recent: tuple[int, ...] = ()
    generated: int = 0
    applied: Mapping[str, int] = field(default_factory=dict)
    consent: Mapping[str, bool] | None = None
    """R37: the latest consent preferences the device sent."""
    version: int = field(default=0, compare=False)
    """The stored record's version when it was loaded (0: none); the shell saves only over that
    version (R34: two workers never overwrite each other's change of one device). The rules
    carry it along unchanged."""

    def without_identity(self) -> DeviceState:
        """R3, R4, R10: empty ids, traits and consent (R37); keep the bookkeeping."""
        return replace(
            self, aid=None, uid=None, utraits=_EMPTY, gid=None, gtraits=_EMPTY, consent=None
        )

    def delivered(
        self, last_seen_ms: int, recent: tuple[int, ...], applied: Mapping[str, int]
    ) -> DeviceState:
        """This state with the delivery bookkeeping of one more event (R1, R33, R34): what
        every event changes, built directly (``replace`` costs twice as much on this path)."""
        return DeviceState(
            self.aid,
            self.uid,
            self.utraits,
            self.gid,
            self.gtraits,
            last_seen_ms,
            recent,
            self.generated,
            applied,
            self.consent,
            self.version,
        )

    @property
    def has_identity(self) -> bool:
        return bool(
            self.aid is not None
            or self.uid is not None
            or self.utraits
            or self.gid is not None
            or self.gtraits
        )

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-ready form: defaults are left out to keep Redis memory small."""
        doc: dict[str, Any] = {}
        if self.aid is not None:
            doc["a"] = self.aid
        if self.uid is not None:
            doc["u"] = self.uid
        if self.utraits:
            doc["ut"] = self.utraits
        if self.gid is not None:
            doc["g"] = self.gid
        if self.gtraits:
            doc["gt"] = self.gtraits
        if self.last_seen_ms is not None:
            doc["s"] = self.last_seen_ms
        if self.recent:
            doc["r"] = list(self.recent)
        if self.generated:
            doc["n"] = self.generated
        if self.applied:
            doc["o"] = self.applied
        if self.consent is not None:
            doc["c"] = self.consent
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DeviceState:
        return cls(
            aid=doc.get("a"),
            uid=doc.get("u"),
            utraits=doc.get("ut") or {},
            gid=doc.get("g"),
            gtraits=doc.get("gt") or {},
            last_seen_ms=doc.get("s"),
            recent=tuple(doc.get("r") or ()),
            generated=doc.get("n", 0),
            applied=doc.get("o") or {},
            consent=doc.get("c"),
        )


EMPTY_DEVICE: Final = DeviceState()
