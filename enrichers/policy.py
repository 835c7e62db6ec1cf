"""The policies of SPEC.md that a deployment chooses (R1, R27, R28, R30)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from enrichers.hygiene import DEFAULT as DEFAULT_PLACEHOLDERS
from enrichers.hygiene import Placeholders
from enrichers.ip import KEEP, IpPolicy

DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class Policy:
    device_ttl_days: float = 730.0
    collect_ipv6: bool = False
    ip_warehouse: IpPolicy = KEEP
    ip_destinations: IpPolicy = KEEP
    context_traits: tuple[str, ...] = ()
    placeholders: Placeholders = DEFAULT_PLACEHOLDERS
    """R36: the id values treated as not given."""
    destinations_consent: tuple[str, ...] = ()
    """R37: consent categories that must all be true for the destinations topic."""
    identity_consent: str = ""
    """R37: without this category a device keeps no record; empty: off."""
    pii_warehouse: tuple[str, ...] = ()
    pii_destinations: tuple[str, ...] = ()
    """R38: fields each output receives pseudonymised."""
    pii_key: bytes = b""
    device_ttl_ms: int = field(init=False)
    fingerprint: str = field(init=False)
    """A short hash of the active policy, written to ``_enrichment.policy``."""
    one_body: bool = field(init=False)
    """R28, R38: both outputs get the same IP policy and no field pseudonymised, so a
    destinations message is the warehouse message less ``context.traits`` and ``_enrichment``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_ttl_ms", int(self.device_ttl_days * DAY_MS))
        object.__setattr__(
            self,
            "one_body",
            self.ip_warehouse == self.ip_destinations
            and not self.pii_warehouse
            and not self.pii_destinations,
        )
        object.__setattr__(self, "fingerprint", self._fingerprint())

    def _fingerprint(self) -> str:
        text = "|".join(
            (
                f"ttl={self.device_ttl_days:g}",
                f"ipv6={int(self.collect_ipv6)}",
                f"wh={self.ip_warehouse}",
                f"dst={self.ip_destinations}",
                f"ctx={','.join(self.context_traits)}",
                f"ph={','.join(sorted(self.placeholders.values))}/{self.placeholders.pattern}",
                f"consent={','.join(self.destinations_consent)}/{self.identity_consent}",
                f"pii={','.join(self.pii_warehouse)}/{','.join(self.pii_destinations)}",
                f"key={hashlib.sha256(self.pii_key).hexdigest()[:8] if self.pii_key else ''}",
            )
        )
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


DEFAULT_POLICY: Final = Policy()
