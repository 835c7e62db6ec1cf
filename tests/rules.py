"""Raw events through the pure rules as the worker runs them: decoded from JSON, one state per
device (CONTRACT "Device key"), in input order. The one way the core's tests feed events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from enrichers import (
    DEFAULT_POLICY,
    EMPTY_DEVICE,
    DeviceState,
    EventOutcome,
    IpPolicy,
    Policy,
    RawEvent,
    Source,
    enrich_event,
    parse_raw_event,
    prepare_event,
)
from streams.settings import Settings
from streams.sinks import Sink, SinkRecord
from streams.sinks.options import COMMON_OPTIONS
from streams.sinks.runner import SinkRunner


def parsed(body: Mapping[str, Any] | bytes) -> RawEvent:
    """A raw event as the worker decodes it; the test fails when it would be dead-lettered."""
    event = parse_raw_event(body if isinstance(body, bytes) else orjson.dumps(body))
    assert isinstance(event, RawEvent), event
    return event


def raw(**fields: Any) -> RawEvent:
    return parsed(fields)


class Rules:
    """Device states kept across events, as Redis keeps them for the worker."""

    def __init__(
        self,
        policy: Policy = DEFAULT_POLICY,
        topic: str = "events.raw",
        user_traits: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.policy = policy
        self.topic = topic
        self.user_traits = user_traits
        self.states: dict[str, DeviceState] = {}

    def apply(
        self,
        event: RawEvent,
        key: str | None,
        offset: int,
        timestamp_ms: int = 0,
        partition: int = 0,
    ) -> EventOutcome:
        """One event, from ``topic/partition/offset`` with record key ``key``."""
        source = Source(self.topic, partition, offset, key, timestamp_ms)
        prepared = prepare_event(event, source, self.policy)  # R36, the device key
        device = prepared.device
        state = self.states.get(device.key, EMPTY_DEVICE)
        outcome = enrich_event(
            state, prepared.event, device, prepared.source, self.policy, self.user_traits
        )
        if outcome.keeps_record:
            self.states[device.key] = outcome.state
        else:  # R37: the worker deletes it
            self.states.pop(device.key, None)
        return outcome


class _Preparing(Sink):
    name: ClassVar[str] = "preparing"

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        return None


def sink_runner(ip_policy: IpPolicy) -> SinkRunner:
    """A sink runner whose preparation (R28, R29) tests can call: the sink writes nothing."""
    config = {option.name: option.default for option in COMMON_OPTIONS}
    config["ip_policy"] = ip_policy
    return SinkRunner(Settings(), _Preparing.name, _Preparing(config))
