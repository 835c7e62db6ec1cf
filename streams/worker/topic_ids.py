"""Kafka's topic ids: what tells a topic from one deleted and created again under its name.

The fence of SPEC R34 remembers, per device, the last offset applied from each source
partition. Keyed by the topic's name alone, a raw topic deleted and recreated would have its
new records (offsets from 0 again) taken as already applied: silent loss. Keyed by the topic's
id (Kafka 2.8+, KIP-516), the recreated topic is a new source.

aiokafka speaks Metadata only up to version 5, which has no topic ids, so this module asks
with version 10 itself, through aiokafka's own protocol types. A broker that does not answer
it (or answers with the null id) gets no id: its fence stays keyed by name, as before."""

from __future__ import annotations

import logging
import uuid
from io import BytesIO
from typing import Any, ClassVar

from aiokafka import AIOKafkaClient
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    UnsupportedVersionError,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    AbstractType,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

log = logging.getLogger(__name__)

_NULL_ID = bytes(16)


class _Uuid(AbstractType[bytes]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        return data.read(16)


class _MetadataResponseV10(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class _MetadataRequestV10(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponseV10
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid),
                ("name", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _TopicIdsRequest(Request[_MetadataRequestV10]):  # type: ignore[misc]
    API_KEY = 3
    _CLASSES: ClassVar[Any] = (_MetadataRequestV10,)

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequestV10]) -> _MetadataRequestV10:
        return request_struct_class(
            [(_NULL_ID, name, {}) for name in self._topics], False, False, False, {}
        )


async def topic_ids(client: AIOKafkaClient, topics: list[str]) -> dict[str, str]:
    """The id of each existing topic (lowercase UUID text); topics the broker gives no id
    (it does not know them, or it predates topic ids) are left out."""
    if not topics:
        return {}
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker is reachable to ask for topic ids")
    try:
        response = await client.send(node, _TopicIdsRequest(sorted(set(topics))))
    except (IncompatibleBrokerVersion, UnsupportedVersionError, NotImplementedError) as exc:
        # a broker without Metadata v10; an outage is raised, for the caller to wait out
        log.info("the broker gives no topic ids (%r): fences keyed by topic name", exc)
        return {}
    found: dict[str, str] = {}
    for error_code, name, topic_id, *_ in response.topics:
        if error_code == 0 and topic_id and topic_id != _NULL_ID:
            found[name] = str(uuid.UUID(bytes=topic_id))
    return found
