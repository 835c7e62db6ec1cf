"""Policies, routing and lookups through the running worker (SPEC R26-R30, CONTRACT)."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.dev.stack import StackEndpoints
from tests.pipeline import Pipeline

IP_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("ip-1", {"type": "page", "messageId": "v4", "options": {"ip": "203.0.113.77"}}),
    (
        "ip-1",
        {"type": "page", "messageId": "v6", "options": {"ip": "2001:db8:85a3::8a2e:370:7334"}},
    ),
    ("ip-1", {"type": "page", "messageId": "mapped", "context": {"ip": "::ffff:198.51.100.9"}}),
    ("ip-1", {"type": "page", "messageId": "request-v4", "requestIp": "192.0.2.200"}),
    ("ip-1", {"type": "page", "messageId": "request-v6", "requestIp": "2001:db8::1"}),
    ("ip-1", {"type": "page", "messageId": "invalid", "options": {"ip": "unknown"}}),
    ("ip-1", {"type": "page", "messageId": "none"}),
]
ABSENT = "<absent>"
EXPECTED_IP: dict[str, dict[str, str]] = {
    "keep": {
        "v4": "203.0.113.77",
        "v6": "2001:db8:85a3::8a2e:370:7334",
        "mapped": "::ffff:198.51.100.9",
        "request-v4": "192.0.2.200",
        "request-v6": ABSENT,
        "invalid": "unknown",
        "none": ABSENT,
    },
    "truncate": {
        "v4": "203.0.113.0",
        "v6": "2001:db8:85a3::",
        "mapped": "::ffff:198.51.100.0",
        "request-v4": "192.0.2.0",
        "request-v6": ABSENT,
        "invalid": "unknown",
        "none": ABSENT,
    },
    "mask:2:3": {
        "v4": "203.0.x.x",
        "v6": "2001:db8:85a3:0:0:x:x:x",  # R28: without leading zeros
        "mapped": "::ffff:198.51.x.x",
        "request-v4": "192.0.x.x",
        "request-v6": ABSENT,
        "invalid": "unknown",
        "none": ABSENT,
    },
    "drop": dict.fromkeys(
        ("v4", "v6", "mapped", "request-v4", "request-v6", "invalid", "none"), ABSENT
    ),
}
# each policy on each output, in two runs of two pipelines side by side
RUNS = [("truncate", "mask:2:3"), ("drop", "keep"), ("mask:2:3", "drop"), ("keep", "truncate")]


def ips(records: list[Any]) -> dict[str, str]:
    return {r.json()["messageId"]: r.json()["context"].get("ip", ABSENT) for r in records}


@pytest.mark.parametrize("pair", [RUNS[:2], RUNS[2:]], ids=["run-1", "run-2"])
def test_ip_policies_on_both_outputs(
    stack: StackEndpoints, tmp_path: Path, pair: list[tuple[str, str]]
) -> None:
    pipelines = []
    for number, (warehouse, destinations) in enumerate(pair):
        pipe = Pipeline(stack, tmp_path / str(number))
        (tmp_path / str(number)).mkdir()
        pipe.extra_env.update(
            ENRICHER_IP_POLICY_WAREHOUSE=warehouse, ENRICHER_IP_POLICY_DESTINATIONS=destinations
        )
        pipe.start_worker(wait=False)
        pipelines.append(pipe)
    try:
        for pipe in pipelines:
            pipe.workers[0].wait_ready()
            pipe.produce_json(IP_EVENTS)
        for pipe, (warehouse, destinations) in zip(pipelines, pair, strict=True):
            assert ips(pipe.read("warehouse", len(IP_EVENTS))) == EXPECTED_IP[warehouse]
            assert ips(pipe.read("destinations", len(IP_EVENTS))) == EXPECTED_IP[destinations]
    finally:
        for pipe in pipelines:
            pipe.stop_all()


def test_collect_ipv6_takes_ipv6_request_addresses(pipeline: Pipeline) -> None:
    pipeline.extra_env["ENRICHER_COLLECT_IPV6"] = "true"
    pipeline.start_worker()
    pipeline.produce_json(IP_EVENTS)
    collected = ips(pipeline.read("warehouse", len(IP_EVENTS)))
    assert collected["request-v6"] == "2001:db8::1"
    assert collected["request-v4"] == "192.0.2.200"


def test_context_traits_policy_fills_from_profile_and_device_cache(pipeline: Pipeline) -> None:
    pipeline.extra_env["ENRICHER_CONTEXT_TRAITS"] = "plan,company"
    pipeline.start_worker()
    # the profile of u1 is built on one device...
    pipeline.produce_json(
        [
            (
                "laptop",
                {
                    "type": "identify",
                    "userId": "u1",
                    "messageId": "w1",
                    "traits": {"plan": "pro", "company": "Acme", "email": "a@acme"},
                },
            )
        ]
    )
    pipeline.read("warehouse", 1)
    # ...and read on another, in a later batch; an anonymous phone uses its own cache
    pipeline.produce_json(
        [
            ("tablet", {"type": "identify", "userId": "u1", "messageId": "w2"}),
            ("tablet", {"type": "track", "event": "Opened", "messageId": "w3"}),
            (
                "tablet",
                {
                    "type": "page",
                    "messageId": "w4",
                    "options": {"traits": {"plan": "trial-override"}},
                },
            ),
            ("phone", {"type": "setUserTraits", "value": {"plan": "free", "email": "p@x"}}),
            ("phone", {"type": "track", "event": "Opened", "messageId": "w5"}),
            ("watch", {"type": "track", "event": "Opened", "messageId": "w6"}),
        ]
    )
    warehouse = {r.json()["messageId"]: r.json() for r in pipeline.read("warehouse", 6)}
    destinations = {r.json()["messageId"]: r.json() for r in pipeline.read("destinations", 6)}
    assert "traits" not in warehouse["w2"]["context"]  # identify is left alone
    assert warehouse["w3"]["context"]["traits"] == {"plan": "pro", "company": "Acme"}
    assert warehouse["w4"]["context"]["traits"] == {"plan": "trial-override", "company": "Acme"}
    assert warehouse["w5"]["context"]["traits"] == {"plan": "free"}
    assert "traits" not in warehouse["w6"]["context"]  # nothing known, nothing added
    assert all("traits" not in m["context"] for m in destinations.values())  # R25


WEIRD_KEY = "we ird/k{e}y%?#ü\n:end"


@pytest.mark.parametrize("pipeline", ["single", "cluster"], indirect=True)
def test_lookups_over_http_and_the_command(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    pipeline.produce_json(
        [
            (
                WEIRD_KEY,
                {
                    "type": "track",
                    "event": "e",
                    "messageId": "l1",
                    "receivedAt": "2026-11-01T10:00:00.000Z",
                },
            ),
            (
                WEIRD_KEY,
                {
                    "type": "identify",
                    "userId": "u/1",
                    "traits": {"plan": "pro"},
                    "messageId": "l2",
                    "receivedAt": "2026-11-01T10:00:01.000Z",
                },
            ),
            (
                WEIRD_KEY,
                {
                    "type": "group",
                    "groupId": "acme",
                    "traits": {"seats": 3},
                    "messageId": "l3",
                    "receivedAt": "2026-11-01T10:00:02.000Z",
                },
            ),
            (
                "other",
                {
                    "type": "identify",
                    "userId": "u/1",
                    "traits": {"age": 30},
                    "messageId": "l4",
                    "receivedAt": "2026-11-01T10:00:03.000Z",
                },
            ),
        ]
    )
    warehouse = {r.json()["messageId"]: r.json() for r in pipeline.read("warehouse", 4)}
    anonymous_id = warehouse["l1"]["anonymousId"]

    quoted = urllib.parse.quote(WEIRD_KEY, safe="")
    status, device = worker.get(f"/devices/{quoted}")
    assert status == 200
    assert device == {
        "device": WEIRD_KEY,
        "anonymousId": anonymous_id,
        "userId": "u/1",
        "traits": {"plan": "pro"},
        "groupId": "acme",
        "groupTraits": {"seats": 3},
        "lastSeen": "2026-11-01T10:00:02.000Z",
    }
    status, user = worker.get("/users/u%2F1")
    assert status == 200
    assert user == {
        "userId": "u/1",
        "traits": {"plan": "pro", "age": 30},
        "anonymousIds": [warehouse["l4"]["anonymousId"], anonymous_id],
        "firstSeen": "2026-11-01T10:00:01.000Z",
        "lastSeen": "2026-11-01T10:00:03.000Z",
    }
    status, group = worker.get("/groups/acme")
    assert (status, group["traits"]) == (200, {"seats": 3})
    for path in ("/devices/nobody", "/users/nobody", "/groups/nobody"):
        status, body = worker.get(path)
        assert status == 404 and body["error"]["code"] == "not_found"

    def command(*args: str) -> tuple[int, Any]:
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", "lookup", *args],
            env=pipeline.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.returncode, orjson.loads(result.stdout)

    assert command("device", WEIRD_KEY) == (0, device)
    assert command("user", "u/1") == (0, user)
    assert command("group", "acme") == (0, group)
    code, body = command("device", "nobody")
    assert code == 1 and body["error"]["code"] == "not_found"
