"""A third-party sink: a package defined here, installed by entry point only (a module and a
dist-info with ``entry_points.txt`` on the subprocess's path), listed and run like a built-in,
its own options typed and validated at start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from tests.pipeline import Pipeline
from tests.sinks import SinkProcess, wait_for

pytestmark = pytest.mark.e2e

PLUGIN = '''
"""A sink a user might write: appends labelled records to a file."""
from pathlib import Path

import orjson

from streams.sinks import Sink, SinkOption


class RecorderSink(Sink):
    name = "recorder"
    options = (
        SinkOption("out", Path, required=True, help="file to append to"),
        SinkOption("label", str, "none", help="written on every line"),
        SinkOption("min_n", int, 0, help="records with a smaller properties.n are left out"),
    )

    async def write(self, batch):
        with self.config["out"].open("ab") as out:
            for record in batch:
                if record.message.get("properties", {}).get("n", 0) >= self.config["min_n"]:
                    line = {"label": self.config["label"], "messageId": record.message_id}
                    out.write(orjson.dumps(line) + b"\\n")
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """The plug-in, 'installed': its module and its dist-info on a path of its own."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "recorder_sink.py").write_text(PLUGIN)
    dist = site / "recorder_sink-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-sink\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [identity_enricher.sinks]
            recorder = recorder_sink:RecorderSink
            """
        )
    )
    return site


def with_path(env: dict[str, str], site: Path) -> dict[str, str]:
    existing = env.get("PYTHONPATH", "")
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(site), existing) if p)}


def enricher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_sink_installed_by_entry_point_is_listed_configured_and_run(
    pipeline: Pipeline, plugin_path: Path, tmp_path: Path
) -> None:
    env = with_path(pipeline.env(), plugin_path)
    listed = enricher(env, "sink", "list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split("\t")[0] for line in listed.stdout.splitlines()]
    assert names == ["file", "postgres", "recorder", "webhook"]
    assert "recorder_sink:RecorderSink (recorder-sink 0.1)" in listed.stdout
    settings = enricher(env, "sink", "settings").stdout.split()
    assert "ENRICHER_SINK_RECORDER_OUT" in settings
    assert "ENRICHER_SINK_RECORDER_MIN_N" in settings
    assert "ENRICHER_SINK_RECORDER_IP_POLICY" in settings  # every sink gets the common ones

    # its own options are validated at start, and named in the error
    bad = enricher(
        {**env, "ENRICHER_SINK_RECORDER_OUT": "x", "ENRICHER_SINK_RECORDER_MIN_N": "many"},
        "sink",
        "run",
        "recorder",
    )
    assert bad.returncode == 2
    assert "ENRICHER_SINK_RECORDER_MIN_N='many'" in bad.stdout + bad.stderr
    missing = enricher(env, "sink", "run", "recorder")
    assert missing.returncode == 2
    assert "ENRICHER_SINK_RECORDER_OUT is required" in missing.stdout + missing.stderr

    out = tmp_path / "recorded.jsonl"
    pipeline.extra_env["PYTHONPATH"] = env["PYTHONPATH"]
    pipeline.start_worker()
    sink = SinkProcess.start(
        pipeline,
        "recorder",
        {
            "ENRICHER_SINK_RECORDER_OUT": str(out),
            "ENRICHER_SINK_RECORDER_LABEL": "from-plugin",
            "ENRICHER_SINK_RECORDER_MIN_N": "2",
        },
        "recorder.log",
    )
    sink.wait_ready()
    pipeline.produce_json(
        [("d1", {"type": "track", "event": "E", "properties": {"n": n}}) for n in range(5)]
    )
    by_n = {
        r.json()["properties"]["n"]: r.json()["messageId"] for r in pipeline.read("destinations", 5)
    }

    def recorded() -> list[dict[str, str]]:
        return (
            [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
        )

    assert wait_for(lambda: len(recorded()) >= 3, 60), sink.log()[-3000:]
    sink.stop()
    assert recorded() == [{"label": "from-plugin", "messageId": by_n[n]} for n in (2, 3, 4)]
