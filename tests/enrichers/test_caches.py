"""The bounded memo tables (enrichers/caches.py)."""

from __future__ import annotations

from enrichers.caches import Generations


def test_generations_keep_at_least_the_latest_half_and_never_more_than_the_limit() -> None:
    table: Generations[int, str] = Generations(10)
    for n in range(1000):
        table.put(n, f"v{n}")
        assert len(table) <= 10
        # the latest five are always found, with their own values
        assert all(table.get(m) == f"v{m}" for m in range(max(0, n - 4), n + 1))
    assert table.get(0) is None and table.get(989) is None


def test_a_value_put_again_is_found_as_put_last() -> None:
    table: Generations[str, int] = Generations(4)
    table.put("a", 1)
    table.put("b", 2)  # "a" and "b" are now the older generation
    table.put("a", 3)
    assert table.get("a") == 3 and table.get("b") == 2


def test_a_limit_below_two_keeps_nothing() -> None:
    for limit in (0, 1):
        table: Generations[str, int] = Generations(limit)
        table.put("a", 1)
        assert table.get("a") is None and len(table) == 0
