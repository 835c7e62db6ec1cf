"""The console's window of recent events (no I/O): raw records matched with their outputs,
what the enricher did to each (badges), filters, and the differences between the forms.

A raw record is an entry, named by its source ``topic/partition/offset``. Its warehouse
message names that source in ``_enrichment.source``; its destinations message has the same
messageId; a dead letter names the source in ``source``. Outputs may arrive before their raw
record (the topics are read side by side): they wait, bounded, for it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

FILTERS: Final = ("userId", "anonymousId", "device", "type", "event", "code", "q")
"""The query parameters a view may be filtered by (the URL keeps them)."""
_ORPHANS_KEPT: Final = 2_000


@dataclass
class Entry:
    id: str
    """The raw record's source, ``topic/partition/offset``."""
    seq: int
    """Arrival order in the window (newest is highest)."""
    time_ms: int
    key: str | None
    raw: Any = None
    raw_text: str = ""
    warehouse: dict[str, Any] | None = None
    destinations: dict[str, Any] | None = None
    deadletter: dict[str, Any] | None = None
    duplicate: bool = False

    @property
    def message_id(self) -> str | None:
        for document in (self.warehouse, self.raw):
            if isinstance(document, dict) and isinstance(document.get("messageId"), str):
                return str(document["messageId"])
        return None

    def field(self, name: str) -> Any:
        """The value a row shows: from the warehouse message when there is one."""
        for document in (self.warehouse, self.raw):
            if isinstance(document, dict) and document.get(name) not in (None, ""):
                return document[name]
        return None

    @property
    def device(self) -> str | None:
        enrichment = (self.warehouse or {}).get("_enrichment")
        if isinstance(enrichment, dict) and isinstance(enrichment.get("device"), str):
            return str(enrichment["device"])
        return self.key

    def badges(self) -> list[dict[str, str]]:
        """What the enricher did, as short labels with a kind (for colours)."""
        badges: list[dict[str, str]] = []
        if self.deadletter is not None:
            code = str((self.deadletter.get("error") or {}).get("code", "?"))
            return [{"kind": "error", "label": f"dead letter: {code}"}]
        if self.warehouse is None:
            if self.duplicate:
                return [{"kind": "muted", "label": "duplicate"}]
            return [{"kind": "muted", "label": "pending"}]
        enrichment = self.warehouse.get("_enrichment") or {}
        source = enrichment.get("anonymousId")
        if source in ("generated", "stored", "call"):
            label = "explicit" if source == "call" else source
            badges.append({"kind": "id", "label": f"anonymousId {label}"})
        if enrichment.get("rotated"):
            badges.append({"kind": "warn", "label": "rotated"})
        raw_user = self.raw.get("userId") if isinstance(self.raw, dict) else None
        if self.warehouse.get("userId") and not raw_user:
            badges.append({"kind": "id", "label": "userId from the device"})
        if self.warehouse.get("type") in ("identify", "group"):
            not_cached = enrichment.get("traitsNotCached")
            if not_cached:
                badges.append({"kind": "warn", "label": f"{not_cached} traits not cached"})
            else:
                badges.append({"kind": "ok", "label": "traits cached"})
        if _ip(self.raw) != _ip(self.warehouse) and _ip(self.raw) is not None:
            badges.append({"kind": "info", "label": "IP policy applied"})
        if self.destinations is not None:
            badges.append({"kind": "ok", "label": "sent to destinations"})
        else:
            badges.append({"kind": "muted", "label": "not sent to destinations"})
        return badges

    def row(self) -> dict[str, Any]:
        """The live view's row."""
        return {
            "id": self.id,
            "seq": self.seq,
            "time": self.time_ms,
            "type": self.field("type"),
            "event": self.field("event") or self.field("name"),
            "device": self.device,
            "anonymousId": self.field("anonymousId"),
            "userId": self.field("userId"),
            "messageId": self.message_id,
            "badges": self.badges(),
        }

    def detail(self) -> dict[str, Any]:
        """The opened event: the three forms and their differences."""
        return {
            **self.row(),
            "raw": self.raw if self.raw is not None else self.raw_text,
            "warehouse": self.warehouse,
            "destinations": self.destinations,
            "deadletter": self.deadletter,
            "changes": {
                "warehouse": differences(self.raw, self.warehouse)
                if isinstance(self.raw, dict) and self.warehouse is not None
                else [],
                "destinations": differences(self.warehouse, self.destinations)
                if self.warehouse is not None and self.destinations is not None
                else [],
            },
        }

    def matches(self, query: Mapping[str, str]) -> bool:
        for name, wanted in query.items():
            if not wanted or name not in FILTERS:
                continue
            if name == "q":
                if wanted.lower() not in self.text().lower():
                    return False
            elif name == "code":
                code = ((self.deadletter or {}).get("error") or {}).get("code")
                if code != wanted:
                    return False
            elif name == "device":
                if self.device != wanted:
                    return False
            elif name == "event":
                if self.field("event") != wanted:
                    return False
            elif str(self.field(name)) != wanted:
                return False
        return True

    def text(self) -> str:
        parts = [self.raw_text]
        for document in (self.warehouse, self.deadletter):
            if document is not None:
                parts.append(orjson.dumps(document).decode())
        return "\n".join(parts)


