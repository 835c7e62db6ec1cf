"""The file sink end to end: raw events -> worker -> events.destinations -> ``enricher sink run
file`` -> JSON Lines files, rotated by size and by time, published atomically."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.pipeline import Pipeline
from tests.sinks import SinkProcess, wait_for

pytestmark = pytest.mark.e2e


def published_lines(directory: Path) -> list[dict[str, object]]:
    lines = []
    for path in sorted(directory.glob("*.jsonl")):
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path.name} is cut"
        lines.extend(orjson.loads(line) for line in data.splitlines())
    return lines


def test_file_sink_writes_json_lines_rotated_by_size_and_time(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    pipeline.start_worker()
    sink = SinkProcess.start(
        pipeline,
        "file",
        {
            "ENRICHER_SINK_FILE_DIR": str(out),
            "ENRICHER_SINK_FILE_ROTATE_BYTES": "4000",
            "ENRICHER_SINK_FILE_ROTATE_SECONDS": "2",
            "ENRICHER_SINK_FILE_BATCH_MAX": "5",
            "ENRICHER_SINK_FILE_BATCH_WITHIN": "0.05",
        },
        "file.log",
    )
    sink.wait_ready()
    events = [
        (
            f"dev-{n % 5}",
            {"type": "track", "event": "Read", "properties": {"n": n, "pad": "x" * 200}},
        )
        for n in range(40)
    ]
    pipeline.produce_json(events)
    expected = {r.json()["messageId"] for r in pipeline.read("destinations", 40)}
    # the last file is published by age (2 s) with no more traffic
    assert wait_for(lambda: len(published_lines(out)) >= 40, 60), sink.log()[-3000:]
    lines = published_lines(out)
    assert sorted(str(m["messageId"]) for m in lines) == sorted(expected)
    files = sorted(out.glob("*.jsonl"))
    assert len(files) >= 3, "rotated by size"
    # a file is closed once it reaches the size: at most one batch (5 records) beyond it
    assert all(path.stat().st_size < 4000 + 5 * 1000 for path in files)
    assert not list(out.glob(".*.inprogress")), "nothing left open after the age limit"
    sink.stop()
    assert sink.process.returncode == 0
