"""Analytics.js (npm ``@segment/analytics-next``) in headless Chromium, on a local page of
another origin, pointed at the collector with nothing but ``cdnURL``: its calls reach
events.warehouse through the collector and the real worker, with the identity the rules
give (issue 9). Skips only when Chromium or the npm package cannot be installed."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.collector import WRITE_KEY, CollectorProcess, read_matching
from tests.pipeline import Pipeline

pytestmark = pytest.mark.e2e

BROWSER_PROJECT = Path(__file__).resolve().parents[1] / "browser"
BUNDLES = BROWSER_PROJECT / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # without these, Chromium's own background connections fail on a closed network and
    # take the page's connections down with them
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PAGE = """<!doctype html>
<html><head><title>shop</title>
<script src="/analytics-next/bundles/index.js"></script>
<script>
  window.analytics = AnalyticsNext.AnalyticsBrowser.load(
    {writeKey: %(write_key)r, cdnURL: %(collector)r},
    %(options)s
  );
</script>
</head><body>shop</body></html>
"""

CALLS = """async () => {
  const seen = {};
  await analytics.page("Docs", "Home", {path: "/docs"});
  seen.first = (await analytics.user()).anonymousId();
  await analytics.track("Viewed Product", {sku: "p-1"});
  await analytics.identify(USER, {plan: "pro"});
  await analytics.track("Order Completed", {revenue: 9});
  await analytics.group("acme", {size: 5});
  await analytics.screen("Cart");
  await analytics.alias(USER_ALIAS);
  await analytics.reset();
  await analytics.track("After Reset");
  seen.second = (await analytics.user()).anonymousId();
  return seen;
}"""


def _chromium_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get"):
            subprocess.run(
                "apt-get update -qq && apt-get install -y -qq chromium",
                shell=True,
                check=False,
                capture_output=True,
                timeout=600,
            )
        if not Path(CHROMIUM).exists():
            pytest.skip(f"Chromium is not installed at {CHROMIUM} and apt-get could not install it")


def _analytics_next_or_skip() -> None:
    if not (BUNDLES / "index.js").exists():
        if shutil.which("npm"):
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=BROWSER_PROJECT,
                check=False,
                capture_output=True,
                timeout=600,
            )
        if not (BUNDLES / "index.js").exists():
            pytest.skip("@segment/analytics-next could not be installed with `npm ci`")


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path]]:
    """A local site: its page at / and the analytics-next bundle under /analytics-next/."""
    site = tmp_path / "site"
    (site / "analytics-next").mkdir(parents=True)
    (site / "analytics-next" / "bundles").symlink_to(BUNDLES)
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, site
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


DELIVERY = {
    # one request per call, to the short paths (/v1/p, /v1/t, /v1/i, ...)
    "standard": "{}",
    # batches posted to /v1/b
    "batching": """{integrations: {"Segment.io": {deliveryStrategy: {
        strategy: "batching", config: {size: 3, timeout: 300}}}}}""",
}


@pytest.mark.parametrize("delivery", sorted(DELIVERY))
def test_analytics_js_in_chromium_reaches_the_warehouse_with_the_rules_identity(
    pipeline: Pipeline, page_server: tuple[ThreadingHTTPServer, Path], delivery: str
) -> None:
    _chromium_or_skip()
    _analytics_next_or_skip()
    from playwright.sync_api import sync_playwright

    server, site = page_server
    worker = pipeline.start_worker(wait=False)
    collector = CollectorProcess.start(pipeline.env(), pipeline.workdir / "collector.log")
    try:
        worker.wait_ready()
        (site / "index.html").write_text(
            PAGE
            % {"write_key": WRITE_KEY, "collector": collector.url, "options": DELIVERY[delivery]}
        )
        run = uuid.uuid4().hex[:8]
        user = f"user-{run}"
        failed: list[str] = []
        requested: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("requestfailed", lambda request: failed.append(request.url))
                page.on("pageerror", lambda error: failed.append(str(error)))
                page.on(
                    "request",
                    lambda request: (
                        requested.append(request.url) if request.method == "POST" else None
                    ),
                )
                page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
                calls = CALLS.replace("USER_ALIAS", repr(f"alias-{run}")).replace(
                    "USER", repr(user)
                )
                seen = page.evaluate(calls)
                first, second = seen["first"], seen["second"]
                expected = 8
                # the page stays open until its (possibly batched) calls were delivered;
                # read from another thread (playwright's loop runs in this one)
                with ThreadPoolExecutor(1) as reader:
                    raw = reader.submit(
                        read_matching,
                        pipeline.stack.bootstrap,
                        pipeline.topic("raw"),
                        lambda value: value.get("anonymousId") in (first, second),
                        expected,
                    ).result()
                page.wait_for_timeout(200)  # lets playwright deliver the request events
                posted = {request.split("/")[-1] for request in requested}
            finally:
                browser.close()
        assert failed == []
        assert first and second and first != second  # reset: a new anonymousId
        assert posted == ({"b"} if delivery == "batching" else {"p", "t", "i", "g", "s", "a"})
        assert len(raw) == expected
        assert all(r.json()["requestIp"] == "127.0.0.1" for r in raw)
        out = [r.json() for r in pipeline.read("warehouse", expected)]
        mine = [m for m in out if m["anonymousId"] in (first, second)]
        assert len(mine) == expected
        by_name = {m.get("event") or m.get("name") or m["type"]: m for m in mine}
        for name in ("Home", "Viewed Product"):
            assert by_name[name]["anonymousId"] == first and by_name[name]["userId"] is None
        assert by_name["identify"]["userId"] == user
        assert by_name["identify"]["traits"] == {"plan": "pro"}
        for name in ("identify", "Order Completed", "group", "Cart", "alias"):
            assert by_name[name]["anonymousId"] == first
            assert by_name[name]["_enrichment"]["device"] == first
        assert by_name["Order Completed"]["userId"] == user
        assert "traits" not in by_name["Order Completed"]  # R19
        assert by_name["group"]["groupId"] == "acme" and by_name["group"]["userId"] == user
        # R22: the stored userId overwrites alias's `to`, and is the previousId
        assert by_name["alias"]["userId"] == user
        assert by_name["alias"]["previousId"] == user
        after = by_name["After Reset"]  # R10: reset empties the device
        assert after["anonymousId"] == second and after["userId"] is None
        assert after["context"]["ip"] == "127.0.0.1"  # R27
        assert after["context"]["library"]["name"] == "analytics.js"
    finally:
        collector.stop()
