"""The sink runner's counters, as Prometheus metrics (``enricher_sink_*``, labelled by sink),
served on ``ENRICHER_SINK_METRICS_PORT`` when it is set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from streams.observe.metrics import (
    ConsumedPositions,
    PartitionOffsetsCollector,
    start_metrics_server,
)


class SinkMetrics:
    def __init__(self, sink: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["sink"]

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"enricher_sink_{name}", doc, labels, registry=self.registry)

        self._records_in = counter("records_in", "records consumed from the source topic")
        self._written = counter("records_written", "records the sink wrote")
        self._skipped = counter("records_skipped", "records skipped by their integrations object")
        self._retries = counter("retries", "retried writes of a batch")
        self._dead = counter("records_dead_lettered", "records sent to the sink's dead letters")
        self._erased = counter(
            "records_erased", "R39: records of deleted ids consumed after the deletion, not written"
        )
        self._latency = Histogram(
            "enricher_sink_batch_seconds",
            "time to write (or dead-letter) one consumed batch, retries included",
            labels,
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self._sink = sink
        self.positions = ConsumedPositions()
        self.registry.register(
            PartitionOffsetsCollector(
                self.positions.offsets, prefix="enricher_sink", labels={"sink": sink}
            )
        )
        self.totals: dict[str, int] = dict.fromkeys(
            ("in", "written", "skipped", "retries", "dead_lettered", "erased"), 0
        )
        self._by_kind = {
            "in": self._records_in,
            "written": self._written,
            "skipped": self._skipped,
            "retries": self._retries,
            "dead_lettered": self._dead,
            "erased": self._erased,
        }

    def count(self, kind: str, amount: int = 1) -> None:
        """Add to one counter: ``in``, ``written``, ``skipped``, ``retries``, ``dead_lettered``."""
        if amount:
            self.totals[kind] += amount
            self._by_kind[kind].labels(self._sink).inc(amount)

    def observe_batch(self, seconds: float) -> None:
        self._latency.labels(self._sink).observe(seconds)

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on ``port`` (a daemon thread)."""
        start_metrics_server(self.registry, port)

    def summary(self) -> str:
        return " ".join(f"{kind}={total}" for kind, total in self.totals.items())
