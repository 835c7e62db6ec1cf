"""Faust's Kafka transport with the fetch wait under our control.

Faust's aiokafka driver fixes the consumer's ``fetch_max_wait_ms`` at 1500. A broker may hold
a fetch that long before answering (the embedded one does, at low rates), which adds up to
1.5 s of end-to-end latency; ``ENRICHER_FETCH_MAX_WAIT_MS`` sets it instead."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts; Faust offers no setting for it
        consumer._fetch_max_wait_ms = self.app.conf.enricher_fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class EnricherTransport(faust_aiokafka.Transport):
    Consumer = _Consumer
