"""The collector over HTTP, against the real broker: auth, limits, batch splitting, the fields
it sets, the record key, CORS and the device cookie (issue 9; CONTRACT "Raw events")."""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams.collector.tracking import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from streams.dev.stack import StackEndpoints
from tests.collector import WRITE_KEY, CollectorProcess, basic, read_matching
from tests.pipeline import OutputRecord, Pipeline

pytestmark = pytest.mark.e2e

SHOP = "http://shop.test"


@pytest.fixture(scope="module")
def topics(stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline(stack, tmp_path_factory.mktemp("collector"))


@pytest.fixture(scope="module")
def collector(topics: Pipeline) -> Iterator[CollectorProcess]:
    process = CollectorProcess.start(
        {
            **topics.env(),
            "ENRICHER_COLLECTOR_WRITE_KEYS": f"other-key,{WRITE_KEY}",
            "ENRICHER_COLLECTOR_IP_HEADER": "X-Forwarded-For",
            "ENRICHER_COLLECTOR_DEVICE_COOKIE": "did",
            "ENRICHER_COLLECTOR_CORS_ORIGINS": SHOP,
        },
        topics.workdir / "collector.log",
    )
    yield process
    process.stop()


def tag() -> str:
    return uuid.uuid4().hex[:12]


def raw_records(
    topics: Pipeline, tagged: str, count: int, sentinels: bool = False
) -> list[OutputRecord]:
    """The raw records whose properties.tag or anonymousId/userId carry ``tagged`` (without
    the sentinels of :func:`nothing_written` unless asked)."""

    def match(value: Any) -> bool:
        if not sentinels and str(value.get("anonymousId")).startswith("sentinel-"):
            return False
        ids = (value.get("anonymousId"), value.get("userId"), value.get("previousId"))
        return (value.get("properties") or {}).get("tag") == tagged or any(
            isinstance(i, str) and tagged in i for i in ids
        )

    return read_matching(topics.stack.bootstrap, topics.topic("raw"), match, count)


def nothing_written(collector: CollectorProcess, topics: Pipeline, tagged: str) -> bool:
    """No record of the refused requests tagged ``tagged``: a sentinel accepted after them is
    the only tagged record once it is there (the collector answers after the broker
    acknowledged, so a refused request's records would be in the log before it)."""
    sentinel = {"type": "page", "anonymousId": f"sentinel-{tagged}"}
    assert collector.post("/v1/page", sentinel).status == 200
    found = raw_records(topics, tagged, 1, sentinels=True)
    return [r.json()["anonymousId"] for r in found] == [f"sentinel-{tagged}"]


def test_a_batch_becomes_one_raw_record_per_message_keyed_by_its_device(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    before = datetime.now(UTC)
    reply = collector.post(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "event": "A", "anonymousId": f"anon-{t}", "messageId": f"m-{t}"},
                {"type": "identify", "userId": f"user-{t}", "traits": {"plan": "pro"}},
                {"type": "page", "name": "Home", "anonymousId": f"anon2-{t}", "userId": f"u-{t}"},
                {"type": "alias", "userId": f"new-{t}", "previousId": f"old-{t}"},
            ],
            "context": {"library": {"name": "test"}},
            "sentAt": "2026-11-29T01:00:00.000Z",
        },
    )
    assert reply.status == 200 and reply.json() == {"success": True}
    records = raw_records(topics, t, 4)
    by_type = {r.json()["type"]: r for r in records}
    assert len(records) == 4 and set(by_type) == {"track", "identify", "page", "alias"}
    # CONTRACT "Device key": the anonymousId, else the userId
    assert by_type["track"].key == f"anon-{t}".encode()
    assert by_type["identify"].key == f"user-{t}".encode()
    assert by_type["page"].key == f"anon2-{t}".encode()
    assert by_type["alias"].key == f"new-{t}".encode()
    for record in records:
        value = record.json()
        received = datetime.fromisoformat(value["receivedAt"].replace("Z", "+00:00"))
        assert before.replace(microsecond=0) <= received <= datetime.now(UTC)
        assert value["requestIp"] == "127.0.0.1"
        assert value["sentAt"] == "2026-11-29T01:00:00.000Z"  # the batch's, for R31
        assert value["context"] == {"library": {"name": "test"}}  # the batch's context
        assert "writeKey" not in value
        if value["type"] != "track":
            assert uuid.UUID(value["messageId"]).version == 4  # generated when missing
    assert by_type["track"].json()["messageId"] == f"m-{t}"  # kept when given
    generated = {r.json()["messageId"] for r in records if r.json()["type"] != "track"}
    assert len(generated) == 3


