"""Dispatch of the operator's commands (replay, import, deadletter, sink rewind)."""

from __future__ import annotations

from typing import Any

from streams.settings import Settings


def run_operation(settings: Settings, args: Any) -> int:
    if args.command == "replay":
        from streams.ops.replay import run_replay

        return run_replay(settings, args)
    if args.command == "import":
        from streams.ops.importer import run_import

        return run_import(settings, args)
    if args.command == "deadletter":
        from streams.ops.recovery import run_deadletter

        return run_deadletter(settings, args)
    if args.command == "sink" and args.sink_command == "rewind":
        from streams.ops.rewind import run_rewind

        return run_rewind(settings, args)
    raise AssertionError(args.command)
