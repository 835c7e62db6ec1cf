from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.devstack import StackEndpoints
from tests.pipeline import Pipeline


@pytest.fixture
def pipeline(stack: StackEndpoints, tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh pipeline (topics, app id) on the shared stack; its workers stop afterwards."""
    pipe = Pipeline(stack, tmp_path)
    try:
        yield pipe
    finally:
        pipe.stop_all()
