"""Waiting out infrastructure failures: Redis or Kafka down is retried with bounded backoff,
never turned into a dead letter or a skipped record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

RETRYABLE: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    KafkaError,
    ConnectionError,
    TimeoutError,
    OSError,
)
FIRST_DELAY: Final = 0.1
MAX_DELAY: Final = 5.0

log = logging.getLogger(__name__)


async def until_done(
    operation: Callable[[], Awaitable[T]],
    what: str,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Run ``operation`` until it succeeds, backing off from 0.1 s to 5 s between tries."""
    delay = FIRST_DELAY
    attempt = 0
    while True:
        try:
            return await operation()
        except RETRYABLE as exc:
            attempt += 1
            log.warning("%s failed (attempt %d, retrying in %.1fs): %r", what, attempt, delay, exc)
            if on_retry is not None:
                on_retry(what)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
