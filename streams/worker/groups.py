"""Consumer groups seen from outside: their members, their committed offsets, and committing
offsets for a group that is not running (a rewind, or the hand-over after a rebuild)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.settings import Settings
from streams.worker.clients import new_admin, new_consumer, topic_partitions


def member_consumer(settings: Settings, group_id: str, max_poll_records: int) -> AIOKafkaConsumer:
    """A consumer joining ``group_id`` the way every long-running member does (the worker,
    each sink): manual commits after finished batches, from the earliest offset, with the
    configured group timeouts (the embedded broker joins after half the rebalance timeout)."""
    return new_consumer(
        settings,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.session_timeout * 1000),
        rebalance_timeout_ms=int(settings.rebalance_timeout * 1000),
        heartbeat_interval_ms=int(min(3.0, settings.session_timeout / 3) * 1000),
        max_poll_interval_ms=max(300_000, int(settings.rebalance_timeout * 1000)),
    )


class GroupActiveError(RuntimeError):
    """The group has members: its offsets are theirs to commit."""


async def group_members(settings: Settings, group_id: str) -> list[str]:
    """The client ids of the group's current members (empty when nobody runs in it)."""
    admin = new_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    members: list[str] = []
    for response in described:
        for group in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members, ...)
            for member in group[5]:
                members.append(f"{member[1]}@{member[2]}")  # client id @ host
    return members


async def committed_offsets(
    settings: Settings, group_id: str, topics: Iterable[str] | None = None
) -> dict[TopicPartition, int]:
    """Every offset the group has committed (on ``topics``, default: every topic).

    Asked partition by partition through a consumer of the group (the admin client's
    OffsetFetch is not understood by every Kafka-compatible broker, the embedded one among
    them)."""
    consumer = new_consumer(settings, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            tp for tp in await topic_partitions(consumer, topics) if not tp.topic.startswith("__")
        ]
        found = await asyncio.gather(*(consumer.committed(tp) for tp in partitions))
    finally:
        await consumer.stop()
    return {
        tp: offset
        for tp, offset in zip(partitions, found, strict=True)
        if offset is not None and offset >= 0
    }


async def commit_offsets(
    settings: Settings, group_id: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """Commit ``offsets`` for ``group_id``, which must have no members
    (raises :class:`GroupActiveError` naming them)."""
    members = await group_members(settings, group_id)
    if members:
        raise GroupActiveError(
            f"consumer group {group_id!r} has {len(members)} active member(s) "
            f"({', '.join(members)}); stop them first"
        )
    consumer = new_consumer(settings, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(sorted(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()
