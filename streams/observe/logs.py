"""Log lines as JSON (``ENRICHER_LOG_FORMAT=json``), one object per line, for log shippers.

Every line carries the time, level, logger and message; a line logged while a batch is being
processed also carries the batch number and the partitions and offsets it covers (set by
:func:`batch_context` in the consumer), so an error can be traced to its records.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

_BATCH: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "enricher_batch", default=None
)


@contextlib.contextmanager
def batch_context(number: int, fetched: Mapping[Any, Sequence[Any]]) -> Iterator[None]:
    """Name the batch in progress (``fetched``: topic partition -> records with offsets)."""
    context = {
        "batch": number,
        "partitions": [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": messages[0].offset,
                "lastOffset": messages[-1].offset,
            }
            for tp, messages in fetched.items()
            if messages
        ],
    }
    token = _BATCH.set(context)
    try:
        yield
    finally:
        _BATCH.reset(token)


def current_batch() -> dict[str, Any] | None:
    return _BATCH.get()


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ["batch", "partitions"], ["exception"]}``."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        batch = _BATCH.get()
        if batch is not None:
            document.update(batch)
            if len(batch["partitions"]) == 1:  # the common case, flat for log queries
                only = batch["partitions"][0]
                document.update(partition=only["partition"], offset=only["offset"])
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def logging_config(log_format: str, level: str) -> dict[str, Any] | None:
    """A :func:`logging.config.dictConfig` for the worker; ``None`` keeps Faust's own."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def failure_site(exc: BaseException) -> str:
    """An exception as a log line may show it: its type and where it was raised, without its
    message (which may quote personal data from the record being processed)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return type(exc).__name__
    code = frame.tb_frame.f_code
    return f"{type(exc).__name__} in {code.co_name} ({code.co_filename}:{frame.tb_lineno})"
