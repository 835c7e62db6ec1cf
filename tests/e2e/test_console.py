"""The live console (issue 20) in headless Chromium (Debian's, driven by playwright), on the
real worker: events arrive live, a filtered URL lists exactly its events, an opened event
shows its three forms with the differences marked, dead letters show code and payload, and
nothing is served without a token. The screenshots in the README are taken here."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from streams.dev.stack import free_port
from tests.e2e.test_collector_browser import CHROMIUM, CHROMIUM_ARGS, _chromium_or_skip
from tests.pipeline import LOOKUP_TOKEN, CommandProcess, Pipeline

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs"
USER = "u-console"


@dataclass
class ConsoleProcess(CommandProcess):
    port: int = 0

    what: ClassVar[str] = "console"
    ready_line: ClassVar[str] = "Console ready"

    @classmethod
    def start(cls, pipeline: Pipeline) -> ConsoleProcess:
        port = free_port()
        env = {**pipeline.env(), "ENRICHER_CONSOLE_PORT": str(port)}
        process = cls.launch(["console"], env, pipeline.workdir / "console.log")
        console = cls(process, pipeline.workdir / "console.log", port)
        console.wait_ready()
        return console

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, path: str, token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


@pytest.fixture
def console(pipeline: Pipeline) -> Iterator[ConsoleProcess]:
    _chromium_or_skip()
    pipeline.extra_env["ENRICHER_IP_POLICY_WAREHOUSE"] = "truncate"
    pipeline.produce_json([])  # the topics, as a worker creates them
    pipeline.start_worker()
    process = ConsoleProcess.start(pipeline)
    yield process
    process.stop()


def events() -> list[tuple[str | None, dict[str, Any]]]:
    context = {"ip": "203.0.113.77", "traits": {"plan": "pro"}}
    return [
        (
            "dev-console",
            {
                "type": "identify",
                "userId": USER,
                "traits": {"plan": "pro", "email": "c@example.com"},
                "context": context,
                "messageId": "c-identify",
            },
        ),
        ("dev-console", {"type": "track", "event": "Viewed", "messageId": "c-track"}),
        ("dev-other", {"type": "page", "name": "Home", "messageId": "o-page"}),
        ("dev-bad", {"type": "track", "messageId": "c-bad"}),  # no event: a dead letter
    ]


def test_console_shows_events_live_filters_by_url_and_compares_the_forms(
    console: ConsoleProcess, pipeline: Pipeline
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            # a person logs in through the form (a session cookie, HttpOnly)
            page.goto(console.url + "/")
            page.fill("input[name=token]", LOOKUP_TOKEN)
            page.click("button[type=submit]")
            expect(page.locator("#events")).to_be_visible()
            cookie = next(c for c in page.context.cookies() if c["name"] == "enricher_console")
            assert cookie["httpOnly"]

            # opened before the events are produced: they arrive live
            with ThreadPoolExecutor(1) as producer:  # playwright's loop runs in this thread
                producer.submit(pipeline.produce_json, events()).result()
            rows = page.locator("#events tbody tr.row")
            expect(rows).to_have_count(4, timeout=60_000)
            identify = rows.filter(has_text="identify")
            expect(identify.locator(".badge", has_text="traits cached")).to_be_visible(
                timeout=30_000
            )
            expect(identify.locator(".badge", has_text="IP policy applied")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "console-live.png"))

            # opening an event: raw, warehouse, destinations, differences marked
            identify.click()
            warehouse = page.locator("#pane-warehouse")
            expect(warehouse.locator('[data-path="context.ip"].changed')).to_be_visible()
            destinations = page.locator("#pane-destinations")
            expect(destinations.locator('[data-path="context.traits"].removed')).to_be_visible()
            expect(page.locator("#pane-raw")).to_contain_text("203.0.113.77")
            page.screenshot(path=str(SCREENSHOTS / "console-event.png"), full_page=True)

            # a dead letter: its code, message and payload
            rows.filter(has_text="dead letter").click()
            dead = page.locator("#deadletter")
            expect(dead).to_contain_text("missing_event")
            expect(dead).to_contain_text('"messageId":"c-bad"')
            expect(dead).to_contain_text("enricher deadletter requeue --code missing_event")

            # a shared view: the query filters what is already in the window
            page.goto(f"{console.url}/?userId={USER}")
            expect(rows).to_have_count(2, timeout=30_000)
            ids = {rows.nth(n).get_attribute("data-id") for n in range(2)}
            assert all(row_id and "/" in row_id for row_id in ids)
            expect(rows.filter(has_text="o-page")).to_have_count(0)

            # the user view: what the lookup returns and the user's recent events
            page.goto(f"{console.url}/users/{USER}")
            expect(page.locator("#profile-lookup")).to_contain_text("c@example.com")
            expect(rows).to_have_count(2, timeout=30_000)
        finally:
            browser.close()


def test_console_needs_a_token_as_a_bearer_header_or_a_session(console: ConsoleProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    for path in ("/", "/api/events", "/api/stream", "/api/health", f"/users/{USER}"):
        assert console.status(path) == 401, path
        assert console.status(path, token="wrong") == 401, path
    assert console.status("/api/events", token=LOOKUP_TOKEN) == 200
    assert console.status("/login") == 200
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                extra_http_headers={"Authorization": f"Bearer {LOOKUP_TOKEN}"}
            )
            page = context.new_page()
            response = page.goto(console.url + "/?type=track")
            assert response is not None and response.status == 200
            expect(page.locator("#filters select[name=type]")).to_have_value("track")
            expect(page.locator("#status")).to_contain_text("events")  # the stream answered
        finally:
            browser.close()
