"""``enricher console``: the live console's web server (aiohttp).

Pages: ``/`` (the live view; filters in the query: ``/?userId=u-123&type=track``),
``/devices/{key}`` and ``/users/{id}`` (what the lookups return, and recent events). Data:
``/api/events``, ``/api/events/{id}`` (raw, warehouse, destinations, differences),
``/api/stream`` (server-sent events), ``/api/health``, ``/api/devices/{key}``,
``/api/users/{id}``. Everything shows personal data: a bearer token of
ENRICHER_LOOKUP_TOKENS on every request, or the session cookie the login form sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final
from urllib.parse import quote

import orjson
from aiohttp import web

from streams.console.tail import ConsoleTail
from streams.console.window import Entry, Window, query_of
from streams.settings import Settings
from streams.state.lookups import Lookups
from streams.state.redis_client import RedisClient, connect_to

log = logging.getLogger(__name__)

READY_LINE: Final = "Console ready"
SESSION_COOKIE: Final = "enricher_console"
SESSION_SECONDS: Final = 12 * 3600
ROWS_LIMIT: Final = 500
STREAM_QUEUE: Final = 64
"""Updates a slow page may fall behind by before it is told to load the list afresh."""
SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'",
}


@dataclass
class ConsoleAccess:
    """The lookup tokens, as a bearer header or through a login that sets a session cookie;
    everyone when ``open`` (``make run`` on localhost)."""

    tokens: tuple[str, ...]
    open: bool = False
    sessions: dict[str, float] = field(default_factory=dict)

    def valid_token(self, given: str) -> bool:
        matched = False
        for token in self.tokens:  # every token compared, in constant time each
            matched |= hmac.compare_digest(given.encode(), token.encode())
        return matched and bool(given)

    def allows(self, request: web.Request) -> bool:
        if self.open:
            return True
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer ") and self.valid_token(
            authorization.removeprefix("Bearer ").strip()
        ):
            return True
        session = request.cookies.get(SESSION_COOKIE, "")
        expires = self.sessions.get(session)
        if expires is None:
            return False
        if expires < time.time():
            del self.sessions[session]
            return False
        return True

    def new_session(self) -> str:
        now = time.time()
        for stale in [s for s, expires in self.sessions.items() if expires < now]:
            del self.sessions[stale]
        session = secrets.token_urlsafe(32)
        self.sessions[session] = now + SESSION_SECONDS
        return session


def _static(name: str) -> bytes:
    return resources.files("streams.console").joinpath("static", name).read_bytes()


_CONTENT_TYPES: Final = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "index.html": "text/html",
    "login.html": "text/html",
}


def json_response(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")


class Console:
    def __init__(self, settings: Settings, redis: RedisClient | None = None) -> None:
        self.settings = settings
        self.window = Window(settings.console_window)
        self.tail = ConsoleTail(settings, self.window)
        self.access = ConsoleAccess(tuple(settings.lookup_tokens), settings.lookup_open)
        self._redis = redis if redis is not None else connect_to(settings)
        self.lookups = Lookups(self._redis, settings.keys, settings.policy.device_ttl_ms)
        self._streams: set[asyncio.Queue[list[Entry] | bool | None]] = set()
        """The open live streams' queues: a stop ends them (no waiting for a heartbeat)."""

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/devices/{key:.+}", self._page)
        app.router.add_get("/users/{key:.+}", self._page)
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/static/{name}", self._file)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/events/{key:.+}", self._event)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_get("/api/health", self._health)
        app.router.add_get("/api/devices/{key:.+}", self._device)
        app.router.add_get("/api/users/{key:.+}", self._user)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._end_streams)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _: web.Application) -> None:
        await self.tail.start()

    async def _end_streams(self, _: web.Application) -> None:
        for queue in self._streams:
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    queue.get_nowait()
            queue.put_nowait(False)

    async def _stop(self, _: web.Application) -> None:
        await self.tail.stop()
        await self._redis.aclose()

    @web.middleware
    async def _guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        public = request.path in ("/login", "/static/style.css")
        if not public and not self.access.allows(request):
            if request.path.startswith("/api/"):
                response: web.StreamResponse = json_response(
                    {"error": {"code": "unauthorized", "message": "a lookup token is required"}},
                    status=401,
                )
                response.headers["WWW-Authenticate"] = "Bearer"
            else:
                response = self._login_form(request.path_qs, status=401)
        else:
            response = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _login_form(self, next_path: str, status: int = 200, error: str = "") -> web.Response:
        page = _static("login.html").decode()
        page = page.replace("{{next}}", quote(next_path, safe="/?=&%"))
        page = page.replace("{{error}}", error)
        return web.Response(text=page, status=status, content_type="text/html")

    async def _login_page(self, request: web.Request) -> web.Response:
        return self._login_form(request.query.get("next", "/"))

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        next_path = str(form.get("next") or "/")
        if not next_path.startswith("/") or next_path.startswith("//"):
            next_path = "/"  # never elsewhere
        if not self.access.valid_token(str(form.get("token") or "")):
            return self._login_form(next_path, status=401, error="That token is not accepted.")
        response = web.HTTPSeeOther(next_path)
        response.set_cookie(
            SESSION_COOKIE,
            self.access.new_session(),
            httponly=True,
            samesite="Strict",
            max_age=SESSION_SECONDS,
            secure=request.secure,
        )
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        self.access.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE)
        return response

    async def _page(self, _: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html")

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _CONTENT_TYPES or name.endswith(".html"):
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=_CONTENT_TYPES[name])

    def _rows(self, query: dict[str, str], limit: int = ROWS_LIMIT) -> list[dict[str, Any]]:
        return [entry.row() for entry in self.window.newest(query, limit)]

    async def _events(self, request: web.Request) -> web.Response:
        query = query_of(request.query.items())
        return json_response({"events": self._rows(query), "window": len(self.window.entries)})

    async def _event(self, request: web.Request) -> web.Response:
        entry = self.window.entries.get(request.match_info["key"])
        if entry is None:
            return json_response(
                {"error": {"code": "not_found", "message": "not in the window"}}, 404
            )
        return json_response(entry.detail())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a ``snapshot`` of the matching rows, then ``rows`` as entries
        arrive or complete; ``reset`` when the page fell behind (it loads afresh)."""
        query = query_of(request.query.items())
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        await response.prepare(request)
        queue: asyncio.Queue[list[Entry] | bool | None] = asyncio.Queue(STREAM_QUEUE)
        self._streams.add(queue)

        def deliver(entries: list[Entry]) -> None:
            matching = [entry for entry in entries if entry.matches(query)]
            if not matching:
                return
            try:
                queue.put_nowait(matching)
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()
                queue.put_nowait(None)  # fell behind: reset

        stop_listening = self.tail.listen(deliver)
        try:
            await _send(response, "snapshot", self._rows(query))
            async for entries in _drain(queue):
                if entries is False:  # the server stops
                    break
                if entries is None:
                    await _send(response, "snapshot", self._rows(query))
                elif isinstance(entries, list):
                    await _send(response, "rows", [entry.row() for entry in entries])
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stop_listening()
            self._streams.discard(queue)
        return response

    async def _health(self, _: web.Request) -> web.Response:
        return json_response(self.tail.health())

    async def _device(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        found = await self.lookups.device(key)
        return json_response({"lookup": found, "events": self._rows({"device": key}, 200)})

    async def _user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["key"]
        found = await self.lookups.user(user_id)
        return json_response({"lookup": found, "events": self._rows({"userId": user_id}, 200)})


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


async def _drain(
    queue: asyncio.Queue[list[Entry] | bool | None],
) -> AsyncIterator[list[Entry] | bool | None]:
    while True:
        try:
            yield await asyncio.wait_for(queue.get(), 15)
        except TimeoutError:
            yield []  # a heartbeat keeps proxies from closing the stream


def run_console(settings: Settings) -> int:
    """Serve until stopped (Ctrl-C, SIGTERM)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    console = Console(settings)
    host, port = settings.console_host, settings.console_port
    # an observer: on a busy machine the worker comes first (the console catches up after)
    with contextlib.suppress(OSError):
        os.nice(10)
    if not console.access.open and not console.access.tokens:
        log.error(
            "the console shows personal data: set ENRICHER_LOOKUP_TOKENS (or "
            "ENRICHER_LOOKUP_TOKENS_FILE), or ENRICHER_LOOKUP_OPEN=true on a local machine"
        )
        return 2

    def ready(_: object) -> None:
        print(f"{READY_LINE}: http://{host}:{port}/", flush=True)

    web.run_app(console.application(), host=host, port=port, print=ready)
    return 0
