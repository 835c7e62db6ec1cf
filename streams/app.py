"""``faust -A streams.app worker``: the worker's Faust app, built from the environment (the
settings of ``enricher --help``) on first use. ``enricher worker`` is the same worker."""

from __future__ import annotations

from typing import Any

from streams.settings import Settings
from streams.worker.app import EnricherApp, create_app

__all__ = ["EnricherApp", "app", "create_app"]

app: EnricherApp


def __getattr__(name: str) -> Any:
    if name == "app":
        global app
        app = create_app(Settings.load())
        return app
    raise AttributeError(name)
