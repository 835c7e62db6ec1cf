"""Dead-letter records (CONTRACT "Dead letters")."""

from __future__ import annotations

import base64
import hashlib

import orjson

from streams.deadletter import MAX_PAYLOAD_BYTES, dead_letter_value
from streams.records import InRecord


def letter(value: bytes | None, key: bytes | None = b"k") -> dict[str, object]:
    record = InRecord("events.raw", 3, 1234, key, value, 1_764_000_000_000)
    document = orjson.loads(dead_letter_value(record, "invalid_json", "bad", 1_764_000_001_000))
    assert isinstance(document, dict)
    return document


def test_dead_letter_has_the_contract_fields() -> None:
    assert letter(b"{oops") == {
        "error": {"code": "invalid_json", "message": "bad"},
        "source": {
            "topic": "events.raw",
            "partition": 3,
            "offset": 1234,
            "key": "k",
            "timestamp": "2025-11-24T16:00:00.000Z",
        },
        "payload": "{oops",
        "payloadEncoding": "utf-8",
        "failedAt": "2025-11-24T16:00:01.000Z",
    }


def test_bytes_that_are_not_utf8_are_kept_in_base64() -> None:
    document = letter(b"\xff\xfe{")
    assert document["payloadEncoding"] == "base64"
    assert base64.b64decode(str(document["payload"])) == b"\xff\xfe{"


def test_oversized_payload_is_cut_with_its_size_hash_and_source() -> None:
    value = b"a" * (2 * MAX_PAYLOAD_BYTES)
    record = InRecord("events.raw", 0, 9, None, value, 0)
    encoded = dead_letter_value(record, "too_large", "big", 0)
    document = orjson.loads(encoded)
    assert len(encoded) < 1_000_000
    assert document["payload"] == "a" * MAX_PAYLOAD_BYTES
    assert document["payloadTruncated"] is True
    assert document["payloadBytes"] == len(value)
    assert document["payloadSha256"] == hashlib.sha256(value).hexdigest()
    assert document["source"]["offset"] == 9


def test_missing_value_and_key() -> None:
    document = letter(None, key=None)
    assert document["payload"] is None
    assert document["source"]["key"] is None  # type: ignore[index]
