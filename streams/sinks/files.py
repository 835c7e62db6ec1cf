"""``file``: JSON Lines files in a directory, rotated by size and by age, published atomically.

Records are appended (and fsynced before the batch counts as written) to a hidden file,
``.PREFIX-STAMP-ID.jsonl.inprogress``, locked while it is open. Rotation closes it and renames
it to ``PREFIX-STAMP-ID.jsonl``; a rename within a directory is atomic, so a reader listing
``*.jsonl`` never sees half a file. A sink that was killed leaves its in-progress file behind:
the next start publishes it (cut back to its last complete line), once no process holds its
lock. Delivery is at least once: a batch written but not yet committed when the sink was
killed is written again after the restart (same messageIds)."""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final

import orjson

from enrichers.regulations import Regulation
from streams.sinks.base import (
    RegulationUnsupported,
    RetryableSinkError,
    Sink,
    SinkOption,
    SinkRecord,
)
from streams.sinks.options import positive_float, positive_int

IN_PROGRESS: Final = ".jsonl.inprogress"


def _directory(value: str) -> Path:
    value = value.strip()
    if not value:
        raise ValueError("a directory path")
    return Path(value)


def _prefix(value: str) -> str:
    value = value.strip()
    if not value or "/" in value or value.startswith("."):
        raise ValueError("a file name prefix, without '/' and not starting with '.'")
    return value


class FileSink(Sink):
    name: ClassVar[str] = "file"
    options: ClassVar[Sequence[SinkOption]] = (
        SinkOption("dir", _directory, required=True, help="directory of the files (created)"),
        SinkOption("rotate_bytes", positive_int, 64 * 1024 * 1024, "a file is closed past this"),
        SinkOption("rotate_seconds", positive_float, 300.0, "a file is closed at this age"),
        SinkOption("prefix", _prefix, "events", "file names: PREFIX-STAMP-ID.jsonl"),
    )

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.directory: Path = config["dir"]
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._size = 0

    async def regulate(self, regulation: Regulation) -> Mapping[str, Any]:
        """R39: published files are never rewritten (their readers may have taken them);
        a deletion is reported ``unsupported`` for this sink."""
        if regulation.deletes:
            raise RegulationUnsupported("published files are not rewritten")
        return {}

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        recover_abandoned(self.directory)

    async def stop(self) -> None:
        self._publish()

    async def tick(self) -> None:
        if self._file is not None and self._age() >= self.config["rotate_seconds"]:
            self._publish()

    async def write(self, batch: Sequence[SinkRecord]) -> None:
        data = b"".join(orjson.dumps(record.message) + b"\n" for record in batch)
        try:
            handle = self._open()
            try:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                handle.truncate(self._size)  # no partial batch stays behind
                handle.seek(self._size)
                raise
            self._size += len(data)
            if self._size >= self.config["rotate_bytes"] or (
                self._age() >= self.config["rotate_seconds"]
            ):
                self._publish()
        except OSError as exc:
            raise RetryableSinkError(f"writing {self.directory}: {exc}") from exc

    def _age(self) -> float:
        return time.monotonic() - self._opened_at

    def _open(self) -> BinaryIO:
        if self._file is None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            name = f"{self.config['prefix']}-{stamp}-{uuid.uuid4().hex[:8]}"
            path = self.directory / f".{name}{IN_PROGRESS}"
            creating = self.directory / f".{name}.creating"
            handle = creating.open("xb")
            # locked before it takes the name recovery looks for (the lock is the inode's)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(creating, path)
            self._file, self._path, self._size = handle, path, 0
            self._opened_at = time.monotonic()
        return self._file

    def _publish(self) -> None:
        """Close the current file and give it its final name (atomically)."""
        if self._file is None or self._path is None:
            return
        handle, path = self._file, self._path
        self._file = self._path = None
        try:  # renamed while still locked, so recovery never races us for it
            if self._size == 0:
                path.unlink(missing_ok=True)
            else:
                publish(path)
        finally:
            handle.close()


def published_name(in_progress: Path) -> Path:
    return in_progress.with_name(
        in_progress.name.removeprefix(".").removesuffix(IN_PROGRESS) + ".jsonl"
    )


def publish(in_progress: Path) -> Path:
    final = published_name(in_progress)
    os.replace(in_progress, final)
    directory = os.open(in_progress.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename survives a crash
    finally:
        os.close(directory)
    return final


def recover_abandoned(directory: Path) -> list[Path]:
    """Publish the in-progress files no process holds (their writer died), cut back to their
    last complete line; empty ones are removed. Returns the published files."""
    published = []
    for path in sorted(directory.glob(f".*{IN_PROGRESS}")):
        try:
            handle = path.open("r+b")
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's file
            data = handle.read()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                handle.truncate(complete)
                handle.flush()
                os.fsync(handle.fileno())
            if complete == 0:
                path.unlink(missing_ok=True)
                continue
            try:
                published.append(publish(path))
            except FileNotFoundError:
                continue  # its writer published it a moment ago
    return published
