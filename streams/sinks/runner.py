"""Running one sink: ``enricher sink run NAME``.

The sink consumes ``events.destinations`` (or ``events.warehouse``) as its own consumer group,
``{ENRICHER_APP_ID}.sink.{NAME}``. For each consumed batch: messages whose ``integrations``
object does not enable this sink are skipped (R29), the sink's IP policy is applied (R28), the
rest is written in chunks of the sink's batch size, retryable errors are retried with bounded
exponential backoff (at least a destination's ``Retry-After``), records that fail permanently
or exhaust the retries go to ``{ENRICHER_TOPIC_DEADLETTER}.sink.{NAME}``, and only then are the
batch's offsets committed. A stop waits for the batch in flight (except while it is backing
off: then the batch is left uncommitted, to be redone)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    TopicAlreadyExistsError,
    for_code,
)

from enrichers import IpPolicy
from enrichers.consent import consented
from enrichers.ip import apply_ip_policy
from enrichers.pseudonyms import pseudonymised
from enrichers.regulations import Regulation
from enrichers.routing import integration_enabled
from streams.observe.logs import failure_site
from streams.regulations.log import (
    Outcome,
    RegulationTail,
    RegulationWriter,
    now_ms,
    sink_outcome_name,
)
from streams.settings import Settings, SettingsError
from streams.sinks.base import (
    PermanentSinkError,
    RegulationUnsupported,
    RetryableSinkError,
    Sink,
    SinkRecord,
)
from streams.sinks.metrics import SinkMetrics
from streams.sinks.options import load_sink_config, metrics_port, variable
from streams.sinks.registry import load_sink
from streams.worker.clients import new_admin, new_producer
from streams.worker.deadletter import dead_letter_value
from streams.worker.groups import member_consumer
from streams.worker.records import InRecord
from streams.worker.retry import is_transient, until_done

log = logging.getLogger(__name__)

READY_LINE: Final = "Sink ready"
FIRST_RETRY_DELAY: Final = 0.5
LONGEST_RETRY_AFTER: Final = 600.0
"""A ``Retry-After`` above this is capped (a destination asking for hours is misconfigured)."""


def consumer_group(settings: Settings, sink_name: str) -> str:
    return f"{settings.app_id}.sink.{sink_name}"


def deadletter_topic(settings: Settings, sink_name: str) -> str:
    return f"{settings.topic_deadletter}.sink.{sink_name}"


def source_topic(settings: Settings, sink: type[Sink]) -> str:
    return settings.topic_warehouse if sink.source == "warehouse" else settings.topic_destinations


class _Unusable(Exception):
    """A consumed record the sink cannot take: dead-lettered with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _where(record: InRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


class _Stopping(Exception):
    """A stop came while a batch was backing off: leave it uncommitted."""


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: SinkRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._runner.idle.wait()  # offsets of finished batches are already committed

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("sink partitions assigned: %s", sorted(tp.partition for tp in assigned))
        self._runner.metrics.positions.assigned(assigned)


class SinkRunner:
    def __init__(
        self,
        settings: Settings,
        name: str,
        sink: Sink,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.sink = sink
        self.metrics = metrics or SinkMetrics(name)
        self.idle = asyncio.Event()
        self.idle.set()
        self.stopping = asyncio.Event()
        config = sink.config
        self._ip_policy: IpPolicy = config["ip_policy"]
        self._consent: tuple[str, ...] = config.get("consent_categories", ())
        self._pii_fields: tuple[str, ...] = config.get("pii_fields", ())
        self._pii_key = str(settings.pii_key).encode()
        if self._pii_fields and not self._pii_key:
            raise SettingsError(
                f"{variable(name, 'pii_fields')} names fields to pseudonymise: set "
                "ENRICHER_PII_KEY (or ENRICHER_PII_KEY_FILE)"
            )
        self._batch_max: int = config["batch_max"]
        self._within_ms = int(config["batch_within"] * 1000)
        self._retries: int = config["retries"]
        self._retry_max_delay: float = config["retry_max_delay"]
        self._source = source_topic(settings, type(sink))
        self._obeys_all = type(sink).obeys_all_false
        self._deadletter = deadletter_topic(settings, name)
        self._max_record_bytes = settings.max_record_bytes
        self._regulations = RegulationTail(settings)
        self._reports = RegulationWriter(settings)
        self._who = sink_outcome_name(name)
        self._erased_until: dict[tuple[str, str], int] = {}
        """R39: (field, id) of deleted ids -> records produced before this (ms) are not
        written: the backlog a sink reads after a deletion must not bring the rows back."""
        self._regulations_seen: set[str] = set()
        self._settle_ms = int(settings.regulation_settle * 1000)

    async def run(self) -> None:
        settings = self.settings
        await until_done(lambda: ensure_sink_topics(settings, self._deadletter), "creating topics")
        producer = new_producer(settings)
        await until_done(producer.start, "connecting the dead-letter producer")
        consumer = member_consumer(settings, consumer_group(settings, self.name), self._batch_max)
        self.metrics.positions.consumer = consumer
        try:
            if not await self.start_sink():
                return
            await until_done(self._regulations.start, "connecting to the regulations topics")
            await until_done(self._reports.start, "connecting the regulations producer")
            await until_done(self._regulations.catch_up, "reading the regulations")
            if not await self._follow_regulations():  # before any record: R39
                return
            consumer.subscribe([self._source], listener=_WaitForBatch(self))
            await until_done(consumer.start, "connecting the consumer")
            log.info(
                "%s: sink %s reads %s as group %s; dead letters to %s",
                READY_LINE,
                self.name,
                self._source,
                consumer_group(settings, self.name),
                self._deadletter,
            )
            await self._consume(consumer, producer)
        finally:
            try:
                await consumer.stop()
            finally:
                try:
                    await self.sink.stop()
                finally:
                    await self._regulations.stop()
                    await self._reports.stop()
                    await producer.stop()
                    log.info("sink %s stopped: %s", self.name, self.metrics.summary())

    async def start_sink(self) -> bool:
        """Start the sink, waiting out a destination that is not there yet (retryable errors,
        backing off up to the sink's longest delay, without limit: nothing is consumed yet).
        False when a stop came first."""
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                await self.sink.start()
                return True
            except Exception as exc:
                if not isinstance(exc, RetryableSinkError) and not is_transient(exc):
                    raise
                wait = min(delay, self._retry_max_delay)
                log.warning(
                    "sink %s: cannot start yet (retrying in %.1fs): %s", self.name, wait, exc
                )
                try:
                    await self._sleep_unless_stopping(wait)
                except _Stopping:
                    return False
                delay *= 2

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        ticked = time.monotonic()
        while not self.stopping.is_set():
            await until_done(lambda: self._regulations.poll(0), "reading the regulations")
            if not await self._follow_regulations():
                return
            try:
                fetched = await consumer.getmany(
                    timeout_ms=self._within_ms, max_records=self._batch_max
                )
            except (ConsumerStoppedError, IllegalStateError):
                return
            if fetched:
                self.idle.clear()
                try:
                    # shielded: a stop in the middle of a batch lets it finish (or give up
                    # while backing off) before the consumer closes
                    await asyncio.shield(self._run_batch(consumer, producer, fetched))
                except _Stopping:
                    log.warning("stopped while retrying; the batch will be redone")
                    return
                finally:
                    self.idle.set()
            if not fetched or time.monotonic() - ticked >= 1.0:
                await self.sink.tick()
                ticked = time.monotonic()

    async def _run_batch(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        fetched: dict[TopicPartition, list[Any]],
    ) -> None:
        started = time.monotonic()
        raw = [
            InRecord(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
            for tp, messages in fetched.items()
            for m in messages
        ]
        self.metrics.count("in", len(raw))
        records, failures = self.prepare(raw)
        size = max(1, self.sink.batch_size)
        for start in range(0, len(records), size):
            failures.extend(await self._write_chunk(records[start : start + size]))
        if failures:
            await self._dead_letter(producer, failures)
        offsets = {tp: messages[-1].offset + 1 for tp, messages in fetched.items()}
        try:
            await until_done(lambda: consumer.commit(offsets), "committing offsets")
        except (CommitFailedError, IllegalStateError) as exc:
            # the partitions moved in a rebalance: the new owner redoes this batch (writes
            # are idempotent by messageId where the destination allows it)
            log.warning("commit after a rebalance refused: %r", exc)
        self.metrics.positions.done(fetched)
        self.metrics.observe_batch(time.monotonic() - started)

    async def _follow_regulations(self) -> bool:
        """R39: learn every deletion (for the backlog), and have the sink apply each
        regulation it has no outcome for, in order, reporting the outcome. False when a stop
        came while one was being retried."""
        for status in self._regulations.book.statuses.values():
            regulation = status.regulation
            if regulation.id in self._regulations_seen:
                continue
            self._regulations_seen.add(regulation.id)
            if regulation.deletes:
                until = regulation.requested_at_ms + self._settle_ms
                for name, value in (
                    *(("userId", v) for v in regulation.user_ids),
                    *(("anonymousId", v) for v in (*regulation.anonymous_ids, *regulation.devices)),
                ):
                    key = (name, value)
                    self._erased_until[key] = max(until, self._erased_until.get(key, 0))
            if status.done_by(self._who) or self._who in status.outcomes:
                continue  # failed before: tried again on the next start
            try:
                outcome = await self._regulate(regulation)
            except _Stopping:
                return False
            await until_done(partial(self._reports.report, [outcome]), "reporting a regulation")
            status.outcomes[self._who] = outcome
        return True

    async def _regulate(self, regulation: Regulation) -> Outcome:
        delay = FIRST_RETRY_DELAY
        attempt = 0
        while True:
            try:
                details = await self.sink.regulate(regulation)
            except RegulationUnsupported as exc:
                log.info("sink %s: regulation %s unsupported: %s", self.name, regulation.id, exc)
                return Outcome(regulation.id, self._who, "unsupported", now_ms(), str(exc))
            except Exception as exc:
                retryable = isinstance(exc, RetryableSinkError) or is_transient(exc)
                if not retryable or attempt >= self._retries:
                    log.error(
                        "sink %s: regulation %s failed: %s",
                        self.name,
                        regulation.id,
                        failure_site(exc),
                    )
                    error = f"{type(exc).__name__}: {exc}"[:500]
                    return Outcome(regulation.id, self._who, "failed", now_ms(), error)
                attempt += 1
                wait = min(delay, self._retry_max_delay)
                log.warning(
                    "sink %s: regulation %s (retry %d/%d in %.1fs): %s",
                    self.name,
                    regulation.id,
                    attempt,
                    self._retries,
                    wait,
                    type(exc).__name__,
                )
                await self._sleep_unless_stopping(wait)
                delay *= 2
            else:
                log.info("sink %s: regulation %s applied", self.name, regulation.id)
                return Outcome(regulation.id, self._who, "applied", now_ms(), details=dict(details))

    def _erased(self, message: dict[str, Any], timestamp_ms: int) -> bool:
        """R39: the record is of an id deleted after it was produced."""
        if not self._erased_until:
            return False
        for name in ("userId", "anonymousId"):
            value = message.get(name)
            if isinstance(value, str) and self._erased_until.get((name, value), 0) > timestamp_ms:
                return True
        return False

    def prepare(
        self, raw: Sequence[InRecord]
    ) -> tuple[list[SinkRecord], list[tuple[InRecord, str, str]]]:
        """Decode, route by ``integrations`` (R29) and apply the IP policy (R28): the records
        to write, and the ones to dead-letter at once (undecodable)."""
        records: list[SinkRecord] = []
        failures: list[tuple[InRecord, str, str]] = []
        skipped = erased = 0
        for record in raw:
            try:
                prepared = self._prepare_one(record)
                if prepared is not None and self._erased(prepared.message, record.timestamp_ms):
                    erased += 1
                    continue
            except _Unusable as problem:
                failures.append((record, problem.code, problem.message))
                continue
            except Exception as exc:  # a bug must not make one record a poison pill
                log.error(
                    "sink %s: preparing %s failed: %s; dead-lettered",
                    self.name,
                    _where(record),
                    failure_site(exc),
                )
                failures.append((record, "sink_prepare_error", repr(exc)))
                continue
            if prepared is None:
                skipped += 1
            else:
                records.append(prepared)
        self.metrics.count("skipped", skipped)
        self.metrics.count("erased", erased)
        return records, failures

    def _prepare_one(self, record: InRecord) -> SinkRecord | None:
        """One record for the sink, or None when ``integrations`` does not enable it."""
        try:
            message = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError as exc:
            raise _Unusable("invalid_json", str(exc)) from None
        if not isinstance(message, dict):
            raise _Unusable("not_an_object", "the message is not a JSON object")
        if not integration_enabled(message.get("integrations"), self.name, self._obeys_all):
            return None
        context = message.get("context")
        if self._consent and not consented(  # R37: the sink's categories
            context if isinstance(context, dict) else None, self._consent
        ):
            return None
        if self._ip_policy.kind != "keep" and isinstance(context, dict):
            context = dict(context)
            apply_ip_policy(context, self._ip_policy)
            message["context"] = context
        if self._pii_fields:  # R38
            message = pseudonymised(message, self._pii_fields, self._pii_key)
        return SinkRecord(
            message, record.topic, record.partition, record.offset, record.key, record.timestamp_ms
        )

    async def _write_chunk(self, chunk: list[SinkRecord]) -> list[tuple[InRecord, str, str]]:
        delay = FIRST_RETRY_DELAY
        attempt = 0
        while True:
            try:
                await self.sink.write(chunk)
            except PermanentSinkError as exc:
                failed = chunk if exc.records is None else list(exc.records)
                self.metrics.count("written", len(chunk) - len(failed))
                log.warning(
                    "sink %s: %d records failed permanently: %s", self.name, len(failed), exc
                )
                return [(_in_record(r), "sink_permanent", str(exc)) for r in failed]
            except Exception as exc:
                if not isinstance(exc, RetryableSinkError) and not is_transient(exc):
                    return await self._isolate(chunk, exc)
                if attempt >= self._retries:
                    log.error("sink %s: giving up after %d retries: %r", self.name, attempt, exc)
                    message = f"gave up after {attempt} retries: {exc}"
                    return [(_in_record(r), "sink_retries_exhausted", message) for r in chunk]
                attempt += 1
                wait = min(delay, self._retry_max_delay)
                retry_after = getattr(exc, "retry_after", None)
                if retry_after is not None:
                    wait = max(wait, min(retry_after, LONGEST_RETRY_AFTER))
                log.warning(
                    "sink %s: write failed (retry %d/%d in %.1fs): %s",
                    self.name,
                    attempt,
                    self._retries,
                    wait,
                    exc,
                )
                self.metrics.count("retries")
                await self._sleep_unless_stopping(wait)
                delay *= 2
            else:
                self.metrics.count("written", len(chunk))
                return []

    async def _isolate(
        self, chunk: list[SinkRecord], exc: Exception
    ) -> list[tuple[InRecord, str, str]]:
        """A write failed in a way the sink did not foresee (a bug, or a record it cannot
        handle): halve the chunk until the records that fail stand alone, dead-letter those
        (``sink_error``) and write the rest. No record stops the sink."""
        if len(chunk) == 1:
            where = f"{chunk[0].topic}/{chunk[0].partition}/{chunk[0].offset}"
            log.error(
                "sink %s: writing %s failed: %s; dead-lettered",
                self.name,
                where,
                failure_site(exc),
            )
            return [(_in_record(chunk[0]), "sink_error", repr(exc))]
        middle = len(chunk) // 2
        return [
            *await self._write_chunk(chunk[:middle]),
            *await self._write_chunk(chunk[middle:]),
        ]

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return
        raise _Stopping()

    async def _dead_letter(
        self, producer: AIOKafkaProducer, failures: Sequence[tuple[InRecord, str, str]]
    ) -> None:
        now_ms = int(time.time() * 1000)

        async def send_all() -> None:
            pending = []
            for record, code, message in failures:
                value = dead_letter_value(
                    record, code, message, now_ms, self._max_record_bytes, sink=self.name
                )
                pending.append(await producer.send(self._deadletter, value, key=record.key))
            await asyncio.gather(*pending)

        await until_done(send_all, "writing sink dead letters")
        self.metrics.count("dead_lettered", len(failures))


def _in_record(record: SinkRecord) -> InRecord:
    # the dead letter carries the message as the sink was given it (IP policy applied)
    value = orjson.dumps(record.message)
    return InRecord(
        record.topic, record.partition, record.offset, record.key, value, record.timestamp_ms
    )


async def ensure_sink_topics(settings: Settings, deadletter: str) -> None:
    """The CONTRACT topics and the sink's dead-letter topic, created with the configured
    partitions before any client touches them (the embedded broker would auto-create them
    with its own count)."""
    from streams.worker.topics import ensure_topics

    await ensure_topics(settings)
    admin = new_admin(settings)
    await admin.start()
    try:
        if deadletter in set(await admin.list_topics()):
            return
        response = await admin.create_topics(
            [NewTopic(deadletter, settings.topic_partitions, settings.topic_replication)]
        )
        for topic, code, *_ in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"creating topic {topic}")
    finally:
        await admin.close()


def run_sink(
    settings: Settings, name: str, config_file: str | Path | None, environ: Mapping[str, str]
) -> int:
    """``enricher sink run NAME``: until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sink_class = load_sink(name)
        config = load_sink_config(name, sink_class, environ, config_file)
        port = metrics_port(environ, config_file)
        sink = sink_class(config)
    except (SettingsError, ValueError) as exc:  # a sink may check its options further
        log.error("bad sink setting: %s", exc)
        return 2
    metrics = SinkMetrics(name)
    if port is not None:
        metrics.serve(port)
    runner = SinkRunner(settings, name, sink, metrics)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runner.stopping.set)
        await runner.run()

    asyncio.run(main())
    return 0
