"""Program (1), the limit: a plain aiokafka loop that consumes raw events, parses and
re-serialises them with orjson, produces each to two topics and awaits delivery before
committing. Run: python -m bench.plain BOOTSTRAP RAW OUT1 OUT2 GROUP"""

from __future__ import annotations

import asyncio
import signal
import sys

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            pending = []
            for messages in batches.values():
                for message in messages:
                    value = orjson.dumps(orjson.loads(message.value))
                    pending.append(await producer.send(out1, value, key=message.key))
                    pending.append(await producer.send(out2, value, key=message.key))
            if pending:
                await asyncio.gather(*pending)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(run(*sys.argv[1:6]))
