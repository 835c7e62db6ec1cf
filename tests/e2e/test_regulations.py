"""R39 end to end (issue 18): suppression and deletion of a user through the running worker, the
PostgreSQL loader, the webhook sink and the file sink; regulations kept across restarts and
reaching sinks started after them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.test_sink_files import published_lines
from tests.pipeline import LOOKUP_TOKEN, Pipeline, WorkerProcess
from tests.sinks import (
    SinkProcess,
    WebhookServer,
    query,
    scratch_database,
    start_file_sink,
    tables,
    wait_for,
)

pytestmark = pytest.mark.e2e

TARGET = "user-zed-0"
OTHERS = [f"user-kept-{n}" for n in range(1, 5)]
DEVICES_PER_USER = 3


@pytest.fixture
def dsn() -> Iterator[str]:
    with scratch_database() as url:
        yield url


def device(user: str, n: int) -> str:
    return f"dev-{user}-{n}"


def anonymous_id(user: str, n: int) -> str:
    return f"aid-{user}-{n}"


def history(user: str) -> list[tuple[str, dict[str, Any]]]:
    """A user on several devices: identified, then anonymous calls the device attributes."""
    events: list[tuple[str, dict[str, Any]]] = []
    for n in range(DEVICES_PER_USER):
        ids = {"anonymousId": anonymous_id(user, n)}
        events += [
            (
                device(user, n),
                {
                    "type": "identify",
                    "userId": user,
                    **ids,
                    "traits": {"email": f"{user}@example.com", "name": f"Name of {user}"},
                },
            ),
            (device(user, n), {"type": "track", "event": "Viewed", **ids}),
            (device(user, n), {"type": "page", "name": "Home", "userId": user, **ids}),
            (device(user, n), {"type": "group", "groupId": "g-shared", **ids}),
        ]
    return events


def needles(user: str) -> list[str]:
    """Everything that names the user: its id, anonymousIds, device keys, traits."""
    return [
        user,
        f"{user}@example.com",
        *(anonymous_id(user, n) for n in range(DEVICES_PER_USER)),
        *(device(user, n) for n in range(DEVICES_PER_USER)),
    ]


def redis_dump(url: str, app_id: str) -> dict[str, str]:
    """Every key of the app with its value, as text (SCAN, then each type's read)."""
    client = redis.Redis.from_url(url)
    dump: dict[str, str] = {}
    for raw_key in client.scan_iter(match=f"{app_id}:*", count=1000):
        key = raw_key.decode("utf-8", "replace")
        kind = client.type(raw_key).decode()
        value: Any
        if kind == "string":
            value = client.get(raw_key)
        elif kind == "hash":
            value = sorted(client.hgetall(raw_key).items())
        elif kind == "zset":
            value = client.zrange(raw_key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(raw_key))
        else:
            value = kind
        dump[key] = repr(value)
    client.close()
    return dump


def mentions(text: str, user: str) -> bool:
    return any(needle in text for needle in needles(user))


def warehouse_rows(dsn: str) -> dict[str, set[str]]:
    """Every row of every table, as text."""
    return {
        table: {row[0] for row in query(dsn, f'SELECT t::text FROM "{table}" t')}
        for table in tables(dsn)
    }


def status(pipeline: Pipeline, regulation_id: str) -> dict[str, Any]:
    done = pipeline.enricher("regulate", "status", regulation_id)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def regulate(pipeline: Pipeline, *args: str) -> str:
    done = pipeline.enricher("regulate", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_applied(pipeline: Pipeline, regulation_id: str, sinks: tuple[str, ...] = ()) -> Any:
    def applied() -> dict[str, Any] | None:
        found = status(pipeline, regulation_id)
        if found["state"]["state"] != "applied":
            return None
        if any(sink not in found["sinks"] for sink in sinks):
            return None
        return found

    found = wait_for(applied, 90, interval=0.5)
    assert found, status(pipeline, regulation_id)
    return found


def message_ids(pipeline: Pipeline, role: str, count: int = 0) -> set[str]:
    return {str(r.json().get("messageId")) for r in pipeline.read(role, count, timeout=30)}


def test_r39_delete_and_suppress_forgets_a_user_everywhere_and_keeps_everyone_else(
    pipeline: Pipeline, dsn: str
) -> None:
    pipeline.extra_env["ENRICHER_REGULATION_SETTLE_SECONDS"] = "1"
    worker = pipeline.start_worker()
    loader = SinkProcess.start(
        pipeline,
        "postgres",
        {"ENRICHER_SINK_POSTGRES_DSN": dsn, "ENRICHER_SINK_POSTGRES_BATCH_WITHIN": "0.05"},
        "postgres.log",
    )
    loader.wait_ready()
    everyone = [TARGET, *OTHERS]
    pipeline.produce_json([event for user in everyone for event in history(user)])
    per_user = DEVICES_PER_USER
    assert wait_for(
        lambda: (
            {"identifies", "tracks", "pages", "groups", "users"} <= tables(dsn)
            and query(dsn, "SELECT count(*) FROM groups")[0][0] == per_user * len(everyone)
            and query(dsn, "SELECT count(*) FROM users")[0][0] == len(everyone)
        ),
        90,
    ), loader.log()[-3000:]
    assert worker.get(f"/users/{TARGET}")[0] == 200
    redis_before = redis_dump(pipeline.redis_url, pipeline.app_id)
    rows_before = warehouse_rows(dsn)
    assert any(mentions(k + v, TARGET) for k, v in redis_before.items())

    regulation_id = regulate(pipeline, "delete-and-suppress", "--user-id", TARGET)
    found = wait_applied(pipeline, regulation_id, sinks=("postgres",))
    assert found["type"] == "delete-and-suppress" and found["ids"]["userIds"] == 1
    assert found["sinks"]["postgres"]["state"] == "applied"
    assert found["state"]["details"]["deleted"]["devices"] == DEVICES_PER_USER
    assert TARGET not in json.dumps(found)  # statuses hold counts, never ids

    # Redis: not one key or value of the app names the user; everyone else's is as it was
    redis_after = redis_dump(pipeline.redis_url, pipeline.app_id)
    named = [key for key, value in redis_after.items() if mentions(key + value, TARGET)]
    assert named == []
    state_before, state_after = (
        {k: v for k, v in dump.items() if ":suppressed:" not in k}  # the list is new
        for dump in (redis_before, redis_after)
    )
    assert state_after == {k: v for k, v in state_before.items() if not mentions(k + v, TARGET)}
    # lookups
    assert worker.get(f"/users/{TARGET}")[0] == 404
    for n in range(DEVICES_PER_USER):
        assert worker.get(f"/devices/{device(TARGET, n)}")[0] == 404
    assert all(worker.get(f"/users/{user}")[0] == 200 for user in OTHERS)
    # PostgreSQL: every table lost the user's rows, and only those
    rows_after = warehouse_rows(dsn)
    assert not [row for rows in rows_after.values() for row in rows if mentions(row, TARGET)]
    assert rows_after == {
        table: {row for row in rows if not mentions(row, TARGET)}
        for table, rows in rows_before.items()
    }

    # new events of the user, by userId, by one of its anonymousIds, by its device key: nothing
    sent_before = message_ids(pipeline, "warehouse")
    pipeline.produce_json(
        [
            ("dev-new", {"type": "identify", "userId": TARGET, "messageId": "zed-by-user-id"}),
            (None, {"type": "track", "event": "E", "anonymousId": anonymous_id(TARGET, 1)}),
            (device(TARGET, 2), {"type": "page", "messageId": "zed-by-device"}),
            (None, {"type": "track", "event": "Bad", "userId": TARGET, "timestamp": 7}),
            ("dev-marker", {"type": "track", "event": "E", "messageId": "marker"}),
        ]
    )
    assert wait_for(lambda: "marker" in message_ids(pipeline, "warehouse"), 60)
    new = message_ids(pipeline, "warehouse") - sent_before
    assert new == {"marker"}
    assert not (message_ids(pipeline, "destinations") - sent_before - {"marker"})
    assert message_ids(pipeline, "deadletter") == set()  # the malformed one too
    _, stats = worker.get("/stats")
    assert stats["suppressed"] == {"userId": 2, "anonymousId": 1, "device": 1}
    after_events = redis_dump(pipeline.redis_url, pipeline.app_id)
    assert not [key for key, value in after_events.items() if mentions(key + value, TARGET)]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics").read()
    assert b'enricher_suppressed_total{kind="userId"} 2.0' in metrics
    assert TARGET.encode() not in worker.log().encode()  # never logged

    # unsuppress: the user's events (its userId, its former anonymousIds) go through again
    unsuppress_id = regulate(pipeline, "unsuppress", "--user-id", TARGET)
    wait_applied(pipeline, unsuppress_id)
    pipeline.produce_json(
        [
            ("dev-back", {"type": "identify", "userId": TARGET, "messageId": "zed-back"}),
            (
                None,
                {"type": "page", "anonymousId": anonymous_id(TARGET, 0), "messageId": "zed-aid"},
            ),
        ]
    )
    assert wait_for(lambda: {"zed-back", "zed-aid"} <= message_ids(pipeline, "warehouse"), 60), (
        worker.log()[-3000:]
    )


def post(worker: WorkerProcess, path: str, body: Any, token: str | None = LOOKUP_TOKEN) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.web_port}{path}",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_r39_regulations_survive_a_restart_and_an_emptied_redis_and_reach_later_sinks(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.extra_env["ENRICHER_REGULATION_SETTLE_SECONDS"] = "1"
    pipeline.extra_env["ENRICHER_REGULATION_KEY"] = "a-regulation-key-for-the-tests"
    worker = pipeline.start_worker()
    pipeline.produce_json(history(TARGET) + history(OTHERS[0]))
    assert wait_for(lambda: worker.get(f"/users/{TARGET}")[0] == 200, 60)

    # over HTTP: authenticated as the lookups are
    body = {"type": "delete-and-suppress", "userIds": [TARGET]}
    assert post(worker, "/regulations", body, token=None)[0] == 401
    assert post(worker, "/regulations", body, token="wrong")[0] == 401
    assert post(worker, "/regulations", {"type": "erase", "userIds": [TARGET]})[0] == 400
    assert post(worker, "/regulations", {"type": "suppress", "userIds": ["null"]})[0] == 400
    accepted, answer = post(worker, "/regulations", body)
    assert accepted == 202
    regulation_id = answer["id"]
    assert worker.get(f"/regulations/{regulation_id}", token=None)[0] == 401
    assert wait_for(
        lambda: worker.get(f"/regulations/{regulation_id}")[1]["state"]["state"] == "applied", 60
    )
    assert worker.get("/regulations/no-such-id")[0] == 404

    # a restart, with Redis emptied meanwhile: the suppression list is rebuilt from the topics
    worker.stop()
    client = redis.Redis.from_url(pipeline.redis_url)
    deleted = [client.delete(key) for key in client.scan_iter(match=f"{pipeline.app_id}:*")]
    assert deleted
    restarted = pipeline.start_worker()
    assert "rebuilding it from 1 regulations" in restarted.log()
    pipeline.produce_json(
        [
            (None, {"type": "identify", "userId": TARGET, "messageId": "zed-1"}),
            (None, {"type": "page", "anonymousId": anonymous_id(TARGET, 2), "messageId": "zed-2"}),
            ("dev-marker", {"type": "track", "event": "E", "messageId": "marker"}),
        ]
    )
    assert wait_for(lambda: "marker" in message_ids(pipeline, "warehouse"), 60)
    assert not {"zed-1", "zed-2"} & message_ids(pipeline, "warehouse")
    _, stats = restarted.get("/stats")
    assert stats["suppressed"] == {"userId": 1, "anonymousId": 1}

    # sinks started after the regulation still get it, and report what they did
    with WebhookServer([200]) as hooks:
        webhook = SinkProcess.start(
            pipeline,
            "webhook",
            {
                "ENRICHER_SINK_WEBHOOK_URL": hooks.url,
                "ENRICHER_SINK_WEBHOOK_REGULATIONS_URL": f"{hooks.url}/regulations",
            },
            "webhook.log",
        )
        webhook.wait_ready()
        files = tmp_path / "files"
        start_file_sink(pipeline, files)
        found = wait_applied(pipeline, regulation_id, sinks=("webhook", "file"))
        # the backlog they read (produced before the deletion) does not bring the user back
        kept = len(history(OTHERS[0])) + 1  # and the marker
        assert wait_for(lambda: len(published_lines(files)) >= kept, 60)
        assert len(published_lines(files)) == kept
        assert not [line for line in published_lines(files) if mentions(str(line), TARGET)]
        assert wait_for(lambda: len([r for r in hooks.requests if r.path == "/hook"]) >= 1, 30)
        delivered = [m for r in hooks.requests if r.path == "/hook" for m in r.body["batch"]]
        assert not [m for m in delivered if mentions(str(m), TARGET)]
        posted = [r.body for r in hooks.requests if r.path == "/hook/regulations"]
        assert len(posted) == 1
        assert posted[0]["id"] == regulation_id and posted[0]["userIds"] == [TARGET]
    assert found["sinks"]["webhook"]["state"] == "applied"
    assert found["sinks"]["file"]["state"] == "unsupported"
    assert "not rewritten" in found["sinks"]["file"]["error"]
    listed = pipeline.enricher("regulate", "list")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [regulation_id]


def test_r39_regulate_reads_a_json_lines_file_and_names_a_bad_line(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    good = tmp_path / "ids.jsonl"
    good.write_text('{"userId": "u1"}\n\n{"anonymousId": "a1"}\n{"device": "d1"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"userId": "u1"}\n{"email": "x@example.com"}\n')
    refused = pipeline.enricher("regulate", "delete", "--file", str(bad))
    assert refused.returncode == 2 and "line 2" in refused.stderr
    assert "x@example.com" not in refused.stderr
    regulation_id = regulate(pipeline, "suppress", "--file", str(good), "--user-id", "u2")
    found = status(pipeline, regulation_id)
    assert found["ids"] == {"userIds": 2, "anonymousIds": 1, "devices": 1}
    assert found["state"] == {"state": "pending"}  # no worker runs
    from_stdin = pipeline.enricher("regulate", "unsuppress", "--file", "-", stdin='{"userId": 3}')
    assert from_stdin.returncode == 0
    assert status(pipeline, from_stdin.stdout.strip())["type"] == "unsuppress"
    assert pipeline.enricher("regulate", "status", "no-such-id").returncode == 1
