"""Waiting out infrastructure failures: Redis or Kafka down is retried with bounded backoff,
never turned into a dead letter or a skipped record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
)
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    NoPermissionError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

FIRST_DELAY: Final = 0.1
MAX_DELAY: Final = 5.0

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """An outage or a slow service, worth waiting for; anything else is a bug or a
    misconfiguration and stops the worker (without committing)."""
    if isinstance(exc, AuthenticationError | NoPermissionError | SaslAuthenticationFailed):
        return False  # refused credentials: a configuration to fix, never an outage
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaConnectionError | KafkaTimeoutError)
    if isinstance(exc, RedisClusterException):
        # redis-py's cluster client wraps "no node reachable" (after its own retries) in
        # RedisClusterException, with the connection error as the cause
        cause = exc.__cause__
        return isinstance(exc, SlotNotCoveredError) or (cause is not None and is_transient(cause))
    return isinstance(
        exc,
        RedisConnectionError
        | RedisTimeoutError
        | BusyLoadingError
        | TryAgainError
        | ClusterDownError  # Redis Cluster during a failover (CLUSTERDOWN, MASTERDOWN)
        | ConnectionError
        | TimeoutError,
    )


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
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            log.warning("%s failed (attempt %d, retrying in %.1fs): %r", what, attempt, delay, exc)
            if on_retry is not None:
                on_retry(what)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