def _ip(document: Any) -> Any:
    if not isinstance(document, dict):
        return None
    context = document.get("context")
    ip = context.get("ip") if isinstance(context, dict) else None
    return ip if ip is not None else document.get("requestIp")


def differences(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What changed from ``before`` to ``after``: ``{"path", "op": added|removed|changed}``
    for every leaf or subtree that differs (objects compared key by key)."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[dict[str, Any]] = []
        for name in before.keys() | after.keys():
            where = f"{path}.{name}" if path else str(name)
            if name not in after:
                changes.append({"path": where, "op": "removed", "before": before[name]})
            elif name not in before:
                changes.append({"path": where, "op": "added", "after": after[name]})
            else:
                changes += differences(before[name], after[name], where)
        return sorted(changes, key=lambda change: change["path"])
    if before == after and type(before) is type(after):
        return []
    return [{"path": path, "op": "changed", "before": before, "after": after}]


@dataclass
class Window:
    """The most recent ``size`` entries, matched as their records arrive."""

    size: int
    entries: OrderedDict[str, Entry] = field(default_factory=OrderedDict)
    _seq: int = 0
    _by_message_id: dict[str, str] = field(default_factory=dict)
    _waiting: OrderedDict[str, tuple[str, dict[str, Any]]] = field(default_factory=OrderedDict)
    """Outputs whose raw record has not arrived yet: matching key -> (role, document)."""
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("raw", "warehouse", "destinations", "deadletter"), 0)
    )

    def add_raw(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
    ) -> Entry:
        self.counts["raw"] += 1
        self._seq += 1
        entry_id = f"{topic}/{partition}/{offset}"
        text = (value or b"").decode("utf-8", "replace")
        try:
            raw: Any = orjson.loads(value or b"null")
        except orjson.JSONDecodeError:
            raw = None
        entry = Entry(
            entry_id,
            self._seq,
            timestamp_ms,
            key.decode("utf-8", "replace") if key is not None else None,
            raw,
            text[:65536],
        )
        message_id = raw.get("messageId") if isinstance(raw, dict) else None
        if isinstance(message_id, str):
            entry.duplicate = message_id in self._by_message_id
        self.entries[entry_id] = entry
        for role in ("warehouse", "destinations", "deadletter"):
            waiting = self._waiting.pop(f"{role}:{entry_id}", None)
            if waiting is not None:
                self._attach(entry, *waiting)
        if isinstance(message_id, str):
            waiting = self._waiting.pop(f"destinations:{message_id}", None)
            if waiting is not None:
                self._attach(entry, *waiting)
        while len(self.entries) > self.size:
            _, dropped = self.entries.popitem(last=False)
            if dropped.message_id and self._by_message_id.get(dropped.message_id) == dropped.id:
                del self._by_message_id[dropped.message_id]
        return entry

    def add_output(self, role: str, value: bytes | None) -> Entry | None:
        """A warehouse, destinations or dead-letter record; the entry it completes (None
        while its raw record is not in the window yet)."""
        self.counts[role] += 1
        try:
            document = orjson.loads(value or b"null")
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict):
            return None
        if role == "warehouse":
            enrichment = document.get("_enrichment") or {}
            match = f"{role}:{enrichment.get('source')}"
        elif role == "deadletter":
            source = document.get("source") or {}
            match = f"{role}:{source.get('topic')}/{source.get('partition')}/{source.get('offset')}"
        else:
            match = f"{role}:{document.get('messageId')}"
        entry = self._find(match)
        if entry is None:
            self._waiting[match] = (role, document)
            while len(self._waiting) > _ORPHANS_KEPT:
                self._waiting.popitem(last=False)
            return None
        self._attach(entry, role, document)
        return entry

    def _find(self, match: str) -> Entry | None:
        role, _, name = match.partition(":")
        if role == "destinations":
            entry_id = self._by_message_id.get(name)
            return self.entries.get(entry_id) if entry_id else None
        return self.entries.get(name)

    def _attach(self, entry: Entry, role: str, document: dict[str, Any]) -> None:
        setattr(entry, role, document)
        if role == "warehouse":
            message_id = document.get("messageId")
            if isinstance(message_id, str):
                self._by_message_id[message_id] = entry.id
                waiting = self._waiting.pop(f"destinations:{message_id}", None)
                if waiting is not None:
                    self._attach(entry, *waiting)

    def newest(self, query: Mapping[str, str], limit: int) -> list[Entry]:
        found: list[Entry] = []
        for entry in reversed(self.entries.values()):
            if entry.matches(query):
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())


def query_of(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The filters of a URL query (unknown names ignored)."""
    return {name: value for name, value in items if name in FILTERS and value}
