"""The README documents every setting and the two fresh-machine commands."""

from __future__ import annotations

from pathlib import Path

from streams.settings import settings_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_lists_every_setting() -> None:
    missing = [name for name, _, _ in settings_table() if f"`{name}`" not in README]
    assert not missing


def test_readme_gives_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
