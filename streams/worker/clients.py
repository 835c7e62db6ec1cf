"""The one place Kafka clients are built: every process (worker, collector, sinks, operator
commands, the bench) asks here, so a connection setting reaches all of them.

Producers write at most ``ENRICHER_MAX_RECORD_BYTES`` per record batch (the broker's
``message.max.bytes``) and compress with ``ENRICHER_OUTPUT_COMPRESSION``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.settings import Settings

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A produce request carries several record batches, each within the record limit."""


def connection_options(settings: Settings) -> dict[str, Any]:
    """What every client needs to reach the broker."""
    return {"bootstrap_servers": settings.bootstrap_servers}


def new_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """A producer acknowledged by every in-sync replica (``acks=all``) unless told otherwise."""
    compression = settings.output_compression
    return AIOKafkaProducer(
        **connection_options(settings),
        **{
            "acks": "all",
            "compression_type": None if compression == "none" else compression,
            "max_batch_size": min(settings.max_record_bytes, 1024 * 1024),
            "max_request_size": max(MAX_REQUEST_BYTES, settings.max_record_bytes),
            **options,
        },
    )


def new_consumer(settings: Settings, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**connection_options(settings), **options)


def new_admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(settings))


async def topic_partitions(
    consumer: AIOKafkaConsumer, topics: Iterable[str] | None = None
) -> list[TopicPartition]:
    """Every partition of the existing topics named (default: of every topic), from a fresh
    metadata request; never creates a topic. A consumer's own metadata only follows the topics
    it subscribed to or was assigned: Apache Kafka answers for those alone (Tansu says more)."""
    cluster = await consumer._client.fetch_all_metadata()
    existing = cluster.topics()
    names = sorted(existing) if topics is None else [t for t in topics if t in existing]
    return [
        TopicPartition(topic, partition)
        for topic in names
        for partition in sorted(cluster.partitions_for_topic(topic) or [])
    ]
