"""Collector throughput: one ``enricher collector`` process under load from a second process
on loopback (``wrk`` when installed, else a Python aiohttp load generator), on the embedded
stack (or the broker named by ENRICHER_BROKER).

``make bench-collector`` or ``python -m bench.collector``; prints requests/s, messages/s and
latency per scenario, checks that the raw topic holds every acknowledged message, and writes
bench/results/collector.json. BENCH_SECONDS (default 10) and BENCH_CONNECTIONS (default 64)
set the load; BENCH_LOAD_TOOL=python uses the Python load generator even where wrk is.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from streams.dev.stack import DevStack, free_port
from streams.worker.clients import topic_partitions

RESULTS = Path(__file__).resolve().parent / "results" / "collector.json"
WRITE_KEY = "bench-key"
CONTEXT = (
    '{"library":{"name":"analytics.js","version":"next-1.84.3"},"locale":"en-US",'
    '"page":{"path":"/products/p-1","referrer":"https://www.example.com/","search":"",'
    '"title":"Product","url":"https://shop.example.com/products/p-1"},'
    '"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
    'Chrome/156.0.0.0 Safari/537.36","timezone":"Europe/Berlin"}'
)
SCENARIOS: dict[str, dict[str, Any]] = {
    # Analytics.js: one message per request, the short path, key in the body, text/plain
    "single message per request (/v1/t)": {"path": "/v1/t", "batch": 1},
    # a server library: batches of 20 (the Python library's default upload_size is 100)
    "batches of 20 messages (/v1/batch)": {"path": "/v1/batch", "batch": 20},
}

WRK_SCRIPT = """
local path, per_request, context, write_key = "%(path)s", %(batch)d, '%(context)s', "%(key)s"
local counter = 0
local headers = {["Content-Type"] = "text/plain"}
local function message(n)
  return string.format(
    '{"type":"track","event":"Viewed Product","anonymousId":"anon-%%d-%%d",' ..
    '"messageId":"m-%%d-%%d","properties":{"sku":"p-%%d","price":12.5},' ..
    '"timestamp":"2026-11-29T01:00:00.000Z","context":%%s}',
    id or 0, n %% 20000, id or 0, n, n %% 500, context)
end
function setup(thread) thread:set("id", math.random(1, 1000000)) end
request = function()
  local body
  if per_request == 1 then
    counter = counter + 1
    body = string.sub(message(counter), 1, -2) .. ',"writeKey":"' .. write_key .. '"}'
  else
    local parts = {}
    for i = 1, per_request do
      counter = counter + 1
      parts[i] = message(counter)
    end
    body = '{"writeKey":"' .. write_key .. '","batch":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format("POST", path, headers, body)
