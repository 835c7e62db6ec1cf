"""Partition ends and time offsets: from the broker's answers on Apache Kafka, found from the
records on a broker that answers wrongly (Tansu: its watermarks and offsets_for_times cannot be
trusted). Every test runs on both brokers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.dev.stack import StackEndpoints
from streams.ops.offsets import (
    broker_answers,
    log_end,
    log_ends,
    offset_for_time,
    offsets_for_time,
    probe_consumer,
    read_ranges,
)
from tests.pipeline import broker_settings

pytestmark = pytest.mark.tansu_smoke


async def _topic_with_records(stack: StackEndpoints, counts: list[int]) -> str:
    topic = f"offsets.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, len(counts), 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=50)
    await producer.start()
    try:
        # record batches of many records each, timestamps 1 s apart from t=1000 s
        pending = [
            await producer.send(topic, b"v", partition=p, timestamp_ms=1_000_000 + i * 1000)
            for p, count in enumerate(counts)
            for i in range(count)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return topic


def test_log_ends_count_records_whatever_the_watermark(stack: StackEndpoints) -> None:
    async def check() -> None:
        topic = await _topic_with_records(stack, [300, 0, 17])
        async with probe_consumer(broker_settings(stack)) as consumer:
            tps = [TopicPartition(topic, p) for p in range(3)]
            assert await log_ends(consumer, tps) == dict(zip(tps, [300, 0, 17], strict=True))
            assert await log_end(consumer, tps[0]) == 300
            assert await log_end(consumer, tps[1]) == 0

    asyncio.run(check())


def test_offset_for_time_is_the_first_record_at_or_after_it(stack: StackEndpoints) -> None:
    async def check() -> None:
        topic = await _topic_with_records(stack, [300, 17])
        async with probe_consumer(broker_settings(stack)) as consumer:
            tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
            assert await offset_for_time(consumer, tp0, 1_000_000 + 123_000) == 123
            assert await offset_for_time(consumer, tp0, 1_000_000 + 122_500) == 123
            assert await offset_for_time(consumer, tp0, 0) == 0
            assert await offset_for_time(consumer, tp0, 9_999_999_999) == 300  # all older
            found = await offsets_for_time(consumer, [tp0, tp1], 1_000_000 + 20_000)
            assert found == {tp0: 20, tp1: 17}
            records = [
                m.offset
                async for batch in read_ranges(consumer, {tp0: (290, 300), tp1: (5, 5)})
                for _, messages in batch
                for m in messages
            ]
            assert records == list(range(290, 300))

    asyncio.run(check())


def test_the_broker_is_probed_and_its_answers_used_where_they_are_right(
    stack: StackEndpoints,
) -> None:
    async def check() -> None:
        topic = await _topic_with_records(stack, [40])
        async with probe_consumer(broker_settings(stack)) as consumer:
            tp = TopicPartition(topic, 0)
            answers = await broker_answers(consumer, tp)
            assert await log_end(consumer, tp) == 40  # whichever path the verdict chose
        if stack.broker == "tansu":  # offset 0 and timestamp -1 for every time
            assert not answers.by_time
        else:
            assert answers.by_time and answers.watermarks

    asyncio.run(check())
