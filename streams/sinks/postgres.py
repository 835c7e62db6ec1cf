"""``postgres``: the warehouse loader. Reads ``events.warehouse`` and loads it into PostgreSQL in
the layout Segment users query (``streams.sinks.warehouse_layout``), in bulk: per batch and
table, one ``COPY`` into a temporary table and one ``INSERT ... SELECT ... ON CONFLICT``, all in
one transaction. ``id`` (the messageId) is the primary key, so a batch loaded twice (after a
crash before the offset commit) adds no row; ``users`` and ``accounts`` keep the latest values
per id. New fields add columns; a value that does not fit its column's type widens it to
text. Schema changes take a transaction-level advisory lock per table, so several loader
processes can run side by side."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from enrichers.regulations import Regulation
from streams.sinks.base import (
    PermanentSinkError,
    RetryableSinkError,
    Sink,
    SinkOption,
    SinkRecord,
    SinkSource,
)
from streams.sinks.options import positive_float, text
from streams.sinks.warehouse_layout import (
    PROFILE_TABLES,
    ColumnType,
    TablePlan,
    base_columns,
    merge_profiles,
    plan_table,
    table_rows,
)

log = logging.getLogger(__name__)


def _schema_name(value: str) -> str:
    value = value.strip()
    if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", value):
        raise ValueError("a lower-case SQL identifier: letters, digits and '_'")
    return value


_TYPES: dict[str, ColumnType] = {
    "text": "text",
    "double precision": "double precision",
    "boolean": "boolean",
    "timestamp with time zone": "timestamptz",
}


_REJECTED = (
    psycopg.errors.DataError,
    psycopg.errors.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.TooManyColumns,
    psycopg.errors.StatementTooComplex,
)
"""What PostgreSQL says of a record it will never take, whatever the retries."""


class PostgresSink(Sink):
    name: ClassVar[str] = "postgres"
    source: ClassVar[SinkSource] = "warehouse"
    obeys_all_false: ClassVar[bool] = False  # a warehouse gets everything (R29 is for tools)
    options: ClassVar[Sequence[SinkOption]] = (
        SinkOption(
            "dsn", text, required=True, help="libpq connection string, postgresql://USER@HOST/DB"
        ),
        SinkOption("schema", _schema_name, "public", "schema of the tables (created if missing)"),
        SinkOption("connect_timeout", positive_float, 10.0, "seconds to connect"),
    )

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._schema: str = config["schema"]
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._columns: dict[str, dict[str, ColumnType]] = {}

    async def start(self) -> None:
        connection = await self._connect()
        async with connection.transaction():
            await connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
            )

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def regulate(self, regulation: Regulation) -> Mapping[str, Any]:
        """R39: in one transaction, every row of the regulation's userIds (``users`` by id,
        the other tables by ``user_id``), of their anonymousIds as loaded here and of the
        anonymousIds and devices it names (``anonymous_id``, and aliases' ``previous_id``)."""
        if not regulation.deletes:
            return {}
        user_ids = list(regulation.user_ids)
        try:
            connection = await self._connect()
            async with connection.transaction():
                tables = await self._tables_with_ids(connection)
                anonymous_ids = {*regulation.anonymous_ids, *regulation.devices}
                for table, columns in tables.items():
                    if user_ids and {"user_id", "anonymous_id"} <= columns:
                        cursor = await connection.execute(
                            sql.SQL(
                                "SELECT DISTINCT anonymous_id FROM {} WHERE user_id = ANY(%s)"
                                " AND anonymous_id IS NOT NULL"
                            ).format(sql.Identifier(self._schema, table)),
                            [user_ids],
                        )
                        anonymous_ids.update(row[0] for row in await cursor.fetchall())
                rows = 0
                aids = sorted(anonymous_ids)
                wanted: dict[str, list[str]] = {
                    "user_id": user_ids,
                    "anonymous_id": aids,
                    "previous_id": [*user_ids, *aids],  # aliases
                }
                for table, columns in tables.items():
                    named = [(c, v) for c, v in wanted.items() if c in columns]
                    if table == "users":
                        named.append(("id", user_ids))  # one row per userId
                    if not named:
                        continue
                    cursor = await connection.execute(
                        sql.SQL("DELETE FROM {} WHERE {}").format(
                            sql.Identifier(self._schema, table),
                            sql.SQL(" OR ").join(
                                sql.SQL("{} = ANY(%s)").format(sql.Identifier(c)) for c, _ in named
                            ),
                        ),
                        [values for _, values in named],
                    )
                    rows += max(0, cursor.rowcount)
        except psycopg.OperationalError as exc:
            await self.stop()
            raise RetryableSinkError(f"PostgreSQL: {exc}") from exc
        return {"rows": rows, "tables": len(tables)}

    async def _tables_with_ids(
        self, connection: psycopg.AsyncConnection[Any]
    ) -> dict[str, set[str]]:
        """Tables of the schema with personal id columns, and those columns."""
        cursor = await connection.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t"
            " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE'"
            " AND (c.column_name IN ('user_id', 'anonymous_id', 'previous_id')"
            " OR (c.table_name = 'users' AND c.column_name = 'id'))",
            [self._schema],
        )
        tables: dict[str, set[str]] = {}
        for table, column in await cursor.fetchall():
            tables.setdefault(table, set()).add(column)
        return tables

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        # a message without messageId has no primary key: it cannot be loaded idempotently
        failed = [r for r in batch if not isinstance(r.message.get("messageId"), str)]
        loadable = [r for r in batch if isinstance(r.message.get("messageId"), str)]
        reason = "the message has no messageId"
        try:
            await self._load(loadable)
        except _REJECTED as exc:
            # not expected (values are fitted to their columns first): find the records at
            # fault one by one, load the others
            reason = f"rejected by PostgreSQL: {exc}"
            for record in loadable:
                try:
                    await self._load([record])
                except _REJECTED:
                    failed.append(record)
        if failed:
            raise PermanentSinkError(reason, failed)

    async def _load(self, batch: Sequence[SinkRecord]) -> None:
        by_table: dict[str, list[dict[str, Any]]] = {}
        for record in batch:
            for row in table_rows(record.message):
                by_table.setdefault(row.table, []).append(row.values)
        if not by_table:
            return
        try:
            connection = await self._connect()
            async with connection.transaction():
                for table, rows in by_table.items():
                    if table in PROFILE_TABLES:
                        rows = merge_profiles(rows)
                    await self._load_table(connection, table, rows)
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            # the schema changed under us (a table dropped by hand): read it afresh, retry
            self._columns.clear()
            raise RetryableSinkError(f"PostgreSQL schema changed: {exc}") from exc
        except (
            psycopg.errors.ProgramLimitExceeded,
            psycopg.errors.TooManyColumns,
            psycopg.errors.StatementTooComplex,
        ):
            # over 1,600 columns, a name or a row too long: some record's fault, not an outage
            self._columns.clear()
            raise
        except psycopg.OperationalError as exc:
            # connection lost, server restarting, deadlock or serialization failure: the
            # transaction was rolled back; retry it (the runner backs off)
            self._columns.clear()
            await self.stop()
            raise RetryableSinkError(f"PostgreSQL: {exc}") from exc
        except Exception:
            self._columns.clear()  # schema changes of the rolled-back transaction are gone
            raise

    async def _load_table(
        self, connection: psycopg.AsyncConnection[Any], table: str, rows: list[dict[str, Any]]
    ) -> None:
        known = self._columns.get(table)
        plan = plan_table(table, rows, known or {})
        if known is None or plan.changes_schema:
            plan = await self._change_schema(connection, table, rows)
        target = sql.Identifier(self._schema, table)
        columns = sorted({c for row in plan.rows for c in row})
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        await connection.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS)"
                " ON COMMIT DROP"
            ).format(sql.Identifier(f"_load_{table}"), target)
        )
        staging = sql.Identifier(f"_load_{table}")
        async with connection.cursor() as cursor:
            async with cursor.copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(staging, names)
            ) as copy:
                for row in plan.rows:
                    await copy.write_row([row.get(c) for c in columns])
            await cursor.execute(_insert(target, staging, table, columns))
            await cursor.execute(sql.SQL("TRUNCATE {}").format(staging))

    async def _change_schema(
        self, connection: psycopg.AsyncConnection[Any], table: str, rows: list[dict[str, Any]]
    ) -> TablePlan:
        """Under the table's advisory lock: create it if missing, read its columns afresh
        (another loader may have changed them), add and widen columns."""
        qualified = f"{self._schema}.{table}"
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [qualified])
        target = sql.Identifier(self._schema, table)
        base = base_columns(table)
        definitions = sql.SQL(", ").join(
            sql.SQL("{} {}{}").format(
                sql.Identifier(column),
                sql.SQL(kind),
                sql.SQL(" PRIMARY KEY" if column == "id" else ""),
            )
            for column, kind in base.items()
        )
        await connection.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ({}, uuid_ts timestamptz NOT NULL DEFAULT now())"
            ).format(target, definitions)
        )
        existing = await self._read_columns(connection, table)
        plan = plan_table(table, rows, existing)
        for column, kind in plan.add.items():
            log.info("%s: new column %s %s", qualified, column, kind)
            await connection.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    target, sql.Identifier(column), sql.SQL(kind)
                )
            )
        for column in plan.widen:
            log.warning("%s: column %s becomes text (a value did not fit)", qualified, column)
            await connection.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE text USING {}::text").format(
                    target, sql.Identifier(column), sql.Identifier(column)
                )
            )
        self._columns[table] = plan.columns
        return plan

    async def _read_columns(
        self, connection: psycopg.AsyncConnection[Any], table: str
    ) -> dict[str, ColumnType]:
        cursor = await connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s AND column_name <> 'uuid_ts'",
            [self._schema, table],
        )
        return {name: _TYPES.get(kind, "text") for name, kind in await cursor.fetchall()}

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is None or self._connection.closed:
            try:
                self._connection = await psycopg.AsyncConnection.connect(
                    self.config["dsn"], connect_timeout=int(self.config["connect_timeout"])
                )
            except psycopg.OperationalError as exc:
                raise RetryableSinkError(f"connecting to PostgreSQL: {exc}") from exc
            self._columns.clear()
        return self._connection


def _insert(
    target: sql.Identifier, staging: sql.Identifier, table: str, columns: list[str]
) -> sql.Composed:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    insert = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT (id) DO ").format(
        target, names, names, staging
    )
    if table not in PROFILE_TABLES or columns == ["id"]:
        return insert + sql.SQL("NOTHING")  # re-delivery adds nothing
    # one row per userId / groupId: the newer message's values win, nulls do not erase
    updates = sql.SQL(", ").join(
        sql.SQL("{} = COALESCE(EXCLUDED.{}, t.{})").format(
            sql.Identifier(c), sql.Identifier(c), sql.Identifier(c)
        )
        for c in columns
        if c != "id"
    )
    return insert + sql.SQL(
        "UPDATE SET {} WHERE t.received_at IS NULL OR EXCLUDED.received_at >= t.received_at"
    ).format(updates)
