"""The warehouse layout Segment users query, as pure functions (no I/O): which tables a message
lands in, its flattened columns, the type of a new column, and how a value fits a column that
already has a type. ``streams.sinks.postgres`` does the SQL.

Tables: ``identifies`` and ``users`` (one row per userId), ``tracks`` and one table per track
event name (snake_case), ``pages``, ``screens``, ``groups`` and ``accounts`` (one row per
groupId), ``aliases``. Every event table has ``id`` (the messageId), ``anonymous_id``,
``user_id``, ``received_at``, ``sent_at``, ``original_timestamp``, ``timestamp`` and the
context flattened (``context_ip``, ``context_page_path``, ``context_traits_plan_id``...).
Properties (tracks by name, pages, screens) and traits (identifies, users, groups, accounts)
become top-level columns; one that would take a reserved column's name is prefixed
(``property_id``, ``trait_user_id``)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal

import orjson

ColumnType = Literal["text", "double precision", "boolean", "timestamptz"]
MAX_IDENTIFIER: Final = 63  # PostgreSQL's NAMEDATALEN - 1

STANDARD_COLUMNS: Final[dict[str, ColumnType]] = {
    "id": "text",
    "anonymous_id": "text",
    "user_id": "text",
    "received_at": "timestamptz",
    "sent_at": "timestamptz",
    "original_timestamp": "timestamptz",
    "timestamp": "timestamptz",
}
PROFILE_COLUMNS: Final[dict[str, ColumnType]] = {"id": "text", "received_at": "timestamptz"}
PROFILE_TABLES: Final = frozenset({"users", "accounts"})
"""One row per userId / groupId: the latest values win (by ``received_at``)."""
RESERVED_TABLES: Final = frozenset(
    {"identifies", "users", "tracks", "pages", "screens", "groups", "accounts", "aliases"}
)
_TIMESTAMP: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
)


@dataclass(frozen=True)
class TableRow:
    """One row for one table: column -> JSON scalar (str, bool, int, float), ``None``, or JSON
    text for a list."""

    table: str
    values: dict[str, Any]


@dataclass
class TablePlan:
    """What loading some rows into one table takes: columns to add, columns to widen to text
    (a value did not fit their type), and the rows with values converted to the final types."""

    add: dict[str, ColumnType] = field(default_factory=dict)
    widen: list[str] = field(default_factory=list)
    columns: dict[str, ColumnType] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changes_schema(self) -> bool:
        return bool(self.add or self.widen)


@lru_cache(maxsize=65_536)
def snake_case(name: str) -> str:
    """``planId`` -> ``plan_id``, ``Order Completed`` -> ``order_completed``; a valid
    PostgreSQL identifier of at most 63 characters (longer names end with a short hash).
    Cached: field names repeat from message to message."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not text:
        text = "_"
    if text[0].isdigit():
        text = f"_{text}"
    if len(text) > MAX_IDENTIFIER:
        digest = hashlib.blake2b(text.encode(), digest_size=4).hexdigest()
        text = f"{text[: MAX_IDENTIFIER - 9]}_{digest}"
    return text


def event_table(event: str) -> str:
    """The table of a track event: its name in snake_case; a name that would be one of the
    standard tables gets a leading ``_``."""
    table = snake_case(event)
    return f"_{table}" if table in RESERVED_TABLES else table


def table_rows(message: Mapping[str, Any]) -> list[TableRow]:
    """The rows one enriched message makes, in the order they should be written."""
    kind = message.get("type")
    base: dict[str, Any] = {
        "id": message.get("messageId"),
        "anonymous_id": message.get("anonymousId"),
        "user_id": message.get("userId"),
        "received_at": message.get("receivedAt"),
        "sent_at": message.get("sentAt"),
        "original_timestamp": message.get("originalTimestamp"),
        "timestamp": message.get("timestamp"),
    }
    context = message.get("context")
    if isinstance(context, Mapping):
        _flatten("context", context, base)
    traits = message.get("traits")
    traits = traits if isinstance(traits, Mapping) else {}
    properties = message.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    if kind == "identify":
        rows = [TableRow("identifies", _with_custom(base, traits, "trait"))]
        if isinstance(message.get("userId"), str) and message["userId"]:
            profile = {"id": message["userId"], "received_at": message.get("receivedAt")}
            rows.append(TableRow("users", _with_custom(profile, traits, "trait")))
        return rows
    if kind == "track":
        event = message.get("event")
        name = event if isinstance(event, str) else str(event)
        named = {**base, "event": snake_case(name), "event_text": name}
        rows = [TableRow("tracks", named)]
        rows.append(TableRow(event_table(name), _with_custom(named, properties, "property")))
        return rows
    if kind in ("page", "screen"):
        row = {**base, "name": message.get("name"), "category": message.get("category")}
        return [TableRow(f"{kind}s", _with_custom(row, properties, "property"))]
    if kind == "group":
        group_id = message.get("groupId")
        rows = [TableRow("groups", _with_custom({**base, "group_id": group_id}, traits, "trait"))]
        if group_id is not None and group_id != "":
            profile = {"id": str(group_id), "received_at": message.get("receivedAt")}
            rows.append(TableRow("accounts", _with_custom(profile, traits, "trait")))
        return rows
    if kind == "alias":
        return [TableRow("aliases", {**base, "previous_id": message.get("previousId")})]
    return []


