"""Creating the topics of CONTRACT.md on start, before anything consumes or produces.

A broker that auto-creates topics (as the embedded one does, with its own partition count)
would otherwise create ``events.raw`` on the consumer's first metadata request."""

from __future__ import annotations

import logging

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


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create every missing topic with the configured partitions and replication; returns the
    number of partitions of each topic."""
    admin = new_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            await _create(admin, settings, missing)
        described = await admin.describe_topics(topic_names(settings))
        return {topic["topic"]: len(topic["partitions"]) for topic in described}
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, settings: Settings, missing: list[str]) -> None:
    response = await admin.create_topics(
        [NewTopic(name, settings.topic_partitions, settings.topic_replication) for name in missing]
    )
    for name, code, *_ in response.topic_errors:
        # another worker may have created it a moment ago
        if code not in (0, TopicAlreadyExistsError.errno):
            raise for_code(code)(f"creating topic {name}")
    log.info("created topics %s", ", ".join(missing))
