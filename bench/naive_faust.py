"""Program (2): a naive Faust agent doing the same work the obvious way: one Redis read and
one write per event, one ``topic.send`` per output. Run: faust -A bench.naive_faust worker,
configured by BENCH_BROKER, BENCH_REDIS, BENCH_RAW, BENCH_OUT1, BENCH_OUT2, BENCH_GROUP."""

from __future__ import annotations

import os
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis

env = os.environ
app = faust.App(
    env.get("BENCH_GROUP", "naive"),
    broker=env.get("BENCH_BROKER", "kafka://127.0.0.1:9092"),
    key_serializer="raw",
    value_serializer="raw",
    broker_session_timeout=3,
    broker_rebalance_timeout=6,
    broker_heartbeat_interval=1,
    consumer_auto_offset_reset="earliest",
    store="memory://",
    web_enabled=False,
    datadir=env.get("BENCH_DATADIR", "/tmp/naive-faust"),
)
raw = app.topic(env.get("BENCH_RAW", "raw"), key_serializer="raw", value_serializer="raw")
out1 = app.topic(env.get("BENCH_OUT1", "out1"), key_serializer="raw", value_serializer="raw")
out2 = app.topic(env.get("BENCH_OUT2", "out2"), key_serializer="raw", value_serializer="raw")
redis_client = aioredis.from_url(env.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))


@app.agent(raw)
async def enrich(stream: Any) -> None:
    async for event in stream.events():
        message = orjson.loads(event.value)
        key = event.key or b"none"
        state = await redis_client.get(b"naive:" + key)
        message["anonymousId"] = state.decode() if isinstance(state, bytes) else key.decode()
        await redis_client.set(b"naive:" + key, message["anonymousId"])
        value = orjson.dumps(message)
        await out1.send(key=event.key, value=value)
        await out2.send(key=event.key, value=value)
