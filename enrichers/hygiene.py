"""R36: placeholder identifiers are absent. Buggy clients send ``"undefined"``, ``"null"`` or
``"[object Object]"`` as ids; taken at their word, every such device would become one giant
user. Such a value is treated as not given: never stored, never a rotation, never linked to a
profile, never a device key, and left out of the message.

:func:`without_placeholders` takes them out of a raw event before any rule sees it, so every
rule reads "not given" without knowing about placeholders."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from enrichers.raw import RawEvent

DEFAULT_PLACEHOLDERS: Final = (
    "null",
    "undefined",
    "nil",
    "none",
    "anonymous",
    "guest",
    "unknown",
    "nan",
    "[object object]",
)
PATTERN_LABEL: Final = "(pattern)"
"""How a value blocked by the regular expression is counted (the label set stays bounded)."""

_ID_FIELDS: Final = ("userId", "anonymousId", "groupId", "previousId")
_OPTION_IDS: Final = ("userId", "anonymousId")
_CONTROL_IDS: Final = frozenset({"setUserId", "setAnonymousId", "setGroupId"})


@dataclass(frozen=True, slots=True)
class Placeholders:
    """Which id strings are placeholders: the listed values (compared after trimming,
    ignoring case) and an optional regular expression (matched against the whole trimmed
    value, ignoring case). An empty list and no expression switch R36 off."""

    values: frozenset[str] = frozenset(DEFAULT_PLACEHOLDERS)
    pattern: str = ""
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = re.compile(self.pattern, re.IGNORECASE) if self.pattern else None
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def of(cls, values: tuple[str, ...], pattern: str = "") -> Placeholders:
        return cls(frozenset(v.strip().lower() for v in values if v.strip()), pattern)

    @property
    def active(self) -> bool:
        return bool(self.values or self._compiled)

    def label(self, value: Any) -> str | None:
        """The counted name of ``value`` when it is a placeholder: its list entry, or
        :data:`PATTERN_LABEL`; None for any other value (``""`` and numbers never are)."""
        if not isinstance(value, str) or not value:
            return None
        folded = value.strip().lower()
        if folded in self.values:
            return folded
        if self._compiled is not None and self._compiled.fullmatch(value.strip()):
            return PATTERN_LABEL
        return None


NO_PLACEHOLDERS: Final = Placeholders(frozenset())
DEFAULT: Final = Placeholders()


@dataclass(frozen=True, slots=True)
class Cleaned:
    event: RawEvent
    blocked: tuple[str, ...] = ()
    """The labels of the placeholders taken out (counted per value)."""


def without_placeholders(event: RawEvent, placeholders: Placeholders) -> Cleaned:
    """The event with every placeholder id taken out: top-level ids, ``options.userId`` and
    ``options.anonymousId``, and the value of ``setUserId``/``setAnonymousId``/``setGroupId``
    (such a control call then does nothing)."""
    if not placeholders.active:
        return Cleaned(event)
    blocked: list[str] = []
    fields: dict[str, Any] | None = None
    for name in _ID_FIELDS:
        label = placeholders.label(event.fields.get(name))
        if label is not None:
            blocked.append(label)
            fields = fields if fields is not None else dict(event.fields)
            del fields[name]
    options = event.options
    cleaned_options: dict[str, Any] | None = None
    for name in _OPTION_IDS:
        label = placeholders.label(options.get(name))
        if label is not None:
            blocked.append(label)
            cleaned_options = cleaned_options if cleaned_options is not None else dict(options)
            del cleaned_options[name]
    if cleaned_options is not None:
        fields = fields if fields is not None else dict(event.fields)
        fields["options"] = cleaned_options
    if event.type in _CONTROL_IDS:
        label = placeholders.label(event.fields.get("value"))
        if label is not None:
            blocked.append(label)
            fields = fields if fields is not None else dict(event.fields)
            fields["type"] = "expireCookies"  # R2: a call that changes nothing
    if fields is None:
        return Cleaned(event)
    return Cleaned(RawEvent(fields["type"], fields), tuple(blocked))


def named_device(key: str | None, placeholders: Placeholders) -> str | None:
    """A record key (a cookie, an install id) that is a placeholder names no device."""
    return None if placeholders.label(key) is not None else key


def placeholder_free(message: Mapping[str, Any], placeholders: Placeholders) -> dict[str, Any]:
    """A message (as the collector or the importer hold it) without its placeholder ids, for
    choosing its device key."""
    return {
        name: value
        for name, value in message.items()
        if name not in _ID_FIELDS or placeholders.label(value) is None
    }
