"""IP collection and policies (R26-R28), table-driven."""

from __future__ import annotations

import pytest

from enrichers.context import build_context
from enrichers.ip import IpPolicy, apply_ip_policy, mask_ip, truncate_ip

V4 = "54.242.102.43"
V6 = "2001:db8:85a3::8a2e:370:7334"
V6_EXPANDED = "2001:0db8:85a3:0000:0000:8a2e:0370:7334"
V6_GROUPS = ["2001", "db8", "85a3", "0", "0", "8a2e", "370", "7334"]
"""R28: the expanded form has all 8 groups, written without leading zeros (as Snowplow's)."""


@pytest.mark.parametrize(
    ("octets", "expected"),
    [
        (0, "54.242.102.43"),
        (1, "54.242.102.x"),
        (2, "54.242.x.x"),
        (3, "54.x.x.x"),
        (4, "x.x.x.x"),
    ],
)
def test_mask_ipv4_every_octet_count(octets: int, expected: str) -> None:
    assert mask_ip(V4, octets, 0) == expected


@pytest.mark.parametrize("groups", range(1, 9))
@pytest.mark.parametrize("given", [V6, V6_EXPANDED], ids=["compressed", "expanded"])
def test_r28_mask_ipv6_expands_without_leading_zeros_then_masks_groups(
    given: str, groups: int
) -> None:
    expected = ":".join(V6_GROUPS[: 8 - groups] + ["x"] * groups)
    assert mask_ip(given, 0, groups) == expected


@pytest.mark.parametrize(
    ("given", "octets", "expected"),
    [
        ("::ffff:1.2.3.4", 1, "::ffff:1.2.3.x"),  # IPv4-mapped: only the IPv4 part
        ("::ffff:1.2.3.4", 3, "::ffff:1.x.x.x"),
        ("::FFFF:10.0.0.1", 2, "::ffff:10.0.x.x"),
    ],
)
def test_mask_ipv4_mapped_masks_the_ipv4_part(given: str, octets: int, expected: str) -> None:
    assert mask_ip(given, octets, 5) == expected


def test_mask_ipv4_compatible_is_an_ipv6_address() -> None:
    # "::1.2.3.4" (deprecated IPv4-compatible) is plain IPv6: groups of the expanded form
    assert mask_ip("::1.2.3.4", 1, 2) == "0:0:0:0:0:0:x:x"


def test_r28_snowplow_example_masks_without_leading_zeros() -> None:
    assert mask_ip("2605:2700:0:3::4713:93e3", 1, 3) == "2605:2700:0:3:0:x:x:x"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("mask:1:5", "fe80:0:0:x:x:x:x:x"),
        ("truncate:24:48", "fe80::"),
        ("keep", "fe80::1%eth0"),
    ],
)
def test_r28_an_ipv6_address_with_a_zone_index_is_an_address_and_loses_the_zone(
    policy: str, expected: str
) -> None:
    context: dict[str, object] = {"ip": "fe80::1%eth0"}
    apply_ip_policy(context, IpPolicy.parse(policy))
    assert context["ip"] == expected


@pytest.mark.parametrize(
    ("given", "v4", "v6", "expected"),
    [
        ("203.0.113.7", 24, 48, "203.0.113.0"),
        ("203.0.113.7", 16, 48, "203.0.0.0"),
        ("203.0.113.7", 32, 48, "203.0.113.7"),
        ("203.0.113.7", 0, 48, "0.0.0.0"),
        ("203.0.113.7", 20, 48, "203.0.112.0"),
        (V6, 24, 48, "2001:db8:85a3::"),
        (V6_EXPANDED, 24, 48, "2001:db8:85a3::"),
        (V6, 24, 64, "2001:db8:85a3::"),
        (V6, 24, 128, V6),
        (V6, 24, 16, "2001::"),
        ("::ffff:1.2.3.4", 24, 48, "::ffff:1.2.3.0"),
        ("::1.2.3.4", 24, 96, "::"),
    ],
)
def test_truncate_gives_a_valid_network_address(
    given: str, v4: int, v6: int, expected: str
) -> None:
    assert truncate_ip(given, v4, v6) == expected


@pytest.mark.parametrize("invalid", ["", "not-an-ip", "300.1.2.3", "1.2.3", "::g", "1.2.3.4/24"])
@pytest.mark.parametrize("policy", ["keep", "truncate", "mask"])
def test_invalid_address_is_kept_except_under_drop(invalid: str, policy: str) -> None:
    context: dict[str, object] = {"ip": invalid}
    apply_ip_policy(context, IpPolicy.parse(policy))
    assert context == {"ip": invalid}


@pytest.mark.parametrize("value", ["", "0.0.0.0", "1.2.3.4", "junk", V6])
def test_drop_removes_any_ip(value: str) -> None:
    context: dict[str, object] = {"ip": value, "locale": "en"}
    apply_ip_policy(context, IpPolicy.parse("drop"))
    assert context == {"locale": "en"}


def test_policy_without_ip_adds_none() -> None:
    for policy in ("keep", "drop", "truncate", "mask"):
        context: dict[str, object] = {}
        apply_ip_policy(context, IpPolicy.parse(policy))
        assert context == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keep", IpPolicy("keep")),
        ("drop", IpPolicy("drop")),
        ("truncate", IpPolicy("truncate", 24, 48)),
        ("truncate:16:32", IpPolicy("truncate", 16, 32)),
        ("mask", IpPolicy("mask", 1, 5)),
        ("mask:2:8", IpPolicy("mask", 2, 8)),
    ],
)
def test_policy_text(text: str, expected: IpPolicy) -> None:
    assert IpPolicy.parse(text) == expected
    assert IpPolicy.parse(str(expected)) == expected


@pytest.mark.parametrize(
    "text", ["", "blur", "keep:1:2", "truncate:24", "truncate:33:48", "mask:5:1", "mask:a:b"]
)
def test_bad_policy_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        IpPolicy.parse(text)


# R26, R27: which IP a message carries before the policies


def ip_of(
    options: dict[str, object],
    context: dict[str, object] | None = None,
    request_ip: str | None = None,
    collect_ipv6: bool = False,
) -> object:
    built = build_context(context, None, options, request_ip, collect_ipv6)
    return built.context.get("ip", "<absent>")


@pytest.mark.parametrize("explicit", ["", "0.0.0.0", "198.51.100.1", "garbage"])
def test_r26_explicit_ip_is_kept_verbatim(explicit: str) -> None:
    assert ip_of({"ip": explicit}, request_ip="203.0.113.9") == explicit


def test_r26_options_ip_beats_options_context_ip_beats_raw_context_ip() -> None:
    assert ip_of({"ip": "1.1.1.1", "context": {"ip": "2.2.2.2"}}, {"ip": "3.3.3.3"}) == "1.1.1.1"
    assert ip_of({"context": {"ip": "2.2.2.2"}}, {"ip": "3.3.3.3"}) == "2.2.2.2"
    assert ip_of({}, {"ip": "3.3.3.3"}) == "3.3.3.3"


def test_r27_request_ip_collected_when_ipv4() -> None:
    assert ip_of({}, request_ip="203.0.113.9") == "203.0.113.9"


def test_r27_ipv6_request_ip_only_with_collect_ipv6() -> None:
    assert ip_of({}, request_ip=V6) == "<absent>"
    assert ip_of({}, request_ip=V6, collect_ipv6=True) == V6


def test_r27_invalid_request_ip_is_not_collected() -> None:
    assert ip_of({}, request_ip="unknown") == "<absent>"
