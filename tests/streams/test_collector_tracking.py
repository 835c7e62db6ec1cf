"""The collector's request shaping (streams/collector/tracking.py): pure, in milliseconds."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import orjson
import pytest

from enrichers import device_key
from streams.collector.browser import browser_settings
from streams.collector.tracking import (
    ENDPOINTS,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Accepted,
    Refused,
    TrackingRequest,
    basic_auth_user,
    client_ip,
    shape_request,
)

KEY = "wk"
NOW = "2026-11-29T01:00:00.000Z"


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def shape(
    endpoint: str,
    body: Any,
    authorization: str | None = None,
    cookie: str | None = None,
    request_ip: str = "203.0.113.7",
) -> Accepted | Refused:
    counter = itertools.count(1)
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    request = TrackingRequest(endpoint, raw, authorization, request_ip, NOW, cookie)
    return shape_request(request, {KEY}, lambda: f"generated-{next(counter)}")


def accepted(result: Accepted | Refused) -> list[tuple[bytes, dict[str, Any]]]:
    assert isinstance(result, Accepted), result
    return [(record.key, orjson.loads(record.value)) for record in result.records]


def refused(result: Accepted | Refused) -> tuple[int, str]:
    assert isinstance(result, Refused), result
    return result.status, result.code


def test_basic_auth_user_is_the_write_key_before_the_colon() -> None:
    assert basic_auth_user(basic("wk")) == "wk"
    assert basic_auth_user(basic("wk", "ignored")) == "wk"
    assert basic_auth_user("Bearer token") is None
    assert basic_auth_user("Basic !!!") is None
    assert basic_auth_user(None) is None


def test_a_write_key_in_the_header_or_the_body_authenticates() -> None:
    message = {"userId": "u", "event": "E"}
    assert accepted(shape("track", message, basic(KEY)))
    assert accepted(shape("track", {**message, "writeKey": KEY}))
    assert accepted(shape("batch", {"batch": [{**message, "type": "track"}], "writeKey": KEY}))


def test_an_unknown_or_missing_write_key_is_401() -> None:
    message = {"userId": "u", "event": "E"}
    assert refused(shape("track", message, basic("nope"))) == (401, "unauthorized")
    assert refused(shape("track", {**message, "writeKey": "nope"})) == (401, "unauthorized")
    assert refused(shape("track", message)) == (401, "unauthorized")
    # a wrong header is not rescued by a right body key
    assert refused(shape("track", {**message, "writeKey": KEY}, basic("nope")))[0] == 401


def test_every_single_endpoint_sets_the_type_of_its_path() -> None:
    body = {"userId": "u", "event": "E", "groupId": "g", "previousId": "p", "type": "screen"}
    for endpoint, expected in {"identify": "identify", "i": "identify", "t": "track"}.items():
        [(_, value)] = accepted(shape(endpoint, body, basic(KEY)))
        assert value["type"] == expected
    assert {"b", "batch", "import", "a", "s", "g", "p"} <= ENDPOINTS


def test_an_unknown_endpoint_is_404() -> None:
    assert refused(shape("nope", {"userId": "u"}, basic(KEY))) == (404, "not_found")


def test_a_batch_becomes_one_record_per_message_in_order() -> None:
    batch = [{"type": "track", "event": f"E{n}", "anonymousId": "a"} for n in range(5)]
    records = accepted(shape("batch", {"batch": batch}, basic(KEY)))
    assert [value["event"] for _, value in records] == [f"E{n}" for n in range(5)]


def test_an_empty_batch_is_accepted_with_no_records() -> None:
    assert accepted(shape("batch", {"batch": []}, basic(KEY))) == []


def test_the_collector_sets_received_at_request_ip_and_a_missing_message_id() -> None:
    body = {"userId": "u", "event": "E", "receivedAt": "1999", "requestIp": "1.1.1.1"}
    [(_, value)] = accepted(shape("track", body, basic(KEY)))
    assert value["receivedAt"] == NOW  # the client's say does not count
    assert value["requestIp"] == "203.0.113.7"
    assert value["messageId"] == "generated-1"
    [(_, kept)] = accepted(shape("track", {**body, "messageId": "m-1"}, basic(KEY)))
    assert kept["messageId"] == "m-1"


def test_the_write_key_is_not_written_to_the_record() -> None:
    [(_, value)] = accepted(shape("track", {"userId": "u", "event": "E", "writeKey": KEY}))
    assert "writeKey" not in value


def test_a_batchs_sent_at_context_and_integrations_apply_to_messages_without_their_own() -> None:
    body = {
        "batch": [
            {"type": "track", "event": "E", "userId": "u"},
            {"type": "track", "event": "E", "userId": "u", "context": {"ip": "x"}, "sentAt": "s"},
        ],
        "context": {"library": {"name": "lib"}},
        "integrations": {"All": False},
        "sentAt": "2026-11-29T00:59:59.000Z",
    }
    [(_, first), (_, second)] = accepted(shape("batch", body, basic(KEY)))
    assert first["context"] == {"library": {"name": "lib"}}
    assert first["integrations"] == {"All": False}
    assert first["sentAt"] == "2026-11-29T00:59:59.000Z"
    assert second["context"] == {"ip": "x"} and second["sentAt"] == "s"


def test_the_record_key_is_the_device_cookie_else_the_anonymous_id_else_the_user_id() -> None:
    assert device_key("cookie", {"anonymousId": "a", "userId": "u"}) == "cookie"
    assert device_key(None, {"anonymousId": "a", "userId": "u"}) == "a"
    assert device_key(None, {"anonymousId": "", "userId": "u"}) == "u"
    assert device_key(None, {"anonymousId": 0, "userId": 42}) == "42"
    assert device_key(None, {"userId": None}) is None
    [(key, _)] = accepted(shape("page", {"anonymousId": "a", "userId": "u"}, basic(KEY)))
    assert key == b"a"


def test_a_message_without_ids_is_refused_unless_the_request_has_a_device_cookie() -> None:
    assert refused(shape("page", {"name": "Home"}, basic(KEY))) == (400, "missing_id")
    assert refused(shape("page", {"anonymousId": "", "userId": None}, basic(KEY)))[1] == (
        "missing_id"
    )
    [(key, _)] = accepted(shape("page", {"name": "Home"}, basic(KEY), cookie="dev-1"))
    assert key == b"dev-1"


def test_a_message_over_32_kb_is_refused_whole_request() -> None:
    big = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "properties": {"x": "y" * MAX_MESSAGE_BYTES},
    }
    assert refused(shape("track", big, basic(KEY))) == (400, "too_large")
    result = shape("batch", {"batch": [{**big, "properties": {}}, big]}, basic(KEY))
    assert refused(result) == (400, "too_large")
    assert isinstance(result, Refused) and "batch[1]" in result.message


def test_a_message_whose_record_would_pass_32_kb_is_refused() -> None:
    # under the limit as sent, over it with the collector's fields: the worker would
    # dead-letter it as too_large, so the client hears it now
    size = MAX_MESSAGE_BYTES - 60
    body = {"userId": "u", "event": "E", "properties": {"x": "y" * size}}
    assert len(orjson.dumps(body)) < MAX_MESSAGE_BYTES
    assert refused(shape("track", body, basic(KEY))) == (400, "too_large")


def test_a_batch_request_over_500_kb_is_refused() -> None:
    message = {"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 10_000}}
    count = MAX_BATCH_BYTES // 10_000 + 1
    assert refused(shape("batch", {"batch": [message] * count}, basic(KEY))) == (
        400,
        "too_large",
    )
    assert accepted(shape("batch", {"batch": [message] * (count - 3)}, basic(KEY)))


@pytest.mark.parametrize(
    ("endpoint", "body", "code"),
    [
        ("track", b"{nope", "invalid_json"),
        ("track", b"[1]", "invalid_json"),
        ("track", b"", "invalid_json"),
        ("batch", orjson.dumps({"batch": {"type": "track"}}), "invalid_batch"),
        ("batch", orjson.dumps({"batch": [1]}), "invalid_message"),
        ("batch", orjson.dumps({"batch": [{"type": "reset", "userId": "u"}]}), "invalid_type"),
        ("batch", orjson.dumps({"batch": [{"userId": "u"}]}), "invalid_type"),
        ("track", orjson.dumps({"userId": "u"}), "missing_event"),
        ("identify", orjson.dumps({"userId": "u", "traits": "t"}), "invalid_field"),
        ("identify", orjson.dumps({"userId": {"id": 1}}), "missing_id"),
    ],
)
def test_bad_input_is_refused_with_400_and_a_code(endpoint: str, body: bytes, code: str) -> None:
    assert refused(shape(endpoint, body, basic(KEY))) == (400, code)


def test_a_refusal_body_is_json_with_the_code_and_message() -> None:
    result = shape("track", b"{", basic(KEY))
    assert isinstance(result, Refused)
    body = orjson.loads(result.body())
    assert body["success"] is False and body["code"] == "invalid_json" and body["message"]


def test_client_ip_is_the_socket_address_or_the_proxy_headers_last_entry() -> None:
    assert client_ip("198.51.100.4", None) == "198.51.100.4"
    assert client_ip("10.0.0.1", "203.0.113.9") == "203.0.113.9"
    assert client_ip("10.0.0.1", "1.2.3.4, 203.0.113.9") == "203.0.113.9"
    assert client_ip("10.0.0.1", "garbage") == "10.0.0.1"
    assert client_ip("::ffff:192.0.2.1", None) == "192.0.2.1"  # R27 sees it as IPv4
    assert client_ip("10.0.0.1", "[2001:db8::1]:443") == "2001:db8::1"
    assert client_ip(None, None) == ""


def test_browser_settings_point_analytics_js_at_the_given_host() -> None:
    settings = browser_settings("wk", "collector.example.com/v1", "https")
    segment = settings["integrations"]["Segment.io"]
    assert segment == {**segment, "apiKey": "wk", "apiHost": "collector.example.com/v1"}
    assert segment["protocol"] == "https"
    assert settings["metrics"]["sampleRate"] == 0  # nothing posted to Segment
