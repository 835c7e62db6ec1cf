"""IP addresses: collection (R27) and per-output policies (R28)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from enrichers.caches import remembered

IpPolicyKind = Literal["keep", "drop", "truncate", "mask"]


@dataclass(frozen=True, slots=True)
class IpPolicy:
    """R28: what an output does to ``context.ip``.

    ``truncate`` keeps ``v4``/``v6`` prefix bits; ``mask`` replaces the last ``v4`` octets or
    ``v6`` groups with ``x``.
    """

    kind: IpPolicyKind = "keep"
    v4: int = 0
    v6: int = 0

    @classmethod
    def parse(cls, text: str) -> IpPolicy:
        """``keep``, ``drop``, ``truncate[:V4:V6]`` (default 24:48) or ``mask[:V4:V6]`` (1:5)."""
        name, *numbers = text.strip().split(":")
        defaults = _DEFAULTS.get(name)
        if defaults is None:
            raise ValueError(f"unknown IP policy {text!r}: use keep, drop, truncate or mask")
        if name in ("keep", "drop"):
            if numbers:
                raise ValueError(f"IP policy {name!r} takes no parameters: {text!r}")
            return cls(name)  # type: ignore[arg-type]
        if len(numbers) not in (0, 2):
            raise ValueError(f"IP policy {text!r}: give both numbers, as in {name}:V4:V6")
        try:
            v4, v6 = (int(n) for n in numbers) if numbers else defaults
        except ValueError:
            raise ValueError(f"IP policy {text!r}: the parameters must be integers") from None
        limits = (32, 128) if name == "truncate" else (4, 8)
        if not (0 <= v4 <= limits[0] and 0 <= v6 <= limits[1]):
            raise ValueError(
                f"IP policy {text!r}: {name} takes 0-{limits[0]} for IPv4, 0-{limits[1]} for IPv6"
            )
        return cls(name, v4, v6)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.kind in ("keep", "drop"):
            return self.kind
        return f"{self.kind}:{self.v4}:{self.v6}"


_DEFAULTS: Final[dict[str, tuple[int, int]]] = {
    "keep": (0, 0),
    "drop": (0, 0),
    "truncate": (24, 48),
    "mask": (1, 5),
}

KEEP: Final = IpPolicy("keep")


def collectable_request_ip(request_ip: str, collect_ipv6: bool) -> bool:
    """R27: a request address becomes ``context.ip`` when IPv4, IPv6 only when enabled."""
    version = ip_version(request_ip)
    return version == 4 or (version == 6 and collect_ipv6)


_VERSIONS: Final[dict[str, int]] = {}
"""IP versions of the values seen, 0 for no address (kept up to :data:`CACHED`, then started
over)."""
CACHED: Final = 65_536


def ip_version(value: str) -> int | None:
    """4 or 6 for an IP address, None for anything else (cached in a dict, as addresses
    repeat: cheaper to call than ``lru_cache``, issue 21)."""
    version = _VERSIONS.get(value)
    if version is None:
        try:
            version = ipaddress.ip_address(value).version
        except ValueError:
            version = 0
        remembered(_VERSIONS, value, version, CACHED)
    return version or None


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``value`` names, an IPv6 zone index (``fe80::1%eth0``) dropped (R28);
    None for anything else."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(int(address))
    return address


@lru_cache(maxsize=65_536)
def truncate_ip(value: str, v4_bits: int, v6_bits: int) -> str:
    """R28 ``truncate``: zero the host bits; the result is a valid address (cached: a
    client's address repeats on every event, and ipaddress parses slowly)."""
    address = _address(value)
    if address is None:
        return value
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # an IPv4 client seen through an IPv6 socket: its IPv4 part is truncated as IPv4
        return "::ffff:" + truncate_ip(str(address.ipv4_mapped), v4_bits, v6_bits)
    bits = v4_bits if address.version == 4 else v6_bits
    network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    return str(network.network_address)


@lru_cache(maxsize=65_536)
def mask_ip(value: str, v4_octets: int, v6_groups: int) -> str:
    """R28 ``mask``: the last N IPv4 octets or IPv6 groups become ``x``, in the expanded form
    (all 8 groups, without leading zeros, as Snowplow writes it); an IPv4-mapped IPv6 address
    masks octets of its IPv4 part (cached, as :func:`truncate_ip`)."""
    address = _address(value)
    if address is None:
        return value
    if isinstance(address, ipaddress.IPv4Address):
        return _mask_octets(str(address), v4_octets)
    if address.ipv4_mapped is not None:
        return "::ffff:" + _mask_octets(str(address.ipv4_mapped), v4_octets)
    groups = [f"{int(group, 16):x}" for group in address.exploded.split(":")]
    kept = len(groups) - min(v6_groups, len(groups))
    return ":".join(groups[:kept] + ["x"] * (len(groups) - kept))


def _mask_octets(ipv4: str, count: int) -> str:
    octets = ipv4.split(".")
    kept = len(octets) - min(count, len(octets))
    return ".".join(octets[:kept] + ["x"] * (len(octets) - kept))


def apply_ip_policy(context: dict[str, object], policy: IpPolicy) -> None:
    """R28: apply an output's policy to ``context["ip"]`` in place. Values that are not IP
    addresses are kept, except under ``drop``."""
    if policy.kind == "keep" or "ip" not in context:
        return
    if policy.kind == "drop":
        del context["ip"]
        return
    value = context["ip"]
    if not isinstance(value, str):
        return
    if policy.kind == "truncate":
        context["ip"] = truncate_ip(value, policy.v4, policy.v6)
    else:
        context["ip"] = mask_ip(value, policy.v4, policy.v6)
