"""Field-by-field comparison of enriched messages, matched by messageId (``enricher replay
--mode diff``): counts of differing fields, and a few examples of each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

ABSENT: Final = "<absent>"
EXAMPLES_PER_FIELD: Final = 3


def flatten(message: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted paths to leaf values (lists and empty objects are leaves)."""
    for key, value in message.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{path}.")
        else:
            yield path, value


def field_differences(existing: Mapping[str, Any], replayed: Mapping[str, Any]) -> dict[str, Any]:
    """``{path: (existing value, replayed value)}`` for every path whose values differ; a path
    on one side only has :data:`ABSENT` on the other."""
    left = dict(flatten(existing))
    right = dict(flatten(replayed))
    return {
        path: (left.get(path, ABSENT), right.get(path, ABSENT))
        for path in sorted(left.keys() | right.keys())
        if left.get(path, ABSENT) != right.get(path, ABSENT)
    }


@dataclass
class TopicDiff:
    """The comparison of one output topic."""

    topic: str
    compared: int = 0
    identical: int = 0
    different: int = 0
    only_in_replay: int = 0
    only_in_existing: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    missing_examples: list[str] = field(default_factory=list)

    def compare(self, message_id: str, existing: Mapping[str, Any], replayed: Any) -> None:
        self.compared += 1
        differences = field_differences(existing, replayed)
        if not differences:
            self.identical += 1
            return
        self.different += 1
        for path, (before, after) in differences.items():
            self.fields[path] += 1
            examples = self.examples.setdefault(path, [])
            if len(examples) < EXAMPLES_PER_FIELD:
                examples.append({"messageId": message_id, "existing": before, "replay": after})

    def missing(self, message_id: str, side: str) -> None:
        if side == "replay":
            self.only_in_replay += 1
        else:
            self.only_in_existing += 1
        if len(self.missing_examples) < EXAMPLES_PER_FIELD:
            self.missing_examples.append(f"{message_id} (only in {side})")

    @property
    def differences(self) -> int:
        return self.different + self.only_in_replay + self.only_in_existing

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "compared": self.compared,
            "identical": self.identical,
            "different": self.different,
            "onlyInReplay": self.only_in_replay,
            "onlyInExisting": self.only_in_existing,
            "fields": {
                path: {"count": count, "examples": self.examples[path]}
                for path, count in self.fields.most_common()
            },
            "missingExamples": self.missing_examples,
        }

    def lines(self) -> Iterator[str]:
        yield (
            f"{self.topic}: {self.compared} compared, {self.identical} identical, "
            f"{self.different} different, {self.only_in_replay} only in the replay, "
            f"{self.only_in_existing} only in the existing output"
        )
        for path, count in self.fields.most_common():
            yield f"  {path}: {count} messages differ"
            for shown in self.examples[path]:
                yield (
                    f"    {shown['messageId']}: existing {shown['existing']!r} "
                    f"-> replay {shown['replay']!r}"
                )
        for example in self.missing_examples:
            yield f"  {example}"
