"""The Faust app: topics, the raw consumer service, and the wiring of settings to the core.

``enricher worker`` runs it (:mod:`streams.worker.run`); ``faust -A streams.app worker`` builds
it from the environment (:mod:`streams.app`).
"""

from __future__ import annotations

import gc
import logging
import tempfile
import uuid
from collections.abc import Iterable

import faust
from mode import ServiceT
from redis.exceptions import RedisError

from streams import build
from streams.observe.health import HealthChecks, add_health_views
from streams.observe.metrics import WorkerMetrics
from streams.observe.web import (
    FAUST_VIEWS_OFF,
    LookupAccess,
    add_lookup_views,
    add_metrics_view,
    add_stats_view,
    without_faust_index,
)
from streams.regulations.applier import RegulationService
from streams.regulations.views import add_regulation_views
from streams.settings import Settings
from streams.state.lookups import Lookups
from streams.state.redis_client import RedisClient, check_redis_access, connect_to
from streams.state.regulations import RegulationStore
from streams.state.store import LISTPACK_ENTRIES, LISTPACK_VALUE, StateStore
from streams.worker.batch import BatchProcessor, OutputTopics
from streams.worker.clients import check_broker_access, faust_credentials
from streams.worker.consumer import RawConsumer
from streams.worker.topics import ensure_topics
from streams.worker.writer import BatchWriter

log = logging.getLogger(__name__)

STATS_INTERVAL_SECONDS = 30.0
GC_THRESHOLDS = (200_000, 20, 100)
"""The cyclic garbage collector's thresholds in the worker (Python's defaults: 700, 10, 10).
A young collection walks every young object still alive, and a batch in flight keeps its
events' objects alive: 200,000 took the batch path from 34.7 to 32.6 µs per event against
50,000 (3 runs each); 1,000,000 gained nothing more (issue 21)."""


async def prepare_devices(store: StateStore) -> None:
    """Before the first batch: the device layout checked (moved from layout 1 the first
    time), and a warning when Redis would not keep the buckets compact."""
    await store.prepare_layout()
    if await store.compact_buckets() is False:
        log.warning(
            "Redis's hash-max-listpack-value is under %d: device buckets take about a "
            "quarter more memory (set it in redis.conf)",
            LISTPACK_VALUE,
        )


class EnricherApp(faust.App):
    """The Faust app, creating the CONTRACT topics before its consumer starts."""

    enricher_settings: Settings
    enricher: BatchProcessor
    enricher_writer: BatchWriter
    enricher_redis: RedisClient
    raw_consumer: RawConsumer
    regulation_service: RegulationService
    enricher_regulations: RegulationStore

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        # regulations first: the suppression list is complete before any raw event is read
        return [*super().on_init_dependencies(), self.regulation_service, self.raw_consumer]

    async def on_first_start(self) -> None:
        # refused credentials or an untrusted certificate stop the worker at once, with the
        # setting to fix, before anything is consumed (an outage is waited out instead)
        await check_broker_access(self.enricher_settings)
        await check_redis_access(self.enricher_redis)
        stale = build.stale_extensions()
        if stale:  # an edit not built: the compiled module runs instead of the edited one
            log.warning("compiled modules older than their sources: %s", ", ".join(stale))
        log.info("build: %s", build.describe())
        # the batch path allocates many short-lived objects and few cycles: the collector
        # runs less often, and never again over what start-up made (about 8 % less CPU per
        # event in the bench's profile)
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.enricher_writer.partitions = await ensure_topics(self.enricher_settings)
        await self.enricher_writer.start()
        await super().on_first_start()

    async def on_stop(self) -> None:
        log.info("stopping: %s", self.enricher.counters.summary())
        await super().on_stop()

    async def on_shutdown(self) -> None:
        # after the raw consumer (a child service) finished its batch and committed
        await super().on_shutdown()
        await self.enricher_writer.stop()


def create_app(settings: Settings) -> EnricherApp:
    app = EnricherApp(
        # Faust's own consumer group (it reads no data topic): the raw topic is consumed by
        # RawConsumer in the group ENRICHER_APP_ID
        f"{settings.app_id}.faust",
        broker=settings.broker,
        broker_credentials=faust_credentials(settings),  # the same TLS/SASL as every client
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        store="memory://",
        web_port=settings.web_port,
        web_host=settings.web_host,
        **FAUST_VIEWS_OFF,
        datadir=settings.data_dir or tempfile.mkdtemp(prefix=f"{settings.app_id}-"),
    )

    app.enricher_settings = settings
    topics = OutputTopics(
        settings.topic_warehouse, settings.topic_destinations, settings.topic_deadletter
    )
    redis_client = connect_to(settings)  # one Redis or a Redis Cluster, by URL
    app.enricher_redis = redis_client
    store = StateStore(
        redis_client,
        settings.keys,
        settings.policy.device_ttl_ms,
        settings.profile_max_ids,
    )
    app.enricher_writer = BatchWriter(settings)
    processor = BatchProcessor.from_settings(
        settings, store, app.enricher_writer, topics, app.enricher_writer.topic_ids
    )
    app.enricher = processor
    metrics = WorkerMetrics(processor.counters)
    processor.redis_timer = metrics.observe_redis
    app.raw_consumer = RawConsumer(settings, processor, metrics, loop=app.loop, beacon=app.beacon)
    app.enricher_regulations = RegulationStore(redis_client, store, settings.regulation_digests)
    app.regulation_service = RegulationService(
        settings,
        app.enricher_regulations,
        prepare=lambda: prepare_devices(store),
        loop=app.loop,
        beacon=app.beacon,
    )
    processor.ready = app.regulation_service.ready  # R39: no batch before the list is whole
    add_stats_view(app, processor.counters)
    add_metrics_view(app, metrics)
    add_health_views(app, HealthChecks(app.raw_consumer, redis_client))
    access = LookupAccess(tuple(settings.lookup_tokens), settings.lookup_open)
    add_lookup_views(
        app,
        Lookups(redis_client, settings.keys, settings.policy.device_ttl_ms),
        access,
    )
    add_regulation_views(app, app.regulation_service, settings, access)
    without_faust_index(app)

    @app.timer(STATS_INTERVAL_SECONDS)  # type: ignore[untyped-decorator]
    async def report_stats() -> None:
        log.info("%s", processor.counters.summary())

    sweeper = uuid.uuid4().hex

    @app.timer(settings.device_sweep_interval)  # type: ignore[untyped-decorator]
    async def sweep_devices() -> None:
        """One worker a period reclaims the device records idle past the expiry."""
        interval = settings.device_sweep_interval
        try:
            if await store.sweep_lease(sweeper, interval * 0.9):
                pause = min(0.01, interval / 10 / settings.device_buckets)
                swept = await store.sweep(pause=pause)
                log.info("device sweep: %d idle records removed", swept.removed)
                per_bucket = (swept.seen - swept.removed) / settings.device_buckets
                if per_bucket > LISTPACK_ENTRIES:
                    log.warning(
                        "%.0f devices a bucket: over %d a bucket takes about a quarter more "
                        "memory; rebuild into a new app id with ENRICHER_DEVICE_BUCKETS about the "
                        "devices over 64 (README: Device records in Redis)",
                        per_bucket,
                        LISTPACK_ENTRIES,
                    )
        except RedisError as exc:
            log.warning("device sweep failed (again next period): %s", type(exc).__name__)

    return app
