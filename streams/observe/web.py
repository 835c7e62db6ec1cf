"""HTTP lookups on the worker's web server: ``GET /devices/{key}``, ``/users/{id}``,
``/groups/{id}``. Ids are URL-decoded path segments and may contain any character
(``/`` as ``%2F``)."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from streams.observe.metrics import CONTENT_TYPE, WorkerMetrics
from streams.state.lookups import Lookups, not_found
from streams.worker.batch import Counters

_ANY = r"{key:[\s\S]+}"  # any characters, newlines included
ROUTES = {"device": f"/devices/{_ANY}", "user": f"/users/{_ANY}", "group": f"/groups/{_ANY}"}


def add_lookup_views(app: faust.App, lookups: Lookups) -> None:
    for kind, path in ROUTES.items():
        app.page(path, name=f"lookup_{kind}")(_view(kind, lookups))


def add_stats_view(app: faust.App, counters: Counters) -> None:
    """``GET /stats``: what the worker has done since it started, retries included."""

    async def get(view: View, request: Request, **_: Any) -> Response:
        return view.json(counters.as_json())

    app.page("/stats", name="stats")(type("Stats", (View,), {"get": get}))


def add_metrics_view(app: faust.App, metrics: WorkerMetrics) -> None:
    """``GET /metrics``: the Prometheus text format."""

    async def get(view: View, request: Request, **_: Any) -> Response:
        return view.bytes(metrics.exposition(), content_type=CONTENT_TYPE)

    app.page("/metrics", name="metrics")(type("Metrics", (View,), {"get": get}))


def _view(kind: str, lookups: Lookups) -> type[View]:
    async def get(view: View, request: Request, key: str, **_: Any) -> Response:
        found = await lookups.find(kind, key)
        if found is None:
            return view.json(not_found(kind, key), status=404)
        return view.json(found)

    return type(f"{kind.title()}Lookup", (View,), {"get": get, "__doc__": f"Look up a {kind}."})
