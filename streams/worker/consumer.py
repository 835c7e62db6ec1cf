"""Consuming ``events.raw`` in batches, as a service of the Faust app.

Faust's per-event machinery (fetcher, conductor, channel queues, stream iteration, acks) took
about 40 % of the worker's time per event in profiles, more than the rules themselves. The raw
topic is therefore read here with aiokafka's batch API in the app's consumer group
(``ENRICHER_APP_ID``), and offsets are committed explicitly, only after a batch's outputs were
acknowledged and its state saved (every ``ENRICHER_COMMIT_INTERVAL`` seconds, and as soon as
the worker has caught up). Faust still runs the worker: lifecycle, web server, lookups,
commands (``faust -A streams.app worker`` works as before).

While a batch waits for the broker to acknowledge its outputs and for Redis to save its
state, the next batch is fetched, validated, loaded and applied on the states being saved
(``BatchProcessor.apply_ahead``); it sends its outputs once the batch before's are
acknowledged and saves once that batch is done (its devices that batch did not save as handed
off are applied again: R34). At most two batches are in flight; they send and save in order,
and finish (offsets done) in order.

Rebalances wait for the batches in flight, never longer: the revocation callback returns when
they are done and committed. A batch fetched (and applied) meanwhile is then dropped before it
sends anything: its records are fetched again from the committed offsets by whoever owns
their partitions now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError
from mode import Service

from streams.observe.logs import batch_context, failure_site
from streams.observe.metrics import ConsumedPositions, WorkerMetrics
from streams.settings import Settings
from streams.worker.batch import AppliedAhead, BatchProcessor, PreparedBatch
from streams.worker.groups import member_consumer
from streams.worker.records import InRecord, in_records

log = logging.getLogger(__name__)


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, raw: RawConsumer) -> None:
        self._raw = raw

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._raw.revoking()
        await self._raw.batch_done()
        await self._raw.commit()  # what was done is committed before the partitions move

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("raw partitions assigned: %s", sorted(tp.partition for tp in assigned))
        self._raw.joined(assigned)


class RawConsumer(Service):
    def __init__(
        self,
        settings: Settings,
        processor: BatchProcessor,
        metrics: WorkerMetrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics
        self.positions = ConsumedPositions()
        self.assigned: frozenset[tuple[str, int]] | None = None  # None: not in the group yet
        if metrics is not None:
            metrics.watch_partitions(self.positions.offsets)
        self._settings = settings
        self._processor = processor
        self._in_flight = 0
        self._idle = asyncio.Event()  # set while no batch is in flight
        self._idle.set()
        self._consumer: AIOKafkaConsumer | None = None
        self._done: dict[TopicPartition, int] = {}  # finished, not yet committed
        self._committed_at = time.monotonic()
        self._generation = 0  # revocations so far
        self._writing = asyncio.Event()
        processor.writing = self._writing

    async def on_start(self) -> None:
        settings = self._settings
        self._consumer = member_consumer(settings, settings.app_id, settings.batch_max)
        self.positions.consumer = self._consumer
        self._consumer.subscribe([settings.topic_raw], listener=_WaitForBatch(self))
        await self._consumer.start()

    async def on_stop(self) -> None:
        await self.batch_done()
        await self.commit()
        if self._consumer is not None:
            await self._consumer.stop()

    def revoking(self) -> None:
        """Partitions are being revoked: a batch fetched before is not processed."""
        self._generation += 1

    def joined(self, assigned: Any) -> None:
        self.assigned = frozenset((tp.topic, tp.partition) for tp in assigned)
        self.positions.assigned(assigned)
        self._processor.topic_ids.clear()  # a topic recreated meanwhile has a new id (R34)

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        return self._consumer

    async def batch_done(self) -> None:
        await self._idle.wait()

    async def commit(self) -> None:
        """Commit the offsets of finished batches."""
        if not self._done or self._consumer is None:
            return
        offsets, self._done = self._done, {}
        self._committed_at = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the partitions moved in a rebalance; their new owner redoes what was not
            # committed, and the offset fence keeps state changes from applying twice (R34)
            log.warning("commit after a rebalance refused: %r", exc)

    @Service.task
    async def _consume(self) -> None:
        """Fetch, validate and process batches in turn. The next batch is fetched, validated,
        loaded and applied while the one before waits for Redis and the broker (a quarter to a
        third of a batch's time), then sent and saved once it is done."""
        assert self._consumer is not None
        consumer = self._consumer
        within_ms = int(self._settings.batch_within * 1000)
        running: list[asyncio.Future[None]] = []  # in order; at most two
        try:
            while not self.should_stop:
                try:
                    fetched = await self._fetch_fairly(consumer, within_ms)
                except (ConsumerStoppedError, IllegalStateError):
                    return
                if not fetched:
                    running = await self._finished(running)
                    # caught up: what was finished is committed now, not when the next batch
                    # comes (the group's lag, as Kafka's tools show it, falls to zero)
                    await self.commit()
                    continue
                generation = self._generation
                records = in_records(fetched)
                prepared = self._processor.prepare(records)
                # every batch but the last is done: what is not in the last is saved in Redis
                running = await self._finished(running, but_last=True)
                ahead = await self._apply_ahead(prepared, running)
                if ahead is None:
                    running = await self._finished(running)
                else:  # started once the batch before's outputs are acknowledged
                    await ahead.before_sent()
                if generation != self._generation or self.should_stop:
                    # partitions were revoked meanwhile: the batches before were committed, and
                    # these records are fetched again from there by whoever owns them now
                    continue
                self._in_flight += 1  # (no await since the check: a revocation waits for it)
                self._idle.clear()
                batch = asyncio.ensure_future(self._run_batch(fetched, records, prepared, ahead))
                running.append(batch)
                await self._until_writing(batch)
        finally:
            await self._finished(running)

    async def _apply_ahead(
        self, prepared: PreparedBatch | None, running: list[asyncio.Future[None]]
    ) -> AppliedAhead | None:
        """The next batch applied while the one in flight is saved (None when that one is
        done already, or this one could not be: it is then processed as usual)."""
        if prepared is None or not running or running[-1].done():
            return None
        try:
            return await self._processor.apply_ahead(prepared)
        except Exception as exc:  # processed as usual, where a failure stops the worker
            log.warning("applying the next batch ahead failed: %s", failure_site(exc))
            return None

    async def _until_writing(self, running: asyncio.Future[None]) -> None:
        """Until the batch in flight sent its outputs (or is done): fetched earlier, the next
        batch would be small (what the fetcher has buffered meanwhile), and batches of a few
        records cost a round trip each."""
        writing = self._writing
        writing.clear()
        if running.done():
            return
        waiter = asyncio.ensure_future(writing.wait())
        try:
            await asyncio.wait((running, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def _finished(
        self, running: list[asyncio.Future[None]], but_last: bool = False
    ) -> list[asyncio.Future[None]]:
        """Wait for the batches in flight (``but_last``: all but the last), in order (a stop
        in the middle of one lets it finish first); returns those still in flight."""
        waited = running[:-1] if but_last else running
        for batch in waited:
            await asyncio.shield(batch)
        return running[len(waited) :]

    async def _fetch_fairly(
        self, consumer: AIOKafkaConsumer, within_ms: int
    ) -> dict[TopicPartition, list[Any]]:
        """One batch with an equal share of every assigned partition that has records waiting,
        then topped up to ``batch_max`` from any. aiokafka drains its buffered fetch results
        partition by partition, so plain ``getmany`` would hand out a hot partition's whole
        buffer (the broker may return megabytes of one partition) before the others' records:
        devices on other partitions would wait behind a burst they have nothing to do with.
        Order is owed within a partition only (R34), and each partition's records stay in
        offset order here."""
        batch_max = self._settings.batch_max
        partitions = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        share = max(1, batch_max // max(1, len(partitions)))
        fetched: dict[TopicPartition, list[Any]] = await consumer.getmany(
            timeout_ms=within_ms, max_records=share
        )
        if not fetched:
            return fetched
        count = sum(len(records) for records in fetched.values())
        for tp in partitions:
            wanted = min(share - len(fetched.get(tp, ())), batch_max - count)
            if wanted > 0:
                count += _extend(fetched, await _buffered(consumer, wanted, tp))
        if count < batch_max:
            _extend(fetched, await _buffered(consumer, batch_max - count))
        return fetched

    async def _run_batch(
        self,
        fetched: dict[TopicPartition, list[Any]],
        records: list[InRecord],
        prepared: PreparedBatch | None,
        ahead: AppliedAhead | None = None,
    ) -> None:
        try:
            started = time.perf_counter()
            try:
                with batch_context(self._processor.counters.batches + 1, fetched):
                    if prepared is None:  # a source topic's id was not known yet
                        await self._processor.process(records)
                    else:
                        await self._processor.process_prepared(prepared, ahead)
            except Exception as exc:
                # not an outage (those are waited out) but a bug or a misconfiguration: stop
                # the worker without committing, so the batch is redone after the fix
                log.critical("batch failed; stopping the worker: %r", exc, exc_info=True)
                await self.crash(exc)
                raise
            if self._metrics is not None:
                self._metrics.observe_batch(len(records), time.perf_counter() - started)
            for tp, messages in fetched.items():
                self._done[tp] = messages[-1].offset + 1
            self.positions.done(fetched)
            if time.monotonic() - self._committed_at >= self._settings.commit_interval:
                await self.commit()
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()


async def _buffered(
    consumer: AIOKafkaConsumer, most: int, *partitions: TopicPartition
) -> dict[TopicPartition, list[Any]]:
    """Records already fetched (no waiting), of ``partitions`` or of any; none of a partition
    revoked meanwhile (its new owner reads them)."""
    try:
        fetched: dict[TopicPartition, list[Any]] = await consumer.getmany(
            *partitions, timeout_ms=0, max_records=most
        )
    except IllegalStateError:
        return {}
    return fetched


def _extend(fetched: dict[TopicPartition, list[Any]], more: dict[TopicPartition, list[Any]]) -> int:
    """Append ``more`` after what ``fetched`` holds of each partition (later offsets)."""
    added = 0
    for tp, records in more.items():
        fetched.setdefault(tp, []).extend(records)
        added += len(records)
    return added
