from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.dev.stack import StackEndpoints
from tests.pipeline import LAUNCHED, Pipeline, stop_launched_since


@pytest.fixture
def pipeline(
    stack: StackEndpoints, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    """A fresh pipeline (topics, app id) on the shared stack; its workers stop afterwards.
    ``@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)`` runs a
    test on the single Redis and on the Redis Cluster (the session's ``redis_cluster``)."""
    pipe = Pipeline(stack, tmp_path)
    launched = len(LAUNCHED)
    if getattr(request, "param", "single") == "cluster":
        pipe.extra_env["ENRICHER_REDIS_URL"] = request.getfixturevalue("redis_cluster")
    try:
        yield pipe
    finally:
        pipe.stop_all()
        stop_launched_since(launched)  # sinks, collectors: also when the test failed
        pipe.remove_state()
