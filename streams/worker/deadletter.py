"""Dead-letter records (CONTRACT "Dead letters"): the error, where the record came from, and
the original payload, so nothing is lost.

A dead letter never exceeds the record limit (``ENRICHER_MAX_RECORD_BYTES``, the broker's
``message.max.bytes``): a payload that would not fit, once JSON escaping or base64 has inflated
it, is cut until the encoded record fits, and the record says so, with the original's size,
its SHA-256 and where it is in the source topic."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

import orjson

from enrichers.timestamps import format_iso_ms
from streams.worker.records import RECORD_OVERHEAD_BYTES, InRecord

DEFAULT_RECORD_LIMIT: Final = 1024 * 1024
"""Kafka's default ``message.max.bytes`` (less its 12-byte log overhead)."""


def dead_letter_value(
    record: InRecord,
    code: str,
    message: str,
    failed_at_ms: int,
    max_record_bytes: int = DEFAULT_RECORD_LIMIT,
    **extra: Any,
) -> bytes:
    """The dead letter of ``record``; ``extra`` fields are added at the top level (a sink adds
    ``"sink"``). Its value plus the key stays within ``max_record_bytes``."""
    key: str | None = None
    if record.key is not None:
        key = record.key.decode("utf-8", errors="replace")
    document: dict[str, Any] = {
        "error": {"code": code, "message": message},
        "source": {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": key,
            "timestamp": format_iso_ms(record.timestamp_ms),
        },
        "payload": None,
        "payloadEncoding": "utf-8",
        "failedAt": format_iso_ms(failed_at_ms),
        **extra,
    }
    value = record.value
    if value is None:
        return orjson.dumps(document)
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        document["payloadEncoding"] = "base64"
    budget = max_record_bytes - RECORD_OVERHEAD_BYTES - len(record.key or b"")
    kept = len(value)
    while True:
        document["payload"] = _payload(value[:kept], document["payloadEncoding"])
        if kept < len(value):
            document["payloadTruncated"] = True
            document["payloadBytes"] = len(value)
            document["payloadSha256"] = hashlib.sha256(value).hexdigest()
        encoded = orjson.dumps(document)
        if len(encoded) <= budget or kept == 0:
            return encoded
        # shrink in proportion to the inflation seen, a little more each round
        kept = max(0, min(kept - 1, int(kept * budget / len(encoded) * 0.98) - 64))


def _payload(kept: bytes, encoding: str) -> str:
    if encoding == "base64":
        return base64.b64encode(kept).decode("ascii")
    return kept.decode("utf-8", errors="ignore")  # a cut may split the last character
