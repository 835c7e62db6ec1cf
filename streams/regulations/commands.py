"""``enricher regulate``: request a regulation, show its state (R39).

enricher regulate delete-and-suppress --user-id u1 --user-id u2
enricher regulate suppress --file ids.jsonl        # {"userId": ...} per line
enricher regulate status ID
enricher regulate list
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from enrichers.regulations import TYPES, IdKind, InvalidRegulation, RegulationIds
from streams.regulations.log import RegulationBook, RegulationWriter, new_regulations, read_book
from streams.settings import Settings
from streams.worker.topics import ensure_topics


def add_regulate_parser(commands: Any) -> None:
    regulate = commands.add_parser(
        "regulate", help="R39: suppress or delete a user, anonymousId or device; their state"
    )
    actions = regulate.add_subparsers(dest="regulate_command", required=True, metavar="ACTION")
    for kind in TYPES:
        action = actions.add_parser(kind, help=f"request a {kind} regulation; prints its id")
        action.add_argument("--user-id", action="append", default=[], metavar="ID")
        action.add_argument("--anonymous-id", action="append", default=[], metavar="ID")
        action.add_argument("--device", action="append", default=[], metavar="KEY")
        action.add_argument(
            "--file",
            help='JSON Lines of {"userId": ...}, {"anonymousId": ...} or {"device": ...}; '
            "- for standard input",
        )
    status = actions.add_parser("status", help="one regulation's state, as JSON")
    status.add_argument("id")
    actions.add_parser("list", help="every regulation's state, one JSON line each")


async def _read(settings: Settings) -> RegulationBook:
    await ensure_topics(settings)  # a broker that auto-creates would give other settings
    return await read_book(settings)


def run_regulate(settings: Settings, args: argparse.Namespace) -> int:
    if args.regulate_command == "status":
        book = asyncio.run(_read(settings))
        found = book.statuses.get(args.id)
        if found is None:
            print(f"enricher: no regulation {args.id}", file=sys.stderr)
            return 1
        print(orjson.dumps(found.as_json(), option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.regulate_command == "list":
        book = asyncio.run(_read(settings))
        for found in book.statuses.values():
            print(orjson.dumps(found.as_json()).decode())
        return 0
    placeholders = settings.policy.placeholders
    ids = RegulationIds()
    try:
        named: list[tuple[IdKind, list[str]]] = [
            ("userId", args.user_id),
            ("anonymousId", args.anonymous_id),
            ("device", args.device),
        ]
        for kind, values in named:
            for value in values:
                ids.add(kind, value, placeholders)
        if args.file:
            _read_file(args.file, ids, placeholders)
        regulations = new_regulations(args.regulate_command, ids)
    except (InvalidRegulation, OSError) as exc:
        print(f"enricher: {exc}", file=sys.stderr)
        return 2

    async def publish() -> None:
        await ensure_topics(settings)
        writer = RegulationWriter(settings)
        await writer.start()
        try:
            await writer.publish(regulations)
        finally:
            await writer.stop()

    asyncio.run(publish())
    for regulation in regulations:
        print(regulation.id)
    return 0


def _read_file(name: str, ids: RegulationIds, placeholders: Any) -> None:
    def read(lines: TextIO) -> None:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                ids.add_line(orjson.loads(line), placeholders)
            except orjson.JSONDecodeError:
                raise InvalidRegulation(f"line {number}: not JSON") from None
            except InvalidRegulation as exc:
                raise InvalidRegulation(f"line {number}: {exc}") from None

    if name == "-":
        read(sys.stdin)
        return
    with Path(name).open(encoding="utf-8") as lines:
        read(lines)