end
"""


def main() -> int:
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "64"))
    with _broker() as bootstrap:
        results = []
        for name, scenario in SCENARIOS.items():
            result = _run_scenario(bootstrap, name, scenario, seconds, connections)
            results.append(result)
            print(
                f"{name}: {result['requests_per_s']:,.0f} requests/s, "
                f"{result['messages_per_s']:,.0f} messages/s, latency p50 "
                f"{result['latency_p50_ms']} ms p99 {result['latency_p99_ms']} ms, "
                f"errors {result['errors']}; {result['acknowledged_messages']:,} messages "
                f"acknowledged, {result['on_topic']:,} on the topic",
                flush=True,
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "load_tool": "wrk" if _use_wrk() else "python aiohttp",
        "seconds": seconds,
        "connections": connections,
        "cores": os.cpu_count(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    # more on the topic than acknowledged: requests still in flight when the load stopped
    return 0 if all(r["on_topic"] >= r["acknowledged_messages"] for r in results) else 1


def _use_wrk() -> bool:
    return os.environ.get("BENCH_LOAD_TOOL", "wrk") == "wrk" and shutil.which("wrk") is not None


@contextmanager
def _broker() -> Iterator[str]:
    configured = os.environ.get("ENRICHER_BROKER")
    if configured:
        yield configured.removeprefix("kafka://")
        return
    with DevStack() as endpoints:
        yield endpoints.bootstrap


def _run_scenario(
    bootstrap: str, name: str, scenario: dict[str, Any], seconds: float, connections: int
) -> dict[str, Any]:
    topic = f"events.raw.bench-collector-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENRICHER_")},
        "ENRICHER_BROKER": f"kafka://{bootstrap}",
        "ENRICHER_TOPIC_RAW": topic,
        "ENRICHER_TOPIC_WAREHOUSE": f"{topic}.warehouse",
        "ENRICHER_TOPIC_DESTINATIONS": f"{topic}.destinations",
        "ENRICHER_TOPIC_DEADLETTER": f"{topic}.deadletter",
        "ENRICHER_COLLECTOR_WRITE_KEYS": WRITE_KEY,
        "ENRICHER_COLLECTOR_HOST": "127.0.0.1",
        "ENRICHER_COLLECTOR_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    with tempfile.TemporaryDirectory() as workdir:
        log_path = Path(workdir) / "collector.log"
        with log_path.open("wb") as log:
            collector = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "collector", "--loglevel", "warning"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_listening(port, collector, log_path)
            url = f"http://127.0.0.1:{port}"
            if _use_wrk():
                load = _wrk(url, scenario, seconds, connections, Path(workdir))
            else:
                load = _python_load(url, scenario, seconds, connections)
        finally:
            collector.send_signal(signal.SIGTERM)
            collector.wait(30)
    acknowledged = load["ok_requests"] * scenario["batch"]
    return {
        "scenario": name,
        "messages_per_request": scenario["batch"],
        "requests_per_s": round(load["requests"] / load["seconds"], 1),
        "messages_per_s": round(acknowledged / load["seconds"], 1),
        "latency_p50_ms": load["p50_ms"],
        "latency_p99_ms": load["p99_ms"],
        "errors": load["requests"] - load["ok_requests"],
        "acknowledged_messages": acknowledged,
        "on_topic": asyncio.run(_count(bootstrap, topic, acknowledged)),
    }


def _wait_listening(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"collector exited:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("collector did not start")


def _wrk(
    url: str, scenario: dict[str, Any], seconds: float, connections: int, workdir: Path
) -> dict[str, Any]:
    script = workdir / "load.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "path": scenario["path"],
            "batch": scenario["batch"],
            "context": CONTEXT,
            "key": WRITE_KEY,
        }
    )
    output = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if summary is None:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    requests = int(summary.group(1))
    elapsed = float(summary.group(2)) / (1000 if summary.group(3) == "ms" else 1)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        print(f"  wrk socket errors: {socket_errors.group(1)}")
    return {
        "requests": requests,
        "ok_requests": requests - (int(non_2xx.group(1)) if non_2xx else 0),
        "seconds": elapsed,
        "p50_ms": _wrk_latency(output, "50%"),
        "p99_ms": _wrk_latency(output, "99%"),
    }


def _wrk_latency(output: str, percentile: str) -> float:
    match = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", output)
    if match is None:
        return float("nan")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return round(float(match.group(1)) * scale, 2)


def _python_load(
    url: str, scenario: dict[str, Any], seconds: float, connections: int
) -> dict[str, Any]:
    """The fallback load generator, in a process of its own (it competes for the CPU)."""
    code = (
        "import sys, json; from bench.collector import python_load_process; "
        "print(json.dumps(python_load_process(*json.loads(sys.argv[1]))))"
    )
    argument = json.dumps([url, scenario, seconds, connections])
    output = subprocess.run(
        [sys.executable, "-c", code, argument], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def python_load_process(
    url: str, scenario: dict[str, Any], seconds: float, connections: int
) -> dict[str, Any]:
    import aiohttp

    context = json.loads(CONTEXT)
    latencies: list[float] = []
    ok = 0

    def body(worker: int, n: int) -> bytes:
        def message(i: int) -> dict[str, Any]:
            return {
                "type": "track",
                "event": "Viewed Product",
                "anonymousId": f"anon-{worker}-{i % 20000}",
                "messageId": f"m-{worker}-{i}",
                "properties": {"sku": f"p-{i % 500}", "price": 12.5},
                "context": context,
            }

        if scenario["batch"] == 1:
            return json.dumps({**message(n), "writeKey": WRITE_KEY}).encode()
        batch = [message(n * scenario["batch"] + i) for i in range(scenario["batch"])]
        return json.dumps({"writeKey": WRITE_KEY, "batch": batch}).encode()

    async def worker(session: aiohttp.ClientSession, index: int, until: float) -> None:
        nonlocal ok
        n = 0
        while time.monotonic() < until:
            n += 1
            started = time.monotonic()
            async with session.post(url + scenario["path"], data=body(index, n)) as response:
                await response.read()
                ok += response.status == 200
            latencies.append(time.monotonic() - started)

    async def run() -> float:
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.monotonic()
            until = started + seconds
            await asyncio.gather(*(worker(session, i, until) for i in range(connections)))
            return time.monotonic() - started

    elapsed = asyncio.run(run())
    latencies.sort()
    return {
        "requests": len(latencies),
        "ok_requests": ok,
        "seconds": elapsed,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def _count(bootstrap: str, topic: str, expected: int) -> int:
    """The records on the raw topic (read until ``expected`` or 5 s without new records)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, [topic])
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count = 0
        quiet_since = time.monotonic()
        while count < expected and time.monotonic() - quiet_since < 5:
            batch = await consumer.getmany(timeout_ms=500, max_records=20000)
            got = sum(len(messages) for messages in batch.values())
            if got:
                count += got
                quiet_since = time.monotonic()
        return count
    finally:
        await consumer.stop()


if __name__ == "__main__":
    sys.exit(main())
