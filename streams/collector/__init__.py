"""The collector: Segment's Tracking API over HTTP, raw events into ``events.raw``.

``enricher collector`` runs it (:func:`run_collector`). Existing Segment libraries and
Analytics.js point at it unchanged (README "The collector")."""

from streams.collector.run import READY_LINE, run_collector
from streams.collector.server import create_collector_app
from streams.collector.tracking import shape_request

__all__ = ["READY_LINE", "create_collector_app", "run_collector", "shape_request"]
