"""``make run``: the embedded stack, one worker, the bundled sample, and what came out."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from streams.dev.sample import SampleRecord, load_sample
from streams.dev.stack import DevStack, free_port
from streams.settings import Settings, without_password
from streams.worker.clients import new_consumer, new_producer, topic_partitions
from streams.worker.topics import topic_names

READY_LINE = "Worker ready"
SHOWCASE = {
    "sample-02": "an anonymous event gets the device's generated anonymousId (R5)",
    "sample-06": "a different user logs in: the anonymousId rotates (R12), traits replaced (R16)",
    "sample-07": "after reset() a new anonymousId; integrations route it (R10, R29)",
    "sample-11": "no record key: the anonymousId names the device; clock skew corrected (R31)",
}


def run_demo(settings: Settings, once: bool, embedded_broker: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="enricher-demo-"))
    with ExitStack() as cleanup:
        if embedded_broker:
            name = "Apache Kafka" if settings.dev_broker == "kafka" else "Tansu"
            print(f"starting the development stack ({name} broker, Redis)...")
            stack = DevStack(
                redis_url=settings.redis_url, workdir=workdir, broker=settings.dev_broker
            )
            endpoints = cleanup.enter_context(stack)
            settings = settings.with_overrides(
                broker=endpoints.broker_url, redis_url=endpoints.redis_url
            )
        # a fresh app id: the sample's devices start from empty state on every run
        settings = settings.with_overrides(
            app_id=f"{settings.app_id}-demo-{uuid.uuid4().hex[:6]}",
            session_timeout=3.0,
            rebalance_timeout=6.0,
            web_host="127.0.0.1",
            web_port=free_port(),
            lookup_open=True,  # on localhost, for the person trying it: never in a deployment
        )
        redis = without_password(settings.redis_url)
        print(f"broker {settings.broker}, redis {redis}, app {settings.app_id}")
        worker = _start_worker(settings, workdir / "worker.log")
        cleanup.callback(_stop_worker, worker)
        _wait_ready(worker, workdir / "worker.log")
        sample = load_sample()
        outputs = asyncio.run(_feed_and_collect(settings, sample))
        print(_summary(settings, sample, outputs))
        if once:
            return 0
        web = f"http://127.0.0.1:{settings.web_port}"
        print(f"\nLookups (open on localhost): {web}/devices/KEY, {web}/users/ID, {web}/groups/ID")
        console = _start_console(settings, workdir / "console.log")
        cleanup.callback(_stop_worker, console)
        print(f"\nLive console (open on localhost): {_console_address(console, workdir)}")
        print(
            f"\nThe pipeline keeps running: produce raw events to {settings.topic_raw} at "
            f"{settings.bootstrap_servers}. Worker log: {workdir / 'worker.log'}. Ctrl-C stops."
        )
        try:
            while worker.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping...")
        return 0 if worker.poll() in (None, 0) else 1


def _start_worker(
    settings: Settings, log_path: Path, command: str = "worker"
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENRICHER_")}
    env.update(settings.to_environ())
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", command],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


CONSOLE_READY = "Console ready: "


def _start_console(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """``enricher console`` beside the worker, on localhost (open: ``lookup_open``), on
    ENRICHER_CONSOLE_PORT (8099) or, when that is taken, on a free port."""
    wanted = settings.console_port
    port = wanted if wanted and _port_free(wanted) else free_port()
    return _start_worker(
        settings.with_overrides(console_host="127.0.0.1", console_port=port),
        log_path,
        command="console",
    )


def _console_address(console: subprocess.Popen[bytes], workdir: Path) -> str:
    log_path = workdir / "console.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and console.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith(CONSOLE_READY):
                return line.removeprefix(CONSOLE_READY)
        time.sleep(0.2)
    return f"not started; see {log_path}"


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_ready(worker: subprocess.Popen[bytes], log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if READY_LINE in log_path.read_text(errors="replace"):
            print("worker ready")
            return
        if worker.poll() is not None:
            break
        time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise SystemExit(f"the worker did not become ready; its log ends:\n{tail}")


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def _feed_and_collect(
    settings: Settings, sample: list[SampleRecord], timeout: float = 60
) -> dict[str, list[Any]]:
    producer = new_producer(settings)
    await producer.start()
    try:
        sent = [await producer.send(settings.topic_raw, r.value, key=r.key) for r in sample]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    print(f"produced {len(sample)} raw records to {settings.topic_raw}")

    wanted = {
        settings.topic_warehouse: sum(r.emits_message for r in sample),
        settings.topic_deadletter: sum(r.dead_letter for r in sample),
    }
    names = topic_names(settings)[1:]
    outputs: dict[str, list[Any]] = {name: [] for name in names}
    consumer = new_consumer(settings)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, names)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            len(outputs[name]) < count for name, count in wanted.items()
        ):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                outputs[tp.topic] += [orjson.loads(m.value) for m in messages]
        batch = await consumer.getmany(timeout_ms=1500)  # destinations may trail a little
        for tp, messages in batch.items():
            outputs[tp.topic] += [orjson.loads(m.value) for m in messages]
    finally:
        await consumer.stop()
    missing = {name: count - len(outputs[name]) for name, count in wanted.items()}
    if any(n > 0 for n in missing.values()):
        raise SystemExit(f"timed out waiting for outputs: missing {missing}")
    return outputs


def _summary(settings: Settings, sample: list[SampleRecord], outputs: dict[str, list[Any]]) -> str:
    width = min(shutil.get_terminal_size((160, 40)).columns, 200)
    column = (width - 3) // 2
    lines = ["", "=" * width, "Counts per topic", "-" * width]
    lines.append(f"  {settings.topic_raw:<28} {len(sample):>4} raw records")
    for name, records in outputs.items():
        lines.append(f"  {name:<28} {len(records):>4}")
    letters = outputs[settings.topic_deadletter]
    codes = sorted({letter["error"]["code"] for letter in letters})
    lines.append(f"  dead-letter codes: {', '.join(codes)}")
    lines += ["", "Raw events and what the enricher made of them", "-" * width]
    enriched = {m["messageId"]: m for m in outputs[settings.topic_warehouse]}
    for record in sample:
        event = record.event
        if event is None or event.get("messageId") not in SHOWCASE:
            continue
        message = dict(enriched[event["messageId"]])
        lines.append(SHOWCASE[event["messageId"]])
        left = _wrapped(event, column)
        right = _wrapped(message, column)
        heading = f"raw event (record key {record.key.decode() if record.key else None!r})"
        lines.append(f"{heading:<{column}} | enriched message on {settings.topic_warehouse}")
        for index in range(max(len(left), len(right))):
            a = left[index] if index < len(left) else ""
            b = right[index] if index < len(right) else ""
            lines.append(f"{a:<{column}} | {b}")
        lines.append("-" * width)
    lines.append("=" * width)
    return "\n".join(lines)


def _wrapped(document: dict[str, Any], width: int) -> list[str]:
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    lines: list[str] = []
    for line in text.splitlines():
        lines += textwrap.wrap(line, width, subsequent_indent="      ") or [""]
    return lines
