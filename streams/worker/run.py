"""Running one worker process."""

from __future__ import annotations

import faust

from streams.observe.logs import logging_config
from streams.settings import Settings
from streams.worker.app import create_app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run until stopped (SIGTERM or Ctrl-C); exits the process as Faust workers do."""
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        logging_config=logging_config(settings.log_format, loglevel),
    )
    worker.execute_from_commandline()
