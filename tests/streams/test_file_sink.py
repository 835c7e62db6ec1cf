"""The file sink on a real directory: complete files only, rotation, recovery after a kill."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from streams.sinks import SinkRecord
from streams.sinks.files import FileSink, recover_abandoned
from streams.sinks.options import COMMON_OPTIONS


def sink(directory: Path, **options: Any) -> FileSink:
    config = {option.name: option.default for option in COMMON_OPTIONS}
    config.update(dir=directory, rotate_bytes=10_000, rotate_seconds=300.0, prefix="events")
    config.update(options)
    return FileSink(config)


def records(*ids: str) -> list[SinkRecord]:
    return [SinkRecord({"messageId": i}, "t", 0, n, None, 0) for n, i in enumerate(ids)]


def lines(directory: Path) -> list[str]:
    return [
        orjson.loads(line)["messageId"]
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def test_records_are_invisible_until_the_file_is_published(tmp_path: Path) -> None:
    files = sink(tmp_path)

    async def scenario() -> None:
        await files.start()
        await files.write(records("a", "b"))
        assert lines(tmp_path) == []  # still in progress: hidden
        assert len(list(tmp_path.glob(".*.jsonl.inprogress"))) == 1
        await files.stop()

    asyncio.run(scenario())
    assert lines(tmp_path) == ["a", "b"]
    assert not list(tmp_path.glob(".*"))


def test_a_file_is_published_once_it_reaches_the_size_limit(tmp_path: Path) -> None:
    files = sink(tmp_path, rotate_bytes=38)

    async def scenario() -> None:
        await files.start()
        for n in range(4):
            await files.write(records(f"m{n}"))  # 19 bytes a line: two fill a file

    asyncio.run(scenario())
    assert lines(tmp_path) == ["m0", "m1", "m2", "m3"]
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_a_file_is_published_at_its_age_limit_without_new_records(tmp_path: Path) -> None:
    files = sink(tmp_path, rotate_seconds=0.2)

    async def scenario() -> None:
        await files.start()
        await files.write(records("a"))
        await asyncio.sleep(0.25)
        await files.tick()

    asyncio.run(scenario())
    assert lines(tmp_path) == ["a"]


def test_a_killed_writers_file_is_published_cut_to_its_last_complete_line(tmp_path: Path) -> None:
    left = tmp_path / ".events-20261129T000000000000Z-dead.jsonl.inprogress"
    left.write_bytes(b'{"messageId":"a"}\n{"messageId":"b"}\n{"messageId":')
    empty = tmp_path / ".events-20261129T000000000000Z-none.jsonl.inprogress"
    empty.write_bytes(b"")
    published = recover_abandoned(tmp_path)
    assert [p.name for p in published] == ["events-20261129T000000000000Z-dead.jsonl"]
    assert lines(tmp_path) == ["a", "b"]
    assert not empty.exists()


def test_a_live_writers_file_is_left_alone(tmp_path: Path) -> None:
    files = sink(tmp_path)

    async def scenario() -> None:
        await files.start()
        await files.write(records("a"))
        assert recover_abandoned(tmp_path) == []  # still locked by its writer
        await files.stop()

    asyncio.run(scenario())
    assert lines(tmp_path) == ["a"]
