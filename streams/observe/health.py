"""Liveness and readiness of a worker: ``GET /healthz`` and ``GET /readyz``.

- ``/healthz``: the process is alive and its event loop turns (a heartbeat task stamps the
  time every second; a loop blocked for longer than ``STALL_SECONDS`` answers 503, as does a
  crashed raw consumer). Kubernetes restarts the pod on repeated failures.
- ``/readyz``: the worker has joined its consumer group (partitions assigned), and Redis and
  the broker answer now. Kubernetes routes lookups and scrapes to ready pods only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final

import faust
from faust.web import Request, Response, View

from streams.state.redis_client import RedisClient
from streams.worker.consumer import RawConsumer

STALL_SECONDS: Final = 15.0
CHECK_TIMEOUT_SECONDS: Final = 2.0


@dataclass
class Heartbeat:
    beat_at: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.beat_at = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.beat_at


class HealthChecks:
    def __init__(self, raw: RawConsumer, redis_client: RedisClient) -> None:
        self._raw = raw
        self._redis = redis_client
        self.heartbeat = Heartbeat()

    def alive(self) -> tuple[bool, dict[str, Any]]:
        age = self.heartbeat.age()
        crashed = self._raw.crash_reason is not None
        ok = age < STALL_SECONDS and not crashed
        return ok, {
            "status": "ok" if ok else "failing",
            "loopLagSeconds": round(age, 3),
            "crashed": crashed,
        }

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        assigned = self._raw.assigned
        checks["partitions"] = (
            "not joined"
            if assigned is None
            else [f"{topic}/{partition}" for topic, partition in sorted(assigned)]
        )
        checks["redis"] = await _check(self._redis.ping())
        consumer = self._raw.consumer
        checks["broker"] = "not started" if consumer is None else await _check(consumer.topics())
        ok = assigned is not None and checks["redis"] == "ok" and checks["broker"] == "ok"
        return ok, {"status": "ready" if ok else "not ready", **checks}


async def _check(awaitable: Any) -> str:
    try:
        await asyncio.wait_for(awaitable, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"failing: {exc!r}"
    return "ok"


def add_health_views(app: faust.App, checks: HealthChecks) -> None:
    async def healthz(view: View, request: Request, **_: Any) -> Response:
        ok, body = checks.alive()
        return view.json(body, status=200 if ok else 503)

    async def readyz(view: View, request: Request, **_: Any) -> Response:
        ok, body = await checks.ready()
        return view.json(body, status=200 if ok else 503)

    app.page("/healthz", name="healthz")(type("Healthz", (View,), {"get": healthz}))
    app.page("/readyz", name="readyz")(type("Readyz", (View,), {"get": readyz}))

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        checks.heartbeat.beat()
