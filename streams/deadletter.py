"""Dead-letter records (CONTRACT "Dead letters"): the error, where the record came from, and
the original payload, so nothing is lost."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from enrichers.timestamps import format_iso_ms
from streams.records import InRecord


def dead_letter_value(record: InRecord, code: str, message: str, failed_at_ms: int) -> bytes:
    payload: str | None
    encoding = "utf-8"
    if record.value is None:
        payload = None
    else:
        try:
            payload = record.value.decode("utf-8")
        except UnicodeDecodeError:
            payload = base64.b64encode(record.value).decode("ascii")
            encoding = "base64"
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
        "payload": payload,
        "payloadEncoding": encoding,
        "failedAt": format_iso_ms(failed_at_ms),
    }
    return orjson.dumps(document)
