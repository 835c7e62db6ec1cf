"""Running the collector process: topics ensured, producer connected, HTTP served until
SIGTERM or Ctrl-C; then in-flight requests finish and the producer flushes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Final

from aiohttp import web

from streams.collector.producer import RawProducer
from streams.collector.server import create_collector_app
from streams.settings import Settings
from streams.worker.retry import until_done
from streams.worker.topics import ensure_topics

READY_LINE: Final = "Collector ready"
SHUTDOWN_TIMEOUT: Final = 10.0

log = logging.getLogger(__name__)


MAX_URL_BYTES = 8192
MAX_HEADER_BYTES = 8192
"""The longest header line, a Cookie header included."""
MAX_HEADERS = 100


def run_collector(settings: Settings, loglevel: str = "info") -> int:
    """Serve until stopped; returns the exit code (2 without write keys)."""
    logging.basicConfig(
        level=loglevel.upper(), format="[%(asctime)s] [%(process)d] %(levelname)s %(message)s"
    )
    if not settings.collector_write_keys:
        print(
            "enricher collector: set ENRICHER_COLLECTOR_WRITE_KEYS (the write keys to accept)",
            file=sys.stderr,
        )
        return 2
    asyncio.run(serve(settings))
    return 0


async def serve(settings: Settings) -> None:
    # the raw topic must exist with its partition count before the producer asks for it
    await until_done(lambda: ensure_topics(settings), "creating topics")
    producer = RawProducer(settings)
    await until_done(producer.start, "connecting to the broker")
    runner = web.AppRunner(
        create_collector_app(settings, producer),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        # bounded before a handler runs: the request line (URL), each header (cookies
        # included) and their number; over a bound aiohttp answers 400 or 431
        max_line_size=MAX_URL_BYTES,
        max_field_size=MAX_HEADER_BYTES,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    try:
        site = web.TCPSite(runner, settings.collector_host, settings.collector_port, backlog=1024)
        await site.start()
        log.info(
            "%s on http://%s:%d/v1 (raw topic %s)",
            READY_LINE,
            settings.collector_host,
            settings.collector_port,
            settings.topic_raw,
        )
        await stopped.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await producer.stop()
