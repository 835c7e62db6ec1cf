"""Prometheus metrics of a worker, served at ``GET /metrics`` on its web port.

The batch path stays cheap: the per-event counts are the :class:`~streams.worker.batch.Counters` the
processor keeps anyway, read when Prometheus scrapes; histograms and partition positions are
updated once per batch. Each worker (and each test's app) has a registry of its own.

Lag per partition is ``end offset - consumed position``, the usual consumer-lag definition.
The end offset is the broker's high watermark from the last fetch; on a broker whose
watermark does not count records (the embedded development one) lag is off by that much,
while ``enricher_consumer_position`` (the next offset to process) is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.worker.batch import Counters

CONTENT_TYPE: Final = "text/plain; version=0.0.4"
"""The Prometheus text format (the charset, UTF-8, is added by the web server)."""

BATCH_SIZES: Final = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
BATCH_SECONDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REDIS_SECONDS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1)

Offsets = Mapping[tuple[str, int], int]


class _CountersCollector(Collector):
    """The processor's counters, as Prometheus counters, read at scrape time."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self._counters
        yield _labelled("enricher_events_in", "raw events accepted, by type", "type", c.events_in)
        yield _labelled(
            "enricher_messages_out", "records produced, by topic", "topic", c.messages_out
        )
        yield _labelled("enricher_dead_letters", "dead letters, by code", "code", c.dead_letters)
        yield _labelled(
            "enricher_retries", "retried infrastructure operations", "operation", c.retries
        )
        yield _labelled(
            "enricher_blocked_ids",
            "R36: placeholder ids treated as not given, by listed value",
            "value",
            c.blocked_ids,
        )
        yield _labelled(
            "enricher_traits_not_cached",
            "R35: events whose traits would have outgrown the cache, by cache",
            "cache",
            c.traits_not_cached,
        )
        yield _labelled(
            "enricher_suppressed",
            "R39: raw events dropped for a suppressed id, by kind of id",
            "kind",
            c.suppressed,
        )
        for name, doc, value in (
            ("enricher_batches", "batches processed", c.batches),
            ("enricher_duplicates", "R32: events seen again (same messageId)", c.duplicates),
            ("enricher_already_applied", "R34: redelivered events skipped", c.already_applied),
            ("enricher_rotations", "R12: anonymousId rotations", c.rotations),
            (
                "enricher_generated_anonymous_ids",
                "R5: anonymousIds generated for new visitors",
                c.generated_anonymous_ids,
            ),
            ("enricher_fenced_writes", "R34: device writes refused by the fence", c.fenced_writes),
            (
                "enricher_profile_ids_trimmed",
                "R35: anonymousIds user profiles dropped over ENRICHER_PROFILE_MAX_IDS",
                c.profile_ids_trimmed,
            ),
            (
                "enricher_concurrent_saves",
                "R34: devices saved meanwhile by another worker, applied again",
                c.concurrent_saves,
            ),
            (
                "enricher_batches_applied_ahead",
                "batches loaded and applied while the batch before was being saved",
                c.applied_ahead,
            ),
            (
                "enricher_batches_ahead_redone",
                "R34: of those, batches with devices the batch before did not save as handed "
                "off, applied again",
                c.ahead_redone,
            ),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter


class ConsumedPositions:
    """The next offset to process of each assigned partition of one consumer, beside the
    broker's end offsets: what :class:`PartitionOffsetsCollector` exports (the worker's raw
    consumer and each sink keep one). Updated per finished batch, read at scrape time."""

    def __init__(self) -> None:
        self.consumer: AIOKafkaConsumer | None = None
        self._next: dict[tuple[str, int], int] = {}

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        kept = {(tp.topic, tp.partition) for tp in partitions}
        self._next = {tp: o for tp, o in self._next.items() if tp in kept}

    def done(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> None:
        for tp, records in fetched.items():
            self._next[(tp.topic, tp.partition)] = records[-1].offset + 1

    def offsets(self) -> tuple[Offsets, Offsets]:
        """(next offset to process, broker end offset) of each partition."""
        ends: dict[tuple[str, int], int] = {}
        if self.consumer is not None:
            for topic, partition in self._next:
                end = self.consumer.highwater(TopicPartition(topic, partition))
                if end is not None:
                    ends[(topic, partition)] = end
        return dict(self._next), ends


class PartitionOffsetsCollector(Collector):
    """Consumed position, end offset and lag of each assigned partition, read at scrape
    time from ``partitions()`` -> (next offset to process, end offset) by (topic, partition).
    ``prefix`` names the metrics (a sink may use ``enricher_sink``, with ``labels`` such as
    ``{"sink": "postgres"}``)."""

    def __init__(
        self,
        partitions: Callable[[], tuple[Offsets, Offsets]],
        prefix: str = "enricher",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self._partitions = partitions
        self._prefix = prefix
        self._extra = dict(labels or {})

    def collect(self) -> Iterator[Metric]:
        positions, ends = self._partitions()
        labels = [*self._extra, "topic", "partition"]
        fixed = list(self._extra.values())
        position = GaugeMetricFamily(
            f"{self._prefix}_consumer_position",
            "next offset to process, per partition",
            labels=labels,
        )
        end = GaugeMetricFamily(
            f"{self._prefix}_consumer_end_offset",
            "the broker's end offset, per partition",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            f"{self._prefix}_consumer_lag",
            "records not yet processed, per partition",
            labels=labels,
        )
        for (topic, partition), offset in sorted(positions.items()):
            tags = [*fixed, topic, str(partition)]
            position.add_metric(tags, offset)
            if (topic, partition) in ends:
                end.add_metric(tags, ends[(topic, partition)])
                lag.add_metric(tags, max(ends[(topic, partition)] - offset, 0))
        yield from (position, end, lag)


class WorkerMetrics:
    """One worker's registry: counters from the processor, histograms observed per batch."""

    def __init__(self, counters: Counters) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CountersCollector(counters))
        self.batch_size = Histogram(
            "enricher_batch_size",
            "raw records per batch",
            buckets=BATCH_SIZES,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "enricher_batch_seconds",
            "time to process a batch: parse, load, enrich, produce and acknowledge, save",
            buckets=BATCH_SECONDS,
            registry=self.registry,
        )
        self.redis_seconds = Histogram(
            "enricher_redis_seconds",
            "Redis round-trip time, per operation",
            ["operation"],
            buckets=REDIS_SECONDS,
            registry=self.registry,
        )

    def watch_partitions(self, partitions: Callable[[], tuple[Offsets, Offsets]]) -> None:
        """Export positions and lag from ``partitions()``: (positions, end offsets)."""
        self.registry.register(PartitionOffsetsCollector(partitions))

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_redis(self, operation: str, seconds: float) -> None:
        self.redis_seconds.labels(operation).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def start_metrics_server(registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> None:
    """Serve ``registry`` at ``http://host:port/metrics`` from a thread (for processes
    without a web server of their own, such as a sink with ``ENRICHER_SINK_METRICS_PORT``)."""
    start_http_server(port, addr=host, registry=registry)


def _labelled(name: str, doc: str, label: str, values: Mapping[str, int]) -> Metric:
    counter = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        counter.add_metric([key], value)
    return counter


def sample_values(text: str, name: str) -> Iterable[tuple[dict[str, str], float]]:
    """The samples of one metric in a Prometheus text exposition: (labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield dict(sample.labels), sample.value
