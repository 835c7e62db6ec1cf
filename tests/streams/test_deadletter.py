"""Dead-letter records (CONTRACT "Dead letters")."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from streams.worker.deadletter import dead_letter_value
from streams.worker.records import InRecord, OutRecord, fits


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


LIMIT = 1024 * 1024


@pytest.mark.parametrize(
    "value",
    [b"a" * 2 * LIMIT, b"\x01" * 900_000, b'"' * 900_000, b"\xff" * 900_000],
    ids=["plain", "control-bytes", "quotes", "not-utf8"],
)
def test_a_dead_letter_never_exceeds_the_record_limit_whatever_its_payload_inflates_to(
    value: bytes,
) -> None:
    record = InRecord("events.raw", 0, 9, b"device-key", value, 0)
    encoded = dead_letter_value(record, "too_large", "big", 0, LIMIT)
    assert fits(OutRecord("events.deadletter", record.key, encoded), LIMIT)
    document = orjson.loads(encoded)
    if document["payloadEncoding"] == "base64":
        kept = base64.b64decode(document["payload"])
    else:
        kept = document["payload"].encode("utf-8")
    assert value.startswith(kept) and len(kept) > LIMIT // 8  # as much as fits is kept
    assert document["payloadTruncated"] is True
    assert document["payloadBytes"] == len(value)
    assert document["payloadSha256"] == hashlib.sha256(value).hexdigest()
    assert document["source"]["offset"] == 9


def test_missing_value_and_key() -> None:
    document = letter(None, key=None)
    assert document["payload"] is None
    assert document["source"]["key"] is None  # type: ignore[index]