def test_records_of_one_device_keep_their_order_on_one_partition(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    batch = [
        {"type": "track", "event": "E", "anonymousId": f"a-{t}", "properties": {"n": n}}
        for n in range(30)
    ]
    assert collector.post("/v1/b", {"batch": batch}).status == 200
    records = raw_records(topics, t, 30)
    assert len({r.partition for r in records}) == 1
    ordered = sorted(records, key=lambda r: r.offset)
    assert [r.json()["properties"]["n"] for r in ordered] == list(range(30))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("identify", "identify"),
        ("track", "track"),
        ("page", "page"),
        ("screen", "screen"),
        ("group", "group"),
        ("alias", "alias"),
        ("i", "identify"),
        ("t", "track"),
        ("p", "page"),
        ("s", "screen"),
        ("g", "group"),
        ("a", "alias"),
    ],
)
def test_each_endpoint_writes_its_message_type(
    collector: CollectorProcess, topics: Pipeline, path: str, expected: str
) -> None:
    t = tag()
    body = {
        "anonymousId": f"a-{t}",
        "event": "Clicked",
        "groupId": "g1",
        "userId": f"u-{t}",
        "previousId": f"p-{t}",
        "writeKey": WRITE_KEY,
    }
    # text/plain, without Authorization: as Analytics.js posts (the key in the body)
    reply = collector.request(
        f"/v1/{path}", orjson.dumps(body), {"Content-Type": "text/plain"}, "POST"
    )
    assert reply.status == 200, reply.body
    [record] = raw_records(topics, t, 1)
    assert record.json()["type"] == expected


def test_a_gzip_body_is_accepted(collector: CollectorProcess, topics: Pipeline) -> None:
    t = tag()
    body = gzip.compress(orjson.dumps({"batch": [{"type": "page", "anonymousId": f"a-{t}"}]}))
    reply = collector.post("/v1/batch", body, {"Content-Encoding": "gzip"})
    assert reply.status == 200
    assert len(raw_records(topics, t, 1)) == 1


