"""Valid events, hostile values (issue 16): structurally valid raw events whose values come
from the far corners of their types (timestamps over the whole ISO-8601 space and past it,
IPs of every family with zones and odd forms, huge and tiny numbers, deep but allowed nesting,
any unicode), under every IP and context-traits policy, through the rules and the sink
runner's preparation. A valid event always gives its messages (R35: bounds never drop one,
R31: no timestamp does), they are JSON with ISO-8601 times, and nothing raises (the worker
would make that a ``processing_error``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enrichers import IpPolicy, Policy, Status
from enrichers.raw import MAX_DEPTH, MAX_EVENT_BYTES
from streams.worker.batch import with_enrichment
from streams.worker.records import InRecord
from tests.rules import Rules, parsed, sink_runner

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
IP_POLICIES = ["keep", "drop", "truncate", "truncate:0:0", "truncate:32:128", "mask", "mask:4:8"]

zones = st.sampled_from([None, UTC, timezone(timedelta(hours=14))]) | st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)


def _iso(moment: datetime, form: int) -> str:
    text = moment.isoformat()
    if form == 1:
        return text.replace("+00:00", "Z")
    if form == 2:
        return moment.date().isoformat()
    if form == 3:
        return text + "123456" if "." in text else text
    return text


timestamps = (
    st.builds(_iso, st.datetimes(timezones=zones), st.integers(0, 3))
    | st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59.999-14:00",
            "9999-12-31T23:59:59.999999Z",
            "2024-03-01T24:00:00Z",
            "2024-W09-5",
            "not a date",
            "",
        ]
    )
    | st.text(max_size=30)
)

ips = (
    st.ip_addresses().map(str)
    | st.builds(lambda a, z: f"{a}%{z}", st.ip_addresses(v=6).map(str), st.text(min_size=1))
    | st.sampled_from(
        [
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "0.0.0.0",
            "",
            "::",
            "fe80::1%eth0",
            "1.2.3.4%eth0",
            "01.02.03.004",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "[::1]",
            "1.2.3.4:8080",
        ]
    )
    | st.text(max_size=40)
)

numbers = (
    st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-7, 5e-324, 1.7976931348623157e308, -0.0, 1e21, 2**53 + 1])
)

scalars = st.none() | st.booleans() | numbers | st.text(max_size=40)


def nested(depth: int) -> st.SearchStrategy[Any]:
    """An object nested ``depth`` levels (MAX_DEPTH is allowed)."""
    inner: st.SearchStrategy[Any] = scalars
    for _ in range(depth - 1):
        inner = st.dictionaries(st.text(max_size=5), inner, min_size=1, max_size=2)
    return st.dictionaries(st.text(max_size=5), inner, min_size=1, max_size=2)


payloads = st.dictionaries(st.text(max_size=12), scalars | nested(3), max_size=6) | st.integers(
    1, MAX_DEPTH - 2
).flatmap(nested)
ids = st.none() | st.text(max_size=40) | numbers.filter(lambda n: not isinstance(n, bool))


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["identify", "track", "page", "screen", "group", "alias"]))
    event: dict[str, Any] = {"type": kind}
    if kind == "track":
        event["event"] = draw(st.text(min_size=1, max_size=40))
    for name, values in (
        ("userId", ids),
        ("anonymousId", ids),
        ("groupId", ids),
        ("previousId", ids),
        ("timestamp", timestamps),
        ("sentAt", timestamps),
        ("receivedAt", timestamps),
        ("messageId", st.text(max_size=40)),
        ("requestIp", ips),
        ("traits", payloads),
        ("properties", payloads),
    ):
        if draw(st.booleans()):
            event[name] = draw(values)
    context: dict[str, Any] = {}
    if draw(st.booleans()):
        context["ip"] = draw(ips)
    if draw(st.booleans()):
        context["traits"] = draw(payloads)
    if draw(st.booleans()):
        context["deep"] = draw(nested(MAX_DEPTH - 3))
    if context:
        event["context"] = context
    if draw(st.booleans()):
        event["options"] = {"ip": draw(ips), "timestamp": draw(timestamps)}
    return event


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(
    st.lists(hostile_events(), min_size=1, max_size=4),
    st.sampled_from(IP_POLICIES),
    st.sampled_from(IP_POLICIES),
    st.sampled_from([(), ("*",), ("plan", "email")]),
    st.booleans(),
)
def test_valid_events_with_hostile_values_always_give_their_messages(
    events: list[dict[str, Any]],
    warehouse_ip: str,
    destinations_ip: str,
    context_traits: tuple[str, ...],
    collect_ipv6: bool,
) -> None:
    policy = Policy(
        collect_ipv6=collect_ipv6,
        ip_warehouse=IpPolicy.parse(warehouse_ip),
        ip_destinations=IpPolicy.parse(destinations_ip),
        context_traits=context_traits,
    )
    rules = Rules(policy, user_traits={"u": {"plan": "pro", "email": "a@example.com"}})
    runner = sink_runner(IpPolicy.parse(destinations_ip))
    for offset, body in enumerate(events):
        encoded = orjson.dumps(body)
        if len(encoded) > MAX_EVENT_BYTES:
            continue  # too_large is for raw values over 32 KB, not a value's fault
        outcome = rules.apply(parsed(encoded), "device", offset, 1_700_000_000_000)
        if outcome.status is Status.DUPLICATE:
            continue
        assert outcome.status is Status.MESSAGE and outcome.warehouse is not None
        if outcome.one_body and outcome.destinations is not None:  # serialised once
            spliced = with_enrichment(
                orjson.dumps(outcome.destinations), outcome.warehouse["_enrichment"]
            )
            assert spliced == orjson.dumps(outcome.warehouse)
        for message in (outcome.warehouse, outcome.destinations):
            if message is None:
                continue
            assert ISO_UTC.match(message["timestamp"]) and ISO_UTC.match(message["receivedAt"])
            value = orjson.dumps(message)
            records, failures = runner.prepare([InRecord("t", 0, offset, None, value, 0)])
            assert failures == [] and len(records) <= 1


def test_the_extreme_times_of_the_issue_give_messages() -> None:
    rules = Rules()
    for offset, body in enumerate(
        [
            {"type": "track", "event": "e", "sentAt": "9999-12-31T23:59:59Z",
             "timestamp": "2024-01-01T00:00:00Z"},
            {"type": "track", "event": "e", "receivedAt": "0001-01-01T00:00:01Z",
             "sentAt": "2024-01-01T00:00:01Z", "timestamp": "2024-01-01T00:00:00Z"},
            {"type": "page", "timestamp": "0005-05-05T05:05:05Z"},
        ]
    ):  # fmt: skip
        outcome = rules.apply(parsed(body), "device", offset, 1_700_000_000_000)
        assert outcome.status is Status.MESSAGE and outcome.warehouse is not None
        assert ISO_UTC.match(outcome.warehouse["timestamp"])
