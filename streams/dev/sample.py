"""The bundled sample of raw events (``streams/sample/sample.jsonl``): all six message types,
control events and a few bad records, for ``make run``."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from enrichers import RawEvent, Rejection, parse_raw_event


@dataclass(frozen=True)
class SampleRecord:
    key: bytes | None
    value: bytes
    event: dict[str, Any] | None  # the raw event when the value is one

    @property
    def emits_message(self) -> bool:
        """Valid message events give one warehouse message each (R29)."""
        parsed = parse_raw_event(self.value)
        return isinstance(parsed, RawEvent) and not parsed.is_control

    @property
    def dead_letter(self) -> bool:
        return isinstance(parse_raw_event(self.value), Rejection)


def load_sample() -> list[SampleRecord]:
    records = []
    text = resources.files("streams.dev").joinpath("sample", "sample.jsonl").read_bytes()
    for line in text.splitlines():
        doc = orjson.loads(line)
        key = doc["key"].encode() if doc.get("key") else None
        event: dict[str, Any] | None = None
        if "value" in doc:
            event = doc["value"]
            if doc.get("padBytes"):
                event["properties"]["padding"] = "x" * doc["padBytes"]
            value = orjson.dumps(event)
        elif "text" in doc:
            value = doc["text"].encode()
        else:
            value = base64.b64decode(doc["base64"])
        records.append(SampleRecord(key, value, event))
    return records
