"""SPEC R29 as one destination sees it: Segment's integrations object decides per name."""

from __future__ import annotations

from typing import Any

import pytest

from enrichers.routing import integration_enabled


def test_no_integrations_object_enables_every_sink() -> None:
    assert integration_enabled(None, "webhook")
    assert integration_enabled({}, "webhook")


def test_an_explicit_false_skips_the_named_sink_only() -> None:
    assert not integration_enabled({"webhook": False}, "webhook")
    assert integration_enabled({"webhook": False}, "postgres")


def test_all_false_disables_sinks_not_named() -> None:
    assert not integration_enabled({"All": False}, "webhook")
    assert not integration_enabled({"All": False, "Mixpanel": True}, "webhook")


@pytest.mark.parametrize("setting", [True, {"apiKey": "x"}, {}])
def test_all_false_with_true_or_a_settings_object_enables_the_named_sink(setting: Any) -> None:
    assert integration_enabled({"All": False, "webhook": setting}, "webhook")


@pytest.mark.parametrize("setting", [None, 0, "yes", 1])
def test_all_false_with_anything_else_for_the_name_keeps_it_off(setting: Any) -> None:
    assert not integration_enabled({"All": False, "webhook": setting}, "webhook")


def test_an_explicit_false_wins_over_all_true() -> None:
    assert not integration_enabled({"All": True, "webhook": False}, "webhook")


def test_the_name_matches_ignoring_case_when_not_given_exactly() -> None:
    assert not integration_enabled({"Webhook": False}, "webhook")
    assert integration_enabled({"All": False, "WEBHOOK": True}, "webhook")
    # an exact match wins over a case-folded one
    assert integration_enabled({"All": False, "webhook": True, "Webhook": False}, "webhook")


def test_all_is_not_a_sink_name() -> None:
    assert not integration_enabled({"All": False}, "all")


def test_a_non_object_integrations_value_enables_the_sink() -> None:
    assert integration_enabled("nonsense", "webhook")  # type: ignore[arg-type]


def test_a_warehouse_loader_ignores_all_false_but_not_an_explicit_false() -> None:
    assert integration_enabled({"All": False, "Mixpanel": True}, "postgres", obeys_all=False)
    assert not integration_enabled({"All": False, "postgres": False}, "postgres", obeys_all=False)
    assert not integration_enabled({"postgres": False}, "postgres", obeys_all=False)
