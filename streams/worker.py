"""Running one worker process."""

from __future__ import annotations

import faust

from streams.app import create_app
from streams.settings import Settings


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run until stopped (SIGTERM or Ctrl-C); exits the process as Faust workers do."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
