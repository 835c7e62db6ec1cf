"""The ``enricher`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from streams.settings import (
    CONFIG_FILE_VARIABLE,
    SECRET_FIELDS,
    Settings,
    SettingsError,
    broker_configured,
    settings_table,
)


def _settings_help() -> str:
    rows = settings_table()
    width = max(len(name) for name, _, _ in rows)
    lines = [
        "settings (environment variables; the same names may be set in a TOML config file",
        f"given by --config or {CONFIG_FILE_VARIABLE}; the environment wins):",
    ]
    for name, default, meaning in rows:
        lines.append(f"  {name:<{width}}  {meaning} [default: {default}]")
    lines.append(
        "destination sinks read ENRICHER_SINK_<NAME>_<OPTION> (and ENRICHER_SINK_METRICS_PORT);"
    )
    lines.append("`enricher sink list -v` shows each installed sink's settings.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enricher",
        description="Server-side Segment identity enrichment: events.raw in, "
        "events.warehouse / events.destinations / events.deadletter out.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="a TOML file of settings")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker = commands.add_parser("worker", help="run one stream worker (a Faust worker)")
    worker.add_argument("--loglevel", default="info", help="debug, info, warning or error")
    demo = commands.add_parser(
        "demo", help="start the embedded stack and a worker, feed the bundled sample, show it"
    )
    demo.add_argument("--once", action="store_true", help="exit after the sample is processed")
    lookup = commands.add_parser(
        "lookup", help="print what the enricher knows of a device, user or group, as JSON"
    )
    lookup.add_argument("kind", choices=["device", "user", "group"])
    lookup.add_argument("id", help="the device key, userId or groupId")
    commands.add_parser("settings", help="print the effective settings and exit")
    commands.add_parser(
        "console",
        help="serve the live console: recent events raw and enriched, side by side "
        "(ENRICHER_CONSOLE_PORT; needs ENRICHER_LOOKUP_TOKENS)",
    )
    collector = commands.add_parser(
        "collector", help="serve Segment's Tracking API over HTTP, writing events.raw"
    )
    collector.add_argument("--loglevel", default="info", help="debug, info, warning or error")
    sink = commands.add_parser("sink", help="destination sinks: run, list, rewind")
    sink_commands = sink.add_subparsers(dest="sink_command", required=True, metavar="SUBCOMMAND")
    sink_run = sink_commands.add_parser(
        "run", help="run one sink as its own consumer group (until SIGTERM or Ctrl-C)"
    )
    sink_run.add_argument("name", help="the sink's name, as `enricher sink list` shows it")
    sink_list = sink_commands.add_parser("list", help="the installed sinks (built-in and plug-in)")
    sink_list.add_argument("-v", "--verbose", action="store_true", help="show their settings")
    sink_commands.add_parser("settings", help="every sink setting name, one a line")
    add_sink_rewind_parser(sink_commands)
    _add_operations_commands(commands)
    from streams.regulations.commands import add_regulate_parser

    add_regulate_parser(commands)
    return parser


def _add_range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_time", metavar="TIME", help=_TIME_HELP)
    parser.add_argument(
        "--to", dest="to_time", metavar="TIME", help="end (exclusive); " + _TIME_HELP
    )
    parser.add_argument(
        "--from-offset", type=int, metavar="N", help="first offset (each partition)"
    )
    parser.add_argument("--to-offset", type=int, metavar="N", help="end offset, exclusive")
    parser.add_argument("--partitions", metavar="P,P", help="only these partitions")


_TIME_HELP = "ISO 8601 (2026-11-29T01:00:00Z), epoch ms, or ago (30m, 2h, 7d)"


def _add_operations_commands(commands: Any) -> None:
    """Replay, import, dead-letter recovery and sink rewind (issue 8)."""
    replay = commands.add_parser(
        "replay", help="re-run a range of the raw topic through the rules (rebuild or diff)"
    )
    replay.add_argument("--mode", choices=["rebuild", "diff"], required=True)
    replay.add_argument("--topic", help="the raw topic (default: ENRICHER_TOPIC_RAW)")
    _add_range_arguments(replay)
    replay.add_argument(
        "--warm-from",
        metavar="TIME|start",
        help="diff: first build the scratch state from TIME (or the log start) up to the "
        "range, outputs discarded, so a range in mid-history compares like for like",
    )
    replay.add_argument("--app-id", help="rebuild: the new app id (fresh state, new group)")
    replay.add_argument("--warehouse", help="rebuild: output topic (default: <warehouse>.<app id>)")
    replay.add_argument("--destinations", help="rebuild: output topic (default: ...<app id>)")
    replay.add_argument("--deadletter", help="rebuild: dead-letter topic (default: ...<app id>)")
    replay.add_argument(
        "--resume", action="store_true", help="rebuild: carry on an interrupted rebuild"
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")

    load = commands.add_parser(
        "import", help="produce a JSON Lines file (gzip accepted) of events into the raw topic"
    )
    load.add_argument("file", help="a .jsonl or .jsonl.gz file; - for standard input")
    load.add_argument("--topic", help="the target topic (default: ENRICHER_TOPIC_RAW)")

    deadletter = commands.add_parser("deadletter", help="inspect and requeue dead letters")
    actions = deadletter.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("list", "count the dead letters by code"),
        ("show", "print dead-letter records as JSON Lines"),
        ("requeue", "put dead letters' payloads back into the raw topic"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--topic", help="the dead-letter topic (default: ENRICHER_TOPIC_DEADLETTER)"
        )
        action.add_argument("--code", action="append", help="only this error code (repeatable)")
        action.add_argument("--from", dest="from_time", metavar="TIME", help=_TIME_HELP)
        action.add_argument("--to", dest="to_time", metavar="TIME", help=_TIME_HELP)
        if name == "show":
            action.add_argument("--limit", type=int, default=10, help="at most N records")
        if name == "requeue":
            action.add_argument(
                "--file", help="requeue these (edited) dead-letter records, JSON Lines, instead"
            )
            action.add_argument("--dry-run", action="store_true", help="count, produce nothing")


def add_sink_rewind_parser(sink_actions: Any) -> None:
    """``enricher sink rewind``: a subcommand of ``enricher sink``, next to run, list, settings."""
    rewind = sink_actions.add_parser(
        "rewind", help="re-deliver to one (stopped) sink from a point in time"
    )
    rewind.add_argument("name", help="the sink name (its group is <app id>.sink.<name>)")
    rewind.add_argument("--to", dest="to_time", metavar="TIME", required=True, help=_TIME_HELP)
    rewind.add_argument("--topic", help="the topic to rewind (default: those the group committed)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(config_file=args.config)
    except SettingsError as exc:
        print(f"enricher: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "worker":  # it checks its access to the broker as it starts
        from streams.worker.run import run_worker

        run_worker(settings, args.loglevel)
        return 0
    if _uses_the_broker(args) and not _broker_lets_us_in(settings):
        return 3
    if args.command == "demo":
        from streams.dev.demo import run_demo

        return run_demo(
            settings, once=args.once, embedded_broker=not broker_configured(args.config)
        )
    if args.command == "lookup":
        from streams.state.lookups import run_lookup

        return run_lookup(settings, args.kind, args.id)
    if args.command in ("replay", "import", "deadletter") or (
        args.command == "sink" and args.sink_command == "rewind"
    ):
        from streams.ops.operations import run_operation

        return run_operation(settings, args)
    if args.command == "collector":
        from streams.collector import run_collector

        return run_collector(settings, args.loglevel)
    if args.command == "sink":
        return _run_sink_command(args, settings)
    if args.command == "console":
        from streams.console.server import run_console

        return run_console(settings)
    if args.command == "regulate":
        from streams.regulations.commands import run_regulate

        return run_regulate(settings, args)
    if args.command == "settings":
        for name, value in vars(settings).items():
            print(f"{name} = {_shown(name, value)}")
        return 0
    raise AssertionError(args.command)


def _uses_the_broker(args: argparse.Namespace) -> bool:
    if args.command in ("collector", "replay", "import", "deadletter", "regulate", "console"):
        return True
    return args.command == "sink" and args.sink_command in ("run", "rewind")


def _broker_lets_us_in(settings: Settings) -> bool:
    """Stop at once, with the setting to fix, when the broker refuses our credentials or
    certificate (an outage is not that: it is waited out)."""
    import asyncio

    from streams.worker.clients import BrokerAccessDenied, check_broker_access

    try:
        asyncio.run(check_broker_access(settings))
    except BrokerAccessDenied as exc:
        print(f"enricher: cannot authenticate to the broker: {exc}", file=sys.stderr)
        return False
    return True


def _shown(name: str, value: object) -> str:
    """A setting's value as ``enricher settings`` prints it: secrets masked."""
    if name in SECRET_FIELDS:
        return "***" if value else "(not set)"
    return str(value)


def _run_sink_command(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from streams.sinks.commands import run_sink_list, run_sink_settings
    from streams.sinks.runner import run_sink

    if args.sink_command == "run":
        config_file = args.config or os.environ.get(CONFIG_FILE_VARIABLE)
        return run_sink(settings, args.name, config_file, os.environ)
    if args.sink_command == "list":
        return run_sink_list(settings, args.verbose)
    if args.sink_command == "settings":
        return run_sink_settings()
    raise AssertionError(args.sink_command)


if __name__ == "__main__":
    sys.exit(main())
