"""Options routing and context (R23, R24, R26, R27)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from enrichers.ip import collectable_request_ip

TOP_LEVEL_OPTIONS: Final = frozenset({"userId", "anonymousId", "timestamp", "messageId"})
"""R23: options that go to the top level of the message, not into ``context``."""

_NOT_CONTEXT: Final = TOP_LEVEL_OPTIONS | {"integrations", "context"}


@dataclass(frozen=True, slots=True)
class CallContext:
    context: dict[str, Any]
    integrations: dict[str, Any]


def build_context(
    raw_context: Mapping[str, Any] | None,
    raw_integrations: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    request_ip: str | None,
    collect_ipv6: bool,
) -> CallContext:
    """R23: ``options.context`` merges over the raw context, then every other option ``k``
    becomes ``context.k`` (so ``options.traits`` replaces ``options.context.traits``, R24,
    and ``options.ip`` beats ``options.context.ip``, R26). ``options.integrations`` merges
    over the raw integrations."""
    context = dict(raw_context) if raw_context else {}
    options_context = options.get("context")
    if options_context:
        context.update(options_context)
    for key, value in options.items():
        if key not in _NOT_CONTEXT:
            context[key] = value
    integrations = dict(raw_integrations) if raw_integrations else {}
    options_integrations = options.get("integrations")
    if options_integrations:
        integrations.update(options_integrations)
    # R26: an explicit IP, "" and "0.0.0.0" included, is kept as given; R27 otherwise.
    if context.get("ip") is None:
        context.pop("ip", None)
        if request_ip and collectable_request_ip(request_ip, collect_ipv6):
            context["ip"] = request_ip
    return CallContext(context, integrations)


def fill_context_traits(
    context: dict[str, Any], known_traits: Mapping[str, Any], keys: tuple[str, ...]
) -> None:
    """R30: ``context.traits`` gets the named keys (or all, for ``*``) of the user's known
    traits; keys given on the call win. Nothing is added when nothing is known."""
    if keys == ("*",):
        filled = dict(known_traits)
    else:
        filled = {key: known_traits[key] for key in keys if key in known_traits}
    if not filled:
        return
    given = context.get("traits")
    context["traits"] = {**filled, **given} if isinstance(given, dict) else filled
