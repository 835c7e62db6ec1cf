"""``webhook``: POSTs batches of messages as JSON (``{"batch": [...], "sentAt": ...}``, the
shape of Segment's batch API) to a configured URL.

2xx is success. 5xx, 408, timeouts and connection errors are retried (the runner backs off);
429 too, after at least its ``Retry-After``. Any other answer (400, 401, 404...) is permanent:
the batch goes to the sink's dead letters with the status and the start of the answer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp
import orjson

from enrichers.regulations import Regulation
from enrichers.timestamps import format_iso_ms
from streams.sinks.base import (
    PermanentSinkError,
    RegulationUnsupported,
    RetryableSinkError,
    Sink,
    SinkOption,
    SinkRecord,
)
from streams.sinks.options import json_object, positive_float, positive_int


def _url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL")
    return value


def retry_after_seconds(header: str | None, now: datetime | None = None) -> float | None:
    """An HTTP ``Retry-After``: delay-seconds or an HTTP date; None when absent or unreadable."""
    if header is None or not header.strip():
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _optional_url(value: str) -> str:
    return _url(value) if value.strip() else ""


class WebhookSink(Sink):
    name: ClassVar[str] = "webhook"
    options: ClassVar[Sequence[SinkOption]] = (
        SinkOption("url", _url, required=True, help="where batches are POSTed"),
        SinkOption("headers", json_object, {}, 'extra headers, a JSON object: {"X-Key": "abc"}'),
        SinkOption("timeout", positive_float, 10.0, "seconds for one request (then retried)"),
        SinkOption("batch_size", positive_int, 100, "most messages in one request"),
        SinkOption(
            "regulations_url",
            _optional_url,
            "",
            "R39: where each regulation is POSTed as JSON (ids included); empty: regulations "
            "are reported unsupported",
        ),
    )

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._session: aiohttp.ClientSession | None = None

    @property
    def batch_size(self) -> int:
        return min(int(self.config["batch_max"]), int(self.config["batch_size"]))

    async def start(self) -> None:
        headers = {"Content-Type": "application/json", **self.config["headers"]}
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self.config["timeout"])
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def regulate(self, regulation: Regulation) -> Mapping[str, Any]:
        """R39: the regulation, as its topic holds it, POSTed to ``regulations_url`` (the
        destination deletes or suppresses on its side); 2xx is done."""
        url = self.config["regulations_url"]
        if not url:
            raise RegulationUnsupported(
                "ENRICHER_SINK_WEBHOOK_REGULATIONS_URL is not set: the destination is not told"
            )
        await self._post(url, orjson.dumps(regulation.to_json()))
        return {"posted": 1}

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        body = orjson.dumps(
            {
                "batch": [record.message for record in batch],
                "sentAt": format_iso_ms(int(time.time() * 1000)),
            }
        )
        await self._post(self.config["url"], body)

    async def _post(self, url: str, body: bytes) -> None:
        assert self._session is not None, "start() first"
        try:
            async with self._session.post(url, data=body) as response:
                status = response.status
                if 200 <= status < 300:
                    return
                answer = (await response.text(errors="replace"))[:500]
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableSinkError(f"POST {url}: {exc!r}") from exc
        what = f"POST {url}: HTTP {status}: {answer}"
        if status == 429:
            raise RetryableSinkError(what, retry_after=retry_after)
        if status >= 500 or status == 408:
            raise RetryableSinkError(what, retry_after=retry_after)
        raise PermanentSinkError(what)
