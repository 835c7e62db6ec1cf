"""A hot device: one key with tens of thousands of events in a burst is processed in order,
and devices on other partitions are not held back behind it (SPEC R34)."""

from __future__ import annotations

from typing import Any

from tests.pipeline import Pipeline

HOT_EVENTS = 30_000
OTHERS = 200


def test_hot_device_in_order_and_others_not_held_back(pipeline: Pipeline) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    for n in range(HOT_EVENTS):
        events.append(
            (
                "hot",
                {"type": "track", "event": "Tick", "messageId": f"hot-{n}", "properties": {"n": n}},
            )
        )
        if n % 15 == 0 and n // 15 < OTHERS * 10:
            other = n // 15 % OTHERS
            events.append((f"other-{other}", {"type": "page", "messageId": f"o-{n}"}))
    # the whole burst waits in the raw topic before the worker starts: otherwise the producer,
    # not the worker, decides when each device's events can be processed
    pipeline.produce_json(events)
    pipeline.start_worker()
    warehouse = pipeline.read("warehouse", len(events), timeout=240)
    assert len(warehouse) == len(events)

    hot = [r for r in warehouse if r.key == b"hot"]
    assert [r.json()["properties"]["n"] for r in sorted(hot, key=lambda r: r.offset)] == list(
        range(HOT_EVENTS)
    )  # in order
    hot_partition = hot[0].partition
    others = [r for r in warehouse if r.key != b"hot" and r.partition != hot_partition]
    assert others
    # others are written alongside the burst, not after it: most of them are out before most
    # of the hot device's messages are
    others_done = sorted(r.timestamp_ms for r in others)[len(others) * 9 // 10]
    hot_done = sorted(r.timestamp_ms for r in hot)[len(hot) * 9 // 10]
    print(f"90% of others by {others_done}, 90% of hot by {hot_done}")
    assert others_done <= hot_done
    assert len({r.json()["anonymousId"] for r in hot}) == 1
