"""``enricher replay --mode rebuild``: a range of the raw topic into a new app id (fresh state
in Redis) and new output topics: a rules change or a blue/green cut-over. When every partition
was replayed, the new app id's consumer group is committed at the range's end, so ``enricher
worker`` with the new app id carries on from there."""

from __future__ import annotations

from streams.ops.offsets import (
    probe_consumer,
    topic_partitions,
)
from streams.ops.replay_range import (
    RangeSpec,
    ReplayResult,
    keys_exist,
    replay_range,
    resolve_ranges,
)
from streams.settings import Settings
from streams.state.redis_client import connect_to
from streams.state.store import StateStore
from streams.worker.batch import BatchProcessor, OutputTopics
from streams.worker.groups import commit_offsets
from streams.worker.topics import ensure_topics
from streams.worker.writer import BatchWriter


async def rebuild(
    settings: Settings,
    spec: RangeSpec,
    app_id: str,
    outputs: OutputTopics,
    resume: bool = False,
) -> ReplayResult:
    """``resume``: carry on an interrupted rebuild into the same app id. Safe: state is saved
    after the outputs were acknowledged and fenced by source offsets (R34), so the records
    already applied are skipped and the rest produce what they would have."""
    if app_id == settings.app_id:
        raise ValueError("a rebuild needs a new app id (--app-id), not the running one")
    target = settings.with_overrides(
        app_id=app_id,
        topic_warehouse=outputs.warehouse,
        topic_destinations=outputs.destinations,
        topic_deadletter=outputs.deadletter,
    )
    client = connect_to(settings)
    try:
        if not resume and await keys_exist(client, app_id):
            raise ValueError(
                f"app id {app_id!r} already has state in Redis: a rebuild starts from scratch "
                "(--resume carries on an interrupted rebuild into it)"
            )
        writer = BatchWriter(target)
        writer.partitions = await ensure_topics(target)
        await writer.start()
        try:
            store = StateStore(
                client,
                target.keys,
                settings.policy.device_ttl_ms,
                settings.profile_max_ids,
            )
            await store.prepare_layout()  # records the layout the worker checks
            processor = BatchProcessor.from_settings(
                settings, store, writer, outputs, writer.topic_ids
            )
            async with probe_consumer(settings) as consumer:
                ranges = await resolve_ranges(consumer, spec)
                result = ReplayResult("rebuild", ranges, app_id=app_id, outputs=outputs)
                await replay_range(consumer, processor, ranges, settings.batch_max, result, False)
                every = len(ranges) == len(await topic_partitions(consumer, spec.topic))
        finally:
            await writer.stop()
        result.dead_letters = processor.counters.dead_letters
        if every:
            await commit_offsets(settings, app_id, {tp: end for tp, (_, end) in ranges.items()})
            result.committed = True
        return result
    finally:
        await client.aclose()
