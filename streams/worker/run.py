"""Running one worker process."""

from __future__ import annotations

import faust

from streams.observe.logs import logging_config
from streams.settings import Settings
from streams.worker.app import create_app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run until stopped (SIGTERM or Ctrl-C); exits the process as Faust workers do."""
    build_worker(settings, loglevel).execute_from_commandline()


def build_worker(settings: Settings, loglevel: str = "info") -> faust.Worker:
    worker = faust.Worker(
        create_app(settings),
        loglevel=loglevel,
        quiet=True,
        logging_config=logging_config(settings.log_format, loglevel),
    )
    # No start-up spinner: at warning and above, Faust spins it on every log record and so
    # sets the root logger to DEBUG, and every debug record of aiokafka (several per
    # request) was made and handled (issue 21: 2-3 % of the worker's CPU at --loglevel warning)
    worker.spinner = None
    return worker
