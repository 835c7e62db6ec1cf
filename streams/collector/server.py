"""The collector's HTTP server (aiohttp): Segment's Tracking API in, raw records out.

Routes: ``POST /v1/<endpoint>`` (the six calls, ``batch``/``import``, and Analytics.js's short
paths), CORS preflights, ``GET /v1/projects/<writeKey>/settings`` (Analytics.js's CDN
settings, pointing it back here), ``GET /health``, ``GET /stats`` (counters). Request shaping is
:mod:`streams.collector.tracking`; this module only moves bytes, headers and cookies.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import orjson
from aiohttp import web

from enrichers.timestamps import format_iso_ms
from streams.collector.browser import browser_settings
from streams.collector.producer import BrokerUnavailable, RawProducer
from streams.collector.tracking import (
    ACCEPTED_BODY,
    MAX_BATCH_BYTES,
    Accepted,
    Refused,
    TrackingRequest,
    client_ip,
    known_write_key,
    shape_request,
)
from streams.settings import Settings

log = logging.getLogger(__name__)

JSON: Final = "application/json"
PREFLIGHT_MAX_AGE: Final = "86400"
DEFAULT_ALLOWED_HEADERS: Final = "Content-Type, Authorization, X-Retry-Count"
RETRY_AFTER_SECONDS: Final = "5"
_READ_CHUNK: Final = 64 * 1024

PRODUCER_KEY: Final = web.AppKey("producer", RawProducer)


@dataclass
class CollectorCounters:
    """What the collector did since it started (``GET /stats``)."""

    requests: int = 0
    accepted_requests: int = 0
    messages: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "requests": self.requests,
                "acceptedRequests": self.accepted_requests,
                "messages": self.messages,
                "refused": dict(sorted(self.refused.items())),
            }
        )


class Collector:
    """The request handlers, bound to the settings and the producer."""

    def __init__(self, settings: Settings, producer: RawProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.write_keys = frozenset(settings.collector_write_keys)
        self.placeholders = settings.policy.placeholders
        self.origins = frozenset(settings.collector_cors_origins) - {"*"}
        # with a device cookie the requests carry credentials: then only listed origins, never
        # any origin that asks, may read the answers (and set the cookie)
        self.any_origin = "*" in settings.collector_cors_origins and not (
            settings.collector_device_cookie
        )
        if "*" in settings.collector_cors_origins and not self.any_origin:
            log.warning(
                "ENRICHER_COLLECTOR_CORS_ORIGINS=* is not used with a device cookie: only the "
                "origins listed there are allowed"
            )
        self.cookie_max_age = int(settings.device_ttl_days * 86400)
        self.counters = CollectorCounters()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self.health),
            web.get("/stats", self.stats),
            web.get("/v1/projects/{write_key}/settings", self.cdn_settings),
            web.options("/v1/{tail:.*}", self.preflight),
            web.post("/v1/{endpoint}", self.track),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"ok": True}), content_type=JSON)

    async def stats(self, request: web.Request) -> web.Response:
        return web.Response(body=self.counters.as_json(), content_type=JSON)

    async def track(self, request: web.Request) -> web.StreamResponse:
        self.counters.requests += 1
        body = await _read_body(request, MAX_BATCH_BYTES)
        cookie = self._device_cookie(request)
        issued = None
        if cookie is None and self.settings.collector_set_device_cookie:
            cookie = issued = str(uuid.uuid4())
        tracking = TrackingRequest(
            endpoint=request.match_info["endpoint"],
            body=body if body is not None else b"",
            authorization=request.headers.get("Authorization"),
            request_ip=self._request_ip(request),
            received_at=format_iso_ms(time.time_ns() // 1_000_000),
            device_cookie=cookie,
            placeholders=self.placeholders,
        )
        if body is None:  # over the batch limit: not read (or inflated) to the end
            compressed = "Content-Encoding" in request.headers
            result: Accepted | Refused = Refused(
                413 if compressed else 400,
                "too_large",
                f"the request is over the {MAX_BATCH_BYTES}-byte batch limit"
                + (" once inflated" if compressed else ""),
            )
        else:
            result = shape_request(tracking, self.write_keys, _new_message_id)
        if isinstance(result, Accepted):
            try:
                await self.producer.write(result.records)
            except BrokerUnavailable as exc:
                log.warning("answering 503: %s", exc)
                result = Refused(503, "unavailable", "the event log is unavailable; retry later")
        if isinstance(result, Refused):
            self.counters.refused[result.code] += 1
            response = web.Response(status=result.status, body=result.body(), content_type=JSON)
            if result.status == 503:
                response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        else:
            self.counters.accepted_requests += 1
            self.counters.messages += len(result.records)
            response = web.Response(body=ACCEPTED_BODY, content_type=JSON)
            if issued is not None:
                self._issue_cookie(request, response, issued)
        self._cors(request, response)
        return response

    async def preflight(self, request: web.Request) -> web.Response:
        response = web.Response(status=204)
        if self._cors(request, response):
            response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", DEFAULT_ALLOWED_HEADERS
            )
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    async def cdn_settings(self, request: web.Request) -> web.Response:
        write_key = request.match_info["write_key"]
        if not known_write_key(write_key, self.write_keys):
            refused = Refused(404, "not_found", "unknown write key")
            response = web.Response(status=404, body=refused.body(), content_type=JSON)
        else:
            api_host = f"{request.host}/v1"
            settings = browser_settings(write_key, api_host, self._scheme(request))
            response = web.Response(body=orjson.dumps(settings), content_type=JSON)
        self._cors(request, response)
        return response

    def _cors(self, request: web.Request, response: web.StreamResponse) -> bool:
        """Allow the request's origin when configured (credentials included, so that a
        first-party device cookie can travel); returns whether it was allowed."""
        origin = request.headers.get("Origin")
        if origin is None or not (self.any_origin or origin in self.origins):
            return False
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
        return True

    def _request_ip(self, request: web.Request) -> str:
        forwarded = None
        header = self.settings.collector_ip_header
        if header:
            forwarded = ",".join(request.headers.getall(header, [])) or None
        return client_ip(request.remote, forwarded)

    def _scheme(self, request: web.Request) -> str:
        if self.settings.collector_ip_header:  # behind a trusted proxy
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip()
            if proto in ("http", "https"):
                return proto
        return request.scheme

    def _device_cookie(self, request: web.Request) -> str | None:
        name = self.settings.collector_device_cookie
        if not name:
            return None
        value = request.cookies.get(name, "").strip()
        return value or None

    def _issue_cookie(self, request: web.Request, response: web.Response, value: str) -> None:
        response.set_cookie(
            self.settings.collector_device_cookie,
            value,
            max_age=self.cookie_max_age,
            domain=self.settings.collector_cookie_domain or None,
            path="/",
            httponly=True,
            secure=self._scheme(request) == "https",
            samesite="Lax",
        )


def _new_message_id() -> str:
    return str(uuid.uuid4())


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes (without reading all of it)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def create_collector_app(settings: Settings, producer: RawProducer) -> web.Application:
    app = web.Application(client_max_size=MAX_BATCH_BYTES + 1)
    app[PRODUCER_KEY] = producer
    app.add_routes(Collector(settings, producer).routes())
    return app
