"""The README documents every built-in sink's settings and how to write a sink."""

from __future__ import annotations

from pathlib import Path

from streams.sinks import sink_setting_names

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
COMMON = (
    "IP_POLICY",
    "BATCH_MAX",
    "BATCH_WITHIN",
    "RETRIES",
    "RETRY_MAX_DELAY",
    "CONSENT_CATEGORIES",
    "PII_FIELDS",
)


def test_readme_lists_every_built_in_sink_setting() -> None:
    missing = []
    built_in = ("ENRICHER_SINK_POSTGRES_", "ENRICHER_SINK_WEBHOOK_", "ENRICHER_SINK_FILE_")
    for name in sink_setting_names():
        if not name.startswith(built_in) and name != "ENRICHER_SINK_METRICS_PORT":
            continue  # a plug-in installed in this environment documents its own
        common = next((c for c in COMMON if name.endswith(f"_{c}")), None)
        shown = f"`ENRICHER_SINK_<NAME>_{common}`" if common else f"`{name}`"
        if shown not in README:
            missing.append(name)
    assert not missing


def test_readme_shows_how_to_write_and_install_a_sink() -> None:
    assert '[project.entry-points."identity_enricher.sinks"]' in README
    assert "class AuditSink(Sink):" in README