def test_an_unknown_write_key_is_refused_with_401_and_nothing_is_written(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    message = {"type": "track", "event": "E", "anonymousId": f"a-{t}"}
    in_header = collector.request("/v1/track", message, basic("wrong"), "POST")
    in_body = collector.request("/v1/track", {**message, "writeKey": "wrong"}, {}, "POST")
    without = collector.request("/v1/batch", {"batch": [message]}, {}, "POST")
    for reply in (in_header, in_body, without):
        assert reply.status == 401 and reply.json()["code"] == "unauthorized"
    assert nothing_written(collector, topics, t)
    other_key = collector.request("/v1/batch", {"batch": [message]}, basic("other-key"), "POST")
    assert other_key.status == 200
    assert len(raw_records(topics, t, 1)) == 1


def test_a_message_over_32_kb_is_refused_with_400(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    big = {"type": "track", "event": "E", "anonymousId": f"a-{t}", "properties": {"x": "y" * 33000}}
    single = collector.post("/v1/track", big)
    in_batch = collector.post("/v1/batch", {"batch": [{**big, "properties": {}}, big]})
    for reply in (single, in_batch):
        assert reply.status == 400 and reply.json()["code"] == "too_large"
    assert "batch[1]" in in_batch.json()["message"]
    assert nothing_written(collector, topics, t)  # a request is accepted or refused as a whole
    fits = {**big, "properties": {"x": "y" * (MAX_MESSAGE_BYTES - 500)}}
    assert collector.post("/v1/track", fits).status == 200


def test_a_batch_over_500_kb_is_refused_with_400(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    message = {"type": "track", "event": "E", "anonymousId": f"a-{t}", "properties": {}}
    message["properties"] = {"x": "y" * 20_000}
    count = MAX_BATCH_BYTES // 20_000 + 2
    reply = collector.post("/v1/batch", {"batch": [message] * count})
    assert reply.status == 400 and reply.json()["code"] == "too_large"
    assert nothing_written(collector, topics, t)
    assert collector.post("/v1/batch", {"batch": [message] * (count - 5)}).status == 200


def test_bad_bodies_are_refused_with_400_and_a_json_error(collector: CollectorProcess) -> None:
    cases = {
        "invalid_json": ("/v1/track", b"{not json"),
        "invalid_batch": ("/v1/batch", orjson.dumps({"batch": "no"})),
        "invalid_type": ("/v1/batch", orjson.dumps({"batch": [{"type": "reset", "userId": "u"}]})),
        "missing_event": ("/v1/track", orjson.dumps({"userId": "u"})),
        "invalid_field": ("/v1/identify", orjson.dumps({"userId": "u", "traits": [1]})),
    }
    for code, (path, body) in cases.items():
        reply = collector.post(path, body)
        assert (reply.status, reply.json()["code"]) == (400, code), reply.body


def test_a_message_without_user_or_anonymous_id_is_refused_unless_a_device_cookie_names_it(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    message = {"type": "track", "event": "E", "properties": {"tag": t}}
    refused = collector.post("/v1/track", message)
    assert refused.status == 400 and refused.json()["code"] == "missing_id"
    assert nothing_written(collector, topics, t)
    accepted = collector.post("/v1/track", message, {"Cookie": f"did=dev-{t}"})
    assert accepted.status == 200
    [record] = raw_records(topics, t, 1)
    assert record.key == f"dev-{t}".encode()


def test_the_device_cookie_keys_the_record_over_the_anonymous_id(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    message = {"type": "page", "anonymousId": f"a-{t}"}
    assert collector.post("/v1/p", message, {"Cookie": f"other=x; did=dev-{t}"}).status == 200
    [record] = raw_records(topics, t, 1)
    assert record.key == f"dev-{t}".encode()
    assert record.json()["anonymousId"] == f"a-{t}"


def test_request_ip_is_the_trusted_proxy_headers_last_entry(
    collector: CollectorProcess, topics: Pipeline
) -> None:
    t = tag()
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    spoofed = {"type": "track", "event": "E", "anonymousId": f"a-{t}", "requestIp": "1.1.1.1"}
    assert collector.post("/v1/track", spoofed, forwarded).status == 200
    [record] = raw_records(topics, t, 1)
    assert record.json()["requestIp"] == "203.0.113.9"


def test_cors_allows_the_configured_origins_with_credentials(
    collector: CollectorProcess,
) -> None:
    preflight = collector.request(
        "/v1/t",
        None,
        {
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        "OPTIONS",
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    message = {"type": "track", "event": "E", "anonymousId": f"a-{tag()}"}
    posted = collector.post("/v1/t", message, {"Origin": SHOP})
    assert posted.headers["Access-Control-Allow-Origin"] == SHOP
    elsewhere = collector.post("/v1/t", message, {"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in elsewhere.headers


def test_analytics_js_settings_point_back_at_the_collector(collector: CollectorProcess) -> None:
    reply = collector.request(f"/v1/projects/{WRITE_KEY}/settings", headers={"Origin": SHOP})
    assert reply.status == 200
    segment = reply.json()["integrations"]["Segment.io"]
    assert segment["apiHost"] == f"127.0.0.1:{collector.port}/v1"
    assert segment["protocol"] == "http" and segment["apiKey"] == WRITE_KEY
    assert collector.request("/v1/projects/nope/settings").status == 404


def test_an_issued_device_cookie_names_the_device_from_the_first_request_on(
    topics: Pipeline,
) -> None:
    issuing = CollectorProcess.start(
        {
            **topics.env(),
            "ENRICHER_COLLECTOR_DEVICE_COOKIE": "did",
            "ENRICHER_COLLECTOR_SET_DEVICE_COOKIE": "true",
        },
        topics.workdir / "issuing.log",
    )
    try:
        t = tag()
        first = issuing.post("/v1/t", {"type": "track", "event": "E", "anonymousId": f"a-{t}"})
        assert first.status == 200
        cookie = first.headers["Set-Cookie"]
        name_value = cookie.split(";")[0]
        assert name_value.startswith("did=") and "HttpOnly" in cookie and "Max-Age=" in cookie
        device = name_value.removeprefix("did=")
        second = issuing.post("/v1/p", {"type": "page", "userId": f"u-{t}"}, {"Cookie": name_value})
        assert second.status == 200 and "Set-Cookie" not in second.headers
        records = raw_records(topics, t, 2)
        assert {r.key for r in records} == {device.encode()}
    finally:
        issuing.stop()


def test_the_collector_refuses_to_start_without_write_keys(topics: Pipeline) -> None:
    log = topics.workdir / "nokeys.log"
    process = CollectorProcess.start(
        {**topics.env(), "ENRICHER_COLLECTOR_WRITE_KEYS": ""}, log, wait=False
    )
    deadline = time.monotonic() + 30
    while process.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.process.returncode == 2
    assert "ENRICHER_COLLECTOR_WRITE_KEYS" in log.read_text()


def test_stats_count_requests_messages_and_refusals_by_code(collector: CollectorProcess) -> None:
    before = collector.request("/stats").json()
    message = {"type": "track", "event": "E", "anonymousId": f"a-{tag()}"}
    assert collector.post("/v1/batch", {"batch": [message, message]}).status == 200
    assert collector.post("/v1/track", b"{").status == 400
    after = collector.request("/stats").json()
    assert after["requests"] == before["requests"] + 2  # Tracking API requests only
    assert after["acceptedRequests"] == before["acceptedRequests"] + 1
    assert after["messages"] == before["messages"] + 2
    assert after["refused"]["invalid_json"] == before["refused"].get("invalid_json", 0) + 1
