"""The worker's web server: the lookups ``GET /devices/{key}``, ``/users/{id}``,
``/groups/{id}`` (personal data: a bearer token of ``ENRICHER_LOOKUP_TOKENS`` is required), and
the open ``/stats`` and ``/metrics`` (counts only). Ids are URL-decoded path segments and may
contain any character (``/`` as ``%2F``). Faust's own views are not served."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Final

import faust
from faust.web import Request, Response, View

from streams.observe.metrics import CONTENT_TYPE, WorkerMetrics
from streams.state.lookups import Lookups, not_found
from streams.worker.batch import Counters

_ANY = r"{key:[\s\S]+}"  # any characters, newlines included
ROUTES = {"device": f"/devices/{_ANY}", "user": f"/users/{_ANY}", "group": f"/groups/{_ANY}"}


FAUST_VIEWS_OFF: Final[dict[str, Any]] = {
    "web_router_enabled": False,
    "web_tables_enabled": False,
    "web_graph_enabled": False,
    "web_stats_enabled": False,
    "web_metrics_enabled": False,
}
"""Faust's built-in views (router, tables, graph, statistics): undocumented here, not served."""


@dataclass(frozen=True)
class LookupAccess:
    """Who may read the lookups: a bearer token among ``tokens`` (compared in constant time),
    or anyone when ``open`` (local development). No token and not open: nobody (403)."""

    tokens: tuple[str, ...]
    open: bool = False

    def refusal(self, authorization: str | None) -> tuple[int, dict[str, Any]] | None:
        """None when the request may read; else (status, error body)."""
        if self.open:
            return None
        if not self.tokens:
            return 403, _error(
                "lookups_disabled",
                "the lookups are off: set ENRICHER_LOOKUP_TOKENS (or ENRICHER_LOOKUP_TOKENS_FILE) "
                "and send 'Authorization: Bearer <token>'",
            )
        given = (authorization or "").removeprefix("Bearer ").strip().encode()
        matched = False
        for token in self.tokens:  # every token compared, in constant time each
            matched |= hmac.compare_digest(given, token.encode())
        if matched and authorization and authorization.startswith("Bearer "):
            return None
        return 401, _error("unauthorized", "a valid 'Authorization: Bearer <token>' is required")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def add_lookup_views(app: faust.App, lookups: Lookups, access: LookupAccess) -> None:
    for kind, path in ROUTES.items():
        app.page(path, name=f"lookup_{kind}")(_view(kind, lookups, access))


def without_faust_index(app: faust.App) -> None:
    """Faust serves a status page at ``/`` whatever its view settings: not this app."""
    manager = app.web.blueprints
    manager._enabled = [
        (prefix, blueprint)
        for prefix, blueprint in manager._enabled
        if not str(blueprint).startswith("faust.web.apps.")
    ]


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


def _view(kind: str, lookups: Lookups, access: LookupAccess) -> type[View]:
    async def get(view: View, request: Request, key: str, **_: Any) -> Response:
        refused = access.refusal(request.headers.get("Authorization"))
        if refused is not None:
            status, body = refused
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return view.json(body, status=status, headers=headers)
        found = await lookups.find(kind, key)
        if found is None:
            return view.json(not_found(kind, key), status=404)
        return view.json(found)

    return type(f"{kind.title()}Lookup", (View,), {"get": get, "__doc__": f"Look up a {kind}."})
