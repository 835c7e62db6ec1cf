"""The one place Kafka clients are built: every process (worker, collector, sinks, operator
commands, the bench) asks here, so a connection setting reaches all of them.

Producers write at most ``ENRICHER_MAX_RECORD_BYTES`` per record batch (the broker's
``message.max.bytes``) and compress with ``ENRICHER_OUTPUT_COMPRESSION``."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT as Credentials

from streams.settings import Settings
from streams.worker.partitioning import KeyPartitioner

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A produce request carries several record batches, each within the record limit."""


def connection_options(settings: Settings) -> dict[str, Any]:
    """What every client needs to reach the broker: its address and, where the broker asks
    for them, TLS and SASL (``ENRICHER_BROKER_*``)."""
    protocol = settings.broker_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = tls_context(settings)
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.broker_sasl_mechanism
        options["sasl_plain_username"] = settings.broker_sasl_username
        options["sasl_plain_password"] = str(settings.broker_sasl_password)
    return options


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS of every broker connection: the CA to trust (default: the system's), the host
    name checked unless told otherwise, this client's certificate for mutual TLS."""
    context = ssl.create_default_context(cafile=settings.broker_ssl_cafile or None)
    context.check_hostname = settings.broker_ssl_check_hostname
    if settings.broker_ssl_certfile:
        context.load_cert_chain(settings.broker_ssl_certfile, settings.broker_ssl_keyfile)
    return context


def faust_credentials(settings: Settings) -> Credentials | None:
    """The same connection settings for Faust's own consumer and producer."""
    protocol = settings.broker_security_protocol
    if protocol == "SSL":
        return SSLCredentials(tls_context(settings))
    if protocol.startswith("SASL"):
        return SASLCredentials(
            username=settings.broker_sasl_username,
            password=str(settings.broker_sasl_password),
            mechanism=settings.broker_sasl_mechanism,
            ssl_context=tls_context(settings) if protocol == "SASL_SSL" else None,
        )
    return None


def new_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """A producer acknowledged by every in-sync replica (``acks=all``) unless told otherwise,
    partitioning keyed records as Kafka's default partitioner does."""
    compression = settings.output_compression
    return AIOKafkaProducer(
        **connection_options(settings),
        **{
            "acks": "all",
            "compression_type": None if compression == "none" else compression,
            "max_batch_size": min(settings.max_record_bytes, 1024 * 1024),
            "max_request_size": max(MAX_REQUEST_BYTES, settings.max_record_bytes),
            "partitioner": KeyPartitioner(),
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


class BrokerAccessDenied(RuntimeError):
    """The broker refused this process's credentials or certificate: a configuration error
    to stop on, not an outage to wait out."""


async def check_broker_access(settings: Settings, timeout: float = 10.0) -> None:
    """Connect to a bootstrap broker once, authenticating as every client will. Raises
    :class:`BrokerAccessDenied` naming the setting to fix when the broker refuses the SASL
    credentials or the TLS handshake fails; returns quietly when a broker accepts, or when
    none answers (an outage, which the clients wait out)."""
    options = connection_options(settings)
    options.pop("bootstrap_servers")
    for address in settings.bootstrap_servers.split(","):
        host, _, port = address.rpartition(":")
        try:
            connection = await asyncio.wait_for(
                create_conn(host, int(port), client_id="enricher-access-check", **options),
                timeout,
            )
        except SaslAuthenticationFailed as exc:
            raise BrokerAccessDenied(
                f"the broker at {address} refused the credentials of "
                f"ENRICHER_BROKER_SASL_USERNAME={settings.broker_sasl_username!r} "
                f"({settings.broker_sasl_mechanism}): check ENRICHER_BROKER_SASL_PASSWORD and "
                f"ENRICHER_BROKER_SASL_MECHANISM ({exc.description})"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise BrokerAccessDenied(
                f"the broker at {address} presented a certificate this process does not trust "
                f"({exc.verify_message}): check ENRICHER_BROKER_SSL_CAFILE and "
                "ENRICHER_BROKER_SSL_CHECK_HOSTNAME"
            ) from None
        except ssl.SSLError as exc:
            raise BrokerAccessDenied(
                f"TLS with the broker at {address} failed ({exc.reason}): check "
                "ENRICHER_BROKER_SECURITY_PROTOCOL and the ENRICHER_BROKER_SSL_* settings"
            ) from None
        except (OSError, TimeoutError, KafkaError):
            continue  # not there (yet): the clients wait it out
        connection.close()
        return
