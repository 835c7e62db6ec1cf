"""Driving sinks in tests: sink processes, a throw-away PostgreSQL database, a recording
webhook server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import psycopg

from tests.pipeline import CommandProcess, Pipeline

SINK_READY_LINE = "Sink ready"
POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class SinkProcess(CommandProcess):
    what: ClassVar[str] = "sink"
    ready_line: ClassVar[str] = SINK_READY_LINE

    @classmethod
    def start(
        cls, pipeline: Pipeline, name: str, env: dict[str, str], log_name: str
    ) -> SinkProcess:
        log_path = pipeline.workdir / log_name
        process = cls.launch(["sink", "run", name], {**pipeline.env(), **env}, log_path)
        return cls(process, log_path)


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll until ``condition()`` is truthy; returns its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, uniquely named PostgreSQL database; dropped afterwards. Yields its DSN."""
    name = f"enricher_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(dsn: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(statement, args or None).fetchall()


def columns(dsn: str, table: str) -> dict[str, str]:
    rows = query(
        dsn,
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s",
        table,
    )
    return dict(rows)  # type: ignore[arg-type]


def tables(dsn: str) -> set[str]:
    rows = query(
        dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    return {row[0] for row in rows}


@dataclass
class ReceivedRequest:
    status: int
    headers: dict[str, str]
    body: Any
    at: float
    path: str = ""


@dataclass
class WebhookServer:
    """A local HTTP server answering POSTs with the given statuses in turn (cycling), and
    recording every request with the status it got."""

    statuses: list[int]
    retry_after: str = "1"
    requests: list[ReceivedRequest] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> WebhookServer:
        owner = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    status = owner.statuses[len(owner.requests) % len(owner.statuses)]
                    owner.requests.append(
                        ReceivedRequest(
                            status,
                            dict(self.headers.items()),
                            orjson.loads(body),
                            time.time(),
                            self.path,
                        )
                    )
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", owner.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_file_sink(pipeline: Pipeline, directory: Path, **settings: str) -> SinkProcess:
    """The file sink writing to ``directory``, publishing each file after a second, ready;
    ``settings`` are more of its options (``CONSENT_CATEGORIES="analytics"``)."""
    env = {
        "ENRICHER_SINK_FILE_DIR": str(directory),
        "ENRICHER_SINK_FILE_ROTATE_SECONDS": "1",
        **{f"ENRICHER_SINK_FILE_{name}": value for name, value in settings.items()},
    }
    sink = SinkProcess.start(pipeline, "file", env, "file.log")
    sink.wait_ready()
    return sink
