"""Applying regulations to the stored state (SPEC R39), as a service of every worker.

Every worker follows ``events.regulations`` and ``events.regulations.status``; one at a time
(the holder of a Redis lease) applies each regulation that has no ``state`` outcome yet, in
topic order, then reports it:

- ``suppress``: the ids' digests go into the suppression list, then the digests of the
  anonymousIds and devices linked to each userId. Batches check the list on every load, so
  the suppression takes effect on every worker at once;
- ``delete``: the stored records go (:mod:`streams.state.regulations`), and again after
  ``ENRICHER_REGULATION_SETTLE_SECONDS``: a batch that loaded before the deletion cannot
  write the deleted devices back (their version check fails), and a batch's save comes at
  most half that time after its suppression check (or it checks again), so the second pass
  removes whatever a batch in flight wrote meanwhile;
- ``delete-and-suppress``: both, suppression first; ``unsuppress``: the digests go.

Redis emptied (its records lost, the suppression list with them) is noticed on start: the
suppression list is rebuilt from the topics before the worker consumes (the regulations, and
the linked digests each outcome kept). What else must precede the first batch (the device
layout, :meth:`streams.state.store.StateStore.prepare_layout`) is run first: ``prepare``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

from mode import Service

from enrichers.regulations import Regulation
from streams.regulations.log import (
    STATE,
    Outcome,
    RegulationStatus,
    RegulationTail,
    RegulationWriter,
    now_ms,
)
from streams.settings import Settings
from streams.state.regulations import RegulationKeyChanged, RegulationStore
from streams.state.store import LayoutMismatch
from streams.worker.retry import until_done

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.5
KEY_CHECK_SECONDS: Final = 10.0
LINKS_KEPT: Final = 20_000
"""Most linked digests an outcome keeps for a rebuild (about 430 KB of base64)."""


class RegulationService(Service):
    def __init__(
        self,
        settings: Settings,
        regulations: RegulationStore,
        prepare: Callable[[], Awaitable[Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._prepare = prepare
        self._settings = settings
        self._regulations = regulations
        self._tail = RegulationTail(settings)
        self.writer = RegulationWriter(settings)
        self._holder = uuid.uuid4().hex
        self._lease_seconds = max(30.0, 3 * settings.regulation_settle)
        self.applied = 0
        self.ready = asyncio.Event()
        """Set once ``prepare`` is done, the digest key is checked and the suppression list is
        whole (rebuilt if Redis lost it): batches wait for it."""
        self._key_checked_at = 0.0

    @property
    def book(self) -> dict[str, RegulationStatus]:
        return self._tail.book.statuses

    async def on_start(self) -> None:
        """Before the raw consumer starts: read every regulation."""
        await until_done(self._tail.start, "connecting to the regulations topics")
        await until_done(self.writer.start, "connecting the regulations producer")
        await until_done(self._tail.catch_up, "reading the regulations")
        log.info("regulations: %d read, applied by one worker at a time", len(self.book))

    async def _check_list(self) -> None:
        """Check the digest key; when Redis has no list (new, or emptied), rebuild it from the
        regulations applied so far, batches held meanwhile. Another key stops the worker."""
        fresh = await until_done(self._regulations.check_key, "checking the regulation key")
        self._key_checked_at = time.monotonic()
        applied = [s for s in self.book.values() if STATE in s.outcomes]
        if fresh and applied:
            self.ready.clear()
            log.warning(
                "the suppression list is missing (Redis emptied?): rebuilding it from %d "
                "regulations",
                len(applied),
            )
            for status in applied:
                await until_done(partial(self._restore, status), "rebuilding suppressions")
        self.ready.set()

    async def on_stop(self) -> None:
        await self._regulations.release(self._holder)
        await self._tail.stop()
        await self.writer.stop()

    async def submit(self, regulations: list[Regulation]) -> None:
        """Publish regulations (``POST /regulations``)."""
        await self.writer.publish(regulations)

    def received(self, regulation: Regulation) -> None:
        """Known at once (before it is read back from its topic): ``GET`` answers it."""
        self.book.setdefault(regulation.id, RegulationStatus(regulation, now_ms()))

    @Service.task
    async def _follow(self) -> None:
        try:
            if self._prepare is not None:
                await until_done(self._prepare, "preparing the device state")
            await self._check_list()
        except (RegulationKeyChanged, LayoutMismatch) as exc:
            log.critical("%s", exc)
            await self.crash(exc)
            return
        while not self.should_stop:
            try:
                if time.monotonic() - self._key_checked_at > KEY_CHECK_SECONDS:
                    await self._check_list()  # Redis emptied while running: rebuilt
                await self._tail.poll(POLL_SECONDS)
                pending = self._tail.book.pending(STATE)
                if pending and await self._regulations.lease(self._holder, self._lease_seconds):
                    for status in pending:
                        if self.should_stop:
                            break
                        await self._apply(status)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # an outage: tried again on the next round (each step is idempotent)
                log.warning("applying regulations: %r; trying again", exc)
                await self.sleep(1.0)

    async def _apply(self, status: RegulationStatus) -> None:
        regulation = status.regulation
        details: dict[str, Any] = {}
        if regulation.unsuppresses:
            details["unsuppressed"] = (await self._regulations.unsuppress(regulation)).as_json()
        if regulation.suppresses:
            suppressed, links = await self._regulations.suppress(regulation)
            details["suppressed"] = suppressed.as_json()
            if sum(len(linked) for linked in links.values()) <= LINKS_KEPT:
                details["linked"] = {  # digests only: for a rebuild of the list
                    user.hex(): base64.b64encode(b"".join(linked)).decode()
                    for user, linked in links.items()
                }
        if regulation.deletes:
            erased = await self._regulations.erase(regulation)
            await self._lease_through(self._settings.regulation_settle)
            erased.add(await self._regulations.erase(regulation))  # what batches in flight wrote
            details["deleted"] = erased.as_json()
        outcome = Outcome(regulation.id, STATE, "applied", now_ms(), details=details)
        await self.writer.report([outcome])
        status.outcomes[STATE] = outcome
        self.applied += 1
        log.info("regulation %s (%s) applied to the state", regulation.id, regulation.type)

    async def _lease_through(self, seconds: float) -> None:
        """Wait, keeping the lease."""
        step = self._lease_seconds / 3
        while seconds > 0:
            await asyncio.sleep(min(step, seconds))
            seconds -= step
            await self._regulations.lease(self._holder, self._lease_seconds)

    async def _restore(self, status: RegulationStatus) -> None:
        regulation = status.regulation
        outcome = status.outcomes[STATE]
        if regulation.unsuppresses:
            await self._regulations.unsuppress(regulation)
        elif regulation.suppresses:
            kept = outcome.details.get("linked")
            links: dict[bytes, list[bytes]] = {}
            for user, text in kept.items() if isinstance(kept, dict) else ():
                raw = base64.b64decode(text)
                links[bytes.fromhex(user)] = [raw[i : i + 16] for i in range(0, len(raw), 16)]
            await self._regulations.restore(regulation, links)
