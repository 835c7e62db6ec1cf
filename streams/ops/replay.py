"""``enricher replay``: a range of the raw topic through the rules again.

- ``rebuild``: into a new app id (fresh state in Redis) and new output topics: a rules change
  or a blue/green cut-over. When every partition was replayed, the new app id's consumer group
  is committed at the range's end, so ``enricher worker`` with the new app id carries on
  from there.
- ``diff``: into scratch state (a throw-away app id, deleted afterwards) and in-memory
  outputs, then compared field by field with what the existing output topics hold, matched by
  messageId. Ids are deterministic (R32: derived from the source topic, partition and
  offset), so an unchanged replay of a range that starts where the state started has no
  differences; a rules change (IP policy, context traits) shows as the fields it changes.

Both run the worker's own :class:`~streams.worker.batch.BatchProcessor`, with the settings in force
(so ``ENRICHER_IP_POLICY_WAREHOUSE=mask enricher replay --mode diff`` previews a change).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from streams.ops.rebuild import rebuild
from streams.ops.replay_diff import diff
from streams.ops.replay_range import RangeSpec
from streams.settings import Settings
from streams.worker.batch import OutputTopics
from streams.worker.groups import GroupActiveError


def run_replay(settings: Settings, args: Any) -> int:
    """The command: prints the summary (or JSON); exit 1 when a diff found differences."""
    from streams.ops.offsets import parse_time

    try:
        spec = RangeSpec(
            topic=args.topic or settings.topic_raw,
            partitions=[int(p) for p in args.partitions.split(",")] if args.partitions else None,
            from_ms=parse_time(args.from_time) if args.from_time else None,
            to_ms=parse_time(args.to_time) if args.to_time else None,
            from_offset=args.from_offset,
            to_offset=args.to_offset,
        )
        if args.mode == "rebuild":
            if not args.app_id:
                raise ValueError("--mode rebuild needs --app-id NEW_APP_ID")
            outputs = OutputTopics(
                args.warehouse or f"{settings.topic_warehouse}.{args.app_id}",
                args.destinations or f"{settings.topic_destinations}.{args.app_id}",
                args.deadletter or f"{settings.topic_deadletter}.{args.app_id}",
            )
            result = asyncio.run(rebuild(settings, spec, args.app_id, outputs, args.resume))
        else:
            warm_from = args.warm_from
            result = asyncio.run(
                diff(
                    settings,
                    spec,
                    warm=warm_from is not None,
                    warm_from_ms=None if warm_from in (None, "start") else parse_time(warm_from),
                )
            )
    except (ValueError, LookupError, GroupActiveError) as exc:
        print(f"enricher replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(result.summary())
    return 1 if result.mode == "diff" and result.differences else 0
