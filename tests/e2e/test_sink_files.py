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


def test_a_killed_file_sinks_open_file_is_published_by_the_next_start(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = {
        "ENRICHER_SINK_FILE_DIR": str(out),
        "ENRICHER_SINK_FILE_ROTATE_SECONDS": "300",
        "ENRICHER_SINK_FILE_BATCH_WITHIN": "0.05",
    }
    pipeline.start_worker()
    sink = SinkProcess.start(pipeline, "file", env, "file-0.log")
    sink.wait_ready()
    events = [
        (f"dev-{n % 3}", {"type": "track", "event": "Kept", "properties": {"n": n}})
        for n in range(30)
    ]
    pipeline.produce_json(events[:20])

    def open_lines() -> int:
        return sum(len(p.read_bytes().splitlines()) for p in out.glob(".*.jsonl.inprogress"))

    assert wait_for(lambda: open_lines() >= 20, 60), sink.log()[-3000:]
    assert published_lines(out) == []  # nothing published yet: readers see no partial file
    sink.kill()
    pipeline.produce_json(events[20:])
    restarted = SinkProcess.start(pipeline, "file", env, "file-1.log")
    restarted.wait_ready()
    assert len(published_lines(out)) >= 20  # the dead sink's file, published at start
    expected = {r.json()["messageId"] for r in pipeline.read("destinations", 30)}

    def all_ids() -> set[str]:
        ids = set()
        for path in list(out.glob(".*.jsonl.inprogress")) + list(out.glob("*.jsonl")):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # published meanwhile: read under its new name below
                continue
            for line in data.splitlines():
                try:  # an open file may end in a line being written
                    ids.add(str(orjson.loads(line)["messageId"]))
                except orjson.JSONDecodeError:
                    continue
        return ids

    assert wait_for(lambda: all_ids() >= expected, 90), restarted.log()[-3000:]
    restarted.stop()  # publishes its open file
    assert not list(out.glob(".*"))
    seen = [str(m["messageId"]) for m in published_lines(out)]
    assert set(seen) == expected  # nothing lost; a batch not yet committed may repeat
