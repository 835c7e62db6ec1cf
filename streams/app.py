"""The Faust app: topics, the batch agent, and the wiring of settings to the core.

``enricher worker`` runs it; so does ``faust -A streams.app worker`` (the app is then built
from the environment).
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any, cast

import faust
import redis.asyncio as aioredis

from streams.batch import BatchProcessor, OutputTopics
from streams.keys import KeySpace
from streams.lookups import Lookups
from streams.records import InRecord
from streams.settings import Settings
from streams.store import StateStore
from streams.topics import ensure_topics
from streams.transport import EnricherTransport
from streams.web import add_lookup_views, add_stats_view
from streams.writer import BatchWriter

log = logging.getLogger(__name__)

STATS_INTERVAL_SECONDS = 30.0


def _in_record(message: Any) -> InRecord:
    return InRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int(message.timestamp * 1000),
    )


class EnricherApp(faust.App):
    """The Faust app, creating the CONTRACT topics before its consumer starts."""

    enricher_settings: Settings
    enricher: BatchProcessor
    enricher_writer: BatchWriter

    def _new_transport(self) -> EnricherTransport:
        return EnricherTransport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        self.enricher_writer.partitions = await ensure_topics(self.enricher_settings)
        await self.enricher_writer.start()
        await super().on_first_start()

    async def on_stop(self) -> None:
        log.info("stopping: %s", self.enricher.counters.summary())
        await super().on_stop()  # waits for the batch in flight, then commits
        await self.enricher_writer.stop()


def create_app(settings: Settings) -> EnricherApp:
    app = EnricherApp(
        settings.app_id,
        broker=settings.broker,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        broker_commit_interval=settings.commit_interval,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        store="memory://",
        web_port=settings.web_port,
        web_host="127.0.0.1",
        datadir=settings.data_dir or tempfile.mkdtemp(prefix=f"{settings.app_id}-"),
    )

    app.enricher_settings = settings
    app.conf.enricher_fetch_max_wait_ms = settings.fetch_max_wait_ms

    def declare(name: str) -> faust.TopicT:
        return app.topic(
            name,
            partitions=settings.topic_partitions,
            replicas=settings.topic_replication,
            key_serializer="raw",
            value_serializer="raw",
        )

    raw_topic = declare(settings.topic_raw)
    topics = OutputTopics(
        settings.topic_warehouse, settings.topic_destinations, settings.topic_deadletter
    )
    redis_client = aioredis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    store = StateStore(redis_client, KeySpace(settings.app_id), settings.policy.device_ttl_ms)
    app.enricher_writer = BatchWriter(settings.bootstrap_servers)
    processor = BatchProcessor(
        store, app.enricher_writer, topics, settings.policy, settings.batch_max_bytes
    )
    app.enricher = processor
    add_stats_view(app, processor.counters)
    add_lookup_views(
        app, Lookups(redis_client, KeySpace(settings.app_id), settings.policy.device_ttl_ms)
    )

    @app.agent(raw_topic, name="enrich", concurrency=1)
    async def enrich(stream: faust.StreamT[Any]) -> None:
        # noack_take: the batch is acked (and its offsets committed) only once it is done
        batches = cast(faust.Stream[Any], stream).noack_take(
            settings.batch_max, within=settings.batch_within
        )
        async for events in batches:
            try:
                await processor.process([_in_record(event.message) for event in events])
            except Exception as exc:
                # not an outage (those are waited out) but a bug or a misconfiguration:
                # stop the worker without acking, so the batch is redone after the fix
                log.critical("batch failed; stopping the worker: %r", exc, exc_info=True)
                await app.crash(exc)
                return
            for event in events:  # only now may the offsets be committed
                await stream.ack(event)

    @app.timer(STATS_INTERVAL_SECONDS)  # type: ignore[untyped-decorator]
    async def report_stats() -> None:
        log.info("%s", processor.counters.summary())

    return app


app: EnricherApp


def __getattr__(name: str) -> Any:
    """``faust -A streams.app worker``: build the app from the environment on first use."""
    if name == "app":
        global app
        app = create_app(Settings.load())
        return app
    raise AttributeError(name)
