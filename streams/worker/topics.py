"""Creating the topics of CONTRACT.md on start, before anything consumes or produces.

A broker that auto-creates topics (as the embedded one does, with its own partition count)
would otherwise create ``events.raw`` on the consumer's first metadata request."""

from __future__ import annotations

import logging
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from streams.settings import Settings
from streams.worker.clients import new_admin

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.topic_raw,
        settings.topic_warehouse,
        settings.topic_destinations,
        settings.topic_deadletter,
    ]


def kept_topic_names(settings: Settings) -> list[str]:
    """R39: regulations and their outcomes, one partition (one order), never expired."""
    return [settings.topic_regulations, settings.topic_regulation_status]


KEPT_TOPIC_CONFIG: Final = {"cleanup.policy": "compact"}
"""Compaction keeps the latest record of each key for ever: a regulation (keyed by its id)
and each outcome (``<id>/<who>``) stay, so the suppression list can be rebuilt from them."""


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create every missing topic with the configured partitions and replication (the kept
    ones with one partition, compacted); returns the number of partitions of each topic."""
    admin = new_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = topic_names(settings)
        missing = [name for name in names if name not in existing]
        kept = [name for name in kept_topic_names(settings) if name not in existing]
        if missing or kept:
            await _create(admin, settings, missing, kept)
        described = await admin.describe_topics(names)
        return {topic["topic"]: len(topic["partitions"]) for topic in described}
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient, settings: Settings, missing: list[str], kept: list[str]
) -> None:
    replication = settings.topic_replication
    response = await admin.create_topics(
        [NewTopic(name, settings.topic_partitions, replication) for name in missing]
        + [NewTopic(name, 1, replication, topic_configs=KEPT_TOPIC_CONFIG) for name in kept]
    )
    for name, code, *_ in response.topic_errors:
        # another worker may have created it a moment ago
        if code not in (0, TopicAlreadyExistsError.errno):
            raise for_code(code)(f"creating topic {name}")
    log.info("created topics %s", ", ".join(missing + kept))
