"""Dead-letter records (CONTRACT "Dead letters"): the error, where the record came from, and
the original payload, so nothing is lost."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

import orjson

from enrichers.timestamps import format_iso_ms
from streams.records import InRecord

MAX_PAYLOAD_BYTES: Final = 512 * 1024
"""Dead letters stay under Kafka's default 1 MB record limit: a larger payload is cut, and the
record says so, with the original's size, its SHA-256 and where it is in the source topic."""


def dead_letter_value(record: InRecord, code: str, message: str, failed_at_ms: int) -> bytes:
    payload: str | None
    encoding = "utf-8"
    value = record.value
    truncated = value is not None and len(value) > MAX_PAYLOAD_BYTES
    if value is None:
        payload = None
    else:
        kept = value[:MAX_PAYLOAD_BYTES]
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            payload = base64.b64encode(kept).decode("ascii")
            encoding = "base64"
        else:  # a cut may split the last character
            payload = kept.decode("utf-8", errors="ignore")
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
    if truncated and value is not None:
        document["payloadTruncated"] = True
        document["payloadBytes"] = len(value)
        document["payloadSha256"] = hashlib.sha256(value).hexdigest()
    return orjson.dumps(document)
