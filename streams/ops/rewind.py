"""``enricher sink rewind NAME --to TIME``: re-deliver to one sink from a point in time.

A sink NAME consumes as the consumer group ``<ENRICHER_APP_ID>.sink.<NAME>``. Rewinding sets
that group's committed offsets to the first record at or after TIME on each partition of the
topic(s) it consumes (those it has committed offsets on, or ``--topic``), found from record
timestamps (:mod:`streams.ops.offsets`). Offsets belong to a group's members while it runs, so
the sink must be stopped first: the command refuses while the group has members. The sink
then re-delivers everything from TIME when it starts again.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from streams.ops.offsets import offsets_for_time, parse_time, probe_consumer, topic_partitions
from streams.settings import Settings
from streams.worker.groups import GroupActiveError, commit_offsets, committed_offsets, group_members


def sink_group(settings: Settings, name: str) -> str:
    return f"{settings.app_id}.sink.{name}"


@dataclass(frozen=True)
class Rewound:
    group: str
    before: dict[TopicPartition, int]
    after: dict[TopicPartition, int]

    def summary(self) -> str:
        lines = [f"consumer group {self.group} rewound:"]
        for tp, offset in sorted(self.after.items()):
            was = self.before.get(tp)
            lines.append(f"  {tp.topic}/{tp.partition}: {'-' if was is None else was} -> {offset}")
        return "\n".join(lines)


async def rewind_sink(
    settings: Settings, name: str, to_ms: int, topic: str | None = None
) -> Rewound:
    group = sink_group(settings, name)
    members = await group_members(settings, group)
    if members:
        raise GroupActiveError(
            f"sink {name!r} is running (group {group} has {len(members)} member(s): "
            f"{', '.join(members)}); stop it, rewind, then start it again"
        )
    before = await committed_offsets(settings, group)
    topics = [topic] if topic else sorted({tp.topic for tp in before})
    if not topics:
        raise LookupError(
            f"group {group} has committed no offsets: name the topic it reads with --topic"
        )
    after: dict[TopicPartition, int] = {}
    async with probe_consumer(settings) as consumer:
        for name_of_topic in topics:
            partitions = await topic_partitions(consumer, name_of_topic)
            after.update(await offsets_for_time(consumer, partitions, to_ms))
    await commit_offsets(settings, group, after)
    return Rewound(group, before, after)


def run_rewind(settings: Settings, args: Any) -> int:
    try:
        rewound = asyncio.run(
            rewind_sink(settings, args.name, parse_time(args.to_time), args.topic)
        )
    except (ValueError, LookupError, GroupActiveError) as exc:
        print(f"enricher sink rewind: {exc}", file=sys.stderr)
        return 2
    print(rewound.summary())
    return 0
