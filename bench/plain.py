"""Program (1), the limit: a plain aiokafka loop that consumes raw events, parses and
re-serialises them with orjson, produces each to two topics and awaits delivery before
committing. It writes record batches per partition (one ``send`` per record is about five
times slower on this broker). Run: python -m bench.plain BOOTSTRAP RAW OUT1 OUT2 GROUP"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2


async def run(bootstrap: str, raw: str, out1: str, out2: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        raw,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=10_000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1 << 20, max_request_size=4 << 20
    )
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    partitions = {topic: len(await producer.partitions_for(topic)) for topic in (out1, out2)}
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
            for messages in fetched.values():
                for message in messages:
                    value = orjson.dumps(orjson.loads(message.value))
                    for topic in (out1, out2):
                        partition = (murmur2(message.key) & 0x7FFFFFFF) % partitions[topic]
                        groups.setdefault((topic, partition), []).append((message.key, value))
            pending: list[Any] = []
            for (topic, partition), records in groups.items():
                batch = producer.create_batch()
                for key, value in records:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        pending.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            if pending:
                await asyncio.gather(*pending)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(run(*sys.argv[1:6]))
