"""R36, R37, R38 through the running worker and a sink (issue 19): placeholder ids never stored
or linked, consent remembered and enforced on events.destinations and on a sink mapped to a
category, consent-gated persistence, pseudonymised fields."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import redis

from streams.state.keys import KeySpace
from tests.e2e.test_sink_files import published_lines
from tests.pipeline import Pipeline
from tests.sinks import start_file_sink, wait_for

PII_KEY = "an-hmac-key-for-the-tests"


def consent(**categories: bool) -> dict[str, object]:
    return {"consent": {"categoryPreferences": categories}}


def test_r36_a_placeholder_user_id_is_never_stored_nor_linked(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    pipeline.produce_json(
        [
            ("dev-p", {"type": "identify", "userId": "undefined", "messageId": "p-1"}),
            ("dev-p", {"type": "identify", "userId": "u1", "messageId": "p-2"}),
        ]
    )
    first, second = sorted(
        (r.json() for r in pipeline.read("warehouse", 2)), key=lambda m: m["messageId"]
    )
    assert first["userId"] is None and second["userId"] == "u1"
    assert first["anonymousId"] == second["anonymousId"]  # no rotation
    assert worker.get("/users/undefined")[0] == 404  # no giant profile
    status, user = worker.get("/users/u1")
    assert status == 200 and user["anonymousIds"] == [second["anonymousId"]]
    _, stats = worker.get("/stats")
    assert stats["blockedIds"] == {"undefined": 1}


def test_r37_consent_is_remembered_and_enforced_on_destinations_and_a_mapped_sink(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.extra_env["ENRICHER_DESTINATIONS_CONSENT_CATEGORIES"] = "marketing"
    pipeline.start_worker()
    files = tmp_path / "files"
    start_file_sink(pipeline, files, CONSENT_CATEGORIES="analytics")
    both = consent(marketing=True, analytics=True)
    withdrawn = consent(marketing=False, analytics=True)
    pipeline.produce_json(
        [
            ("dev-c", {"type": "page", "messageId": "c-1", "context": both}),
            ("dev-c", {"type": "track", "event": "E", "messageId": "c-2"}),  # remembered
            ("dev-c", {"type": "track", "event": "E", "messageId": "c-3", "context": withdrawn}),
            ("dev-c", {"type": "track", "event": "E", "messageId": "c-4"}),  # withdrawn
            ("dev-n", {"type": "track", "event": "E", "messageId": "n-1"}),  # never given
        ]
    )
    warehouse = {r.json()["messageId"]: r.json() for r in pipeline.read("warehouse", 5)}
    assert set(warehouse) == {"c-1", "c-2", "c-3", "c-4", "n-1"}  # the warehouse is unmapped
    assert warehouse["c-2"]["context"]["consent"]["categoryPreferences"]["marketing"] is True
    destinations = {r.json()["messageId"] for r in pipeline.read("destinations", 2, timeout=20)}
    assert destinations == {"c-1", "c-2"}
    # the file sink reads the destinations topic, and wants analytics: both of them have it
    assert wait_for(lambda: len(published_lines(files)) >= 2, 60)
    assert {str(line["messageId"]) for line in published_lines(files)} == {"c-1", "c-2"}


def test_r37_a_device_without_identity_consent_keeps_no_record(pipeline: Pipeline) -> None:
    pipeline.extra_env["ENRICHER_IDENTITY_CONSENT_CATEGORY"] = "identity"
    pipeline.start_worker()
    anonymous = {"type": "identify", "userId": "ux", "traits": {"email": "x@y"}}
    consenting = {"type": "identify", "userId": "uy", "context": consent(identity=True)}
    pipeline.produce_json(
        [
            ("dev-x", {**anonymous, "messageId": "x-1"}),
            ("dev-y", {**consenting, "messageId": "y-1"}),
        ]
    )
    assert len(pipeline.read("warehouse", 2)) == 2
    client = redis.Redis.from_url(pipeline.redis_url)
    keys = KeySpace(pipeline.app_id)
    assert client.hexists(keys.device_bucket("dev-y"), "dev-y")
    assert not client.hexists(keys.device_bucket("dev-x"), "dev-x")  # nothing stored about it
    assert client.exists(*keys.profile("user", "ux")) == 0


def test_r38_pseudonymised_fields_are_hmacs_where_named_and_clear_elsewhere(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.extra_env.update(
        ENRICHER_PII_KEY=PII_KEY,
        ENRICHER_PII_FIELDS_DESTINATIONS="traits.email,userId",
    )
    pipeline.start_worker()
    files = tmp_path / "files"
    start_file_sink(pipeline, files, PII_FIELDS="traits.phone")
    pipeline.produce_json(
        [("dev-h", {"type": "identify", "userId": "u-h", "messageId": "h-1",
                    "traits": {"email": "h@example.com", "phone": "+1 555 0100"}})]
    )  # fmt: skip

    def mac(value: str) -> str:
        return hmac.new(PII_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()

    [warehouse] = [r.json() for r in pipeline.read("warehouse", 1)]
    [destinations] = [r.json() for r in pipeline.read("destinations", 1)]
    assert warehouse["traits"]["email"] == "h@example.com" and warehouse["userId"] == "u-h"
    assert destinations["traits"]["email"] == mac("h@example.com")
    assert destinations["userId"] == mac("u-h")
    assert destinations["traits"]["phone"] == "+1 555 0100"
    assert wait_for(lambda: len(published_lines(files)) >= 1, 60)
    [line] = published_lines(files)
    assert line["traits"]["phone"] == mac("+1 555 0100")  # the sink's own field  # type: ignore[index]
