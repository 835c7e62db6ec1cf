"""Shared fixtures: the embedded development stack (a real Tansu broker and a real Redis)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streams.devstack import DevStack, StackEndpoints


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    """One broker and one Redis for the whole run; every test isolates itself by topic names
    and app id. ENRICHER_TEST_REDIS_URL picks the Redis (default: the local one, else a
    redis-server started for the run)."""
    redis_url = os.environ.get("ENRICHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    with DevStack(redis_url=redis_url) as endpoints:
        yield endpoints
