"""Records in and out of Kafka, as plain data (no Faust types beyond this edge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

RECORD_OVERHEAD_BYTES: Final = 128
"""What a record batch holding one record adds to its key and value (the batch header, 61
bytes, and the record's own varints), with room to spare."""


@dataclass(frozen=True, slots=True)
class InRecord:
    """One consumed raw record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes


def fits(record: OutRecord, max_record_bytes: int) -> bool:
    """Whether the broker accepts ``record`` under a ``max_record_bytes`` limit."""
    return len(record.value) + len(record.key or b"") + RECORD_OVERHEAD_BYTES <= max_record_bytes
