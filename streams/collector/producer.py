"""Producing a request's raw records: every record sent at once (aiokafka batches them with
other requests' records), the request answered only after the broker acknowledged all.

A broker that does not acknowledge within the ack timeout makes the request fail with
:class:`BrokerUnavailable` (the server answers 503, so the client keeps the events and
retries). Records that reach the broker after all are de-duplicated by their messageId
(R33), which the collector sets before producing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from streams.collector.tracking import RawRecord
from streams.settings import Settings
from streams.worker.clients import new_producer


class BrokerUnavailable(Exception):
    """The broker did not acknowledge a request's records in time."""


class RawProducer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.topic_raw
        self._ack_timeout = settings.collector_ack_timeout

    async def start(self) -> None:
        """Connect (aiokafka producers are made inside the event loop that uses them)."""
        self._producer = new_producer(
            self._settings,
            linger_ms=1,
            # records not delivered by the time the client hears 503 are dropped, not sent
            # later (a client retry would then carry them twice)
            request_timeout_ms=int(self._ack_timeout * 1000),
        )
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def write(self, records: Sequence[RawRecord]) -> None:
        """Produce the records; return once the broker acknowledged every one of them."""
        try:
            await asyncio.wait_for(self._send_all(records), self._ack_timeout)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not acknowledge the records: {exc!r}") from exc

    async def _send_all(self, records: Sequence[RawRecord]) -> None:
        send = self._producer.send
        pending = [await send(self._topic, record.value, key=record.key) for record in records]
        await asyncio.gather(*pending)