def _with_custom(row: dict[str, Any], custom: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    _flatten("", custom, flat)
    result = dict(row)
    for column, value in flat.items():
        if column in row or column.startswith("context_"):
            column = snake_case(f"{prefix}_{column}")
        result[column] = value
    return result


def _flatten(prefix: str, document: Mapping[str, Any], into: dict[str, Any]) -> None:
    for key, value in document.items():
        column = snake_case(f"{prefix}_{key}" if prefix else str(key))
        if isinstance(value, Mapping):
            _flatten(column, value, into)
        elif isinstance(value, list):
            into[column] = orjson.dumps(value).decode()
        else:
            into[column] = value


def infer_type(value: Any) -> ColumnType:
    """The type of a new column from its first value: boolean, double precision (numbers),
    timestamptz (ISO-8601 strings), else text."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "double precision" if math.isfinite(value) else "text"
    if isinstance(value, str) and parse_timestamp(value) is not None:
        return "timestamptz"
    return "text"


def parse_timestamp(value: str) -> datetime | None:
    if not _TIMESTAMP.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_NO_FIT: Final = object()


def fit(value: Any, column: ColumnType) -> Any:
    """``value`` converted for a column of type ``column``, or ``_NO_FIT`` (the column must
    then become text). Numbers written as strings go into number columns, ``"true"`` into
    boolean ones; anything goes into text."""
    if value is None:
        return None
    if column == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        return orjson.dumps(value).decode()
    if column == "double precision":
        if isinstance(value, bool):
            return _NO_FIT
        if isinstance(value, int | float):
            return float(value) if math.isfinite(value) else _NO_FIT
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return _NO_FIT
            return number if math.isfinite(number) else _NO_FIT
        return _NO_FIT
    if column == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return _NO_FIT
    if isinstance(value, str):  # timestamptz
        moment = parse_timestamp(value)
        return moment if moment is not None else _NO_FIT
    return _NO_FIT


def plan_table(
    table: str, rows: Iterable[Mapping[str, Any]], existing: Mapping[str, ColumnType]
) -> TablePlan:
    """How to load ``rows`` into ``table`` whose columns are ``existing`` (empty: a new
    table, to be created with :func:`base_columns`). A value is never dropped: a column whose
    type it does not fit is widened to text."""
    plan = TablePlan()
    columns: dict[str, ColumnType] = dict(existing) if existing else base_columns(table)
    rows = list(rows)
    for row in rows:
        for column, value in row.items():
            if value is None:
                continue
            if column not in columns:
                columns[column] = plan.add[column] = infer_type(value)
            elif fit(value, columns[column]) is _NO_FIT:
                columns[column] = "text"
                if column in plan.add:
                    plan.add[column] = "text"
                elif column not in plan.widen:
                    plan.widen.append(column)
    plan.columns = columns
    plan.rows = [{c: fit(v, columns[c]) for c, v in row.items() if c in columns} for row in rows]
    return plan


def base_columns(table: str) -> dict[str, ColumnType]:
    """The columns a table is created with."""
    return dict(PROFILE_COLUMNS if table in PROFILE_TABLES else STANDARD_COLUMNS)


def merge_profiles(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``users``/``accounts`` for one batch, one per id: values of later messages
    (by ``received_at``) win, nulls do not erase (a batch may hold several identifies of one
    user)."""
    merged: dict[Any, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: str(r.get("received_at") or "")):
        current = merged.setdefault(row["id"], {})
        current.update({k: v for k, v in row.items() if v is not None})
    return list(merged.values())
