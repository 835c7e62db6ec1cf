"""Destination sinks: the enricher's output written to warehouses, webhooks, files, or anything
a plug-in knows (``enricher sink run NAME``).

Write a sink by subclassing :class:`Sink` and registering it under the entry-point group
``identity_enricher.sinks``; the built-ins (``postgres``, ``webhook``, ``file``) are registered
the same way."""

from streams.sinks.base import (
    PermanentSinkError,
    RetryableSinkError,
    Sink,
    SinkError,
    SinkOption,
    SinkRecord,
    SinkSource,
)
from streams.sinks.options import variable as setting_name
from streams.sinks.registry import ENTRY_POINT_GROUP, installed_sinks, sink_setting_names

__all__ = [
    "ENTRY_POINT_GROUP",
    "PermanentSinkError",
    "RetryableSinkError",
    "Sink",
    "SinkError",
    "SinkOption",
    "SinkRecord",
    "SinkSource",
    "installed_sinks",
    "setting_name",
    "sink_setting_names",
]
