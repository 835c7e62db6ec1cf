"""Redis key layout. Every key is namespaced by the app id, and every atomic operation touches
keys of one hash tag (one Redis Cluster slot): a device's record, or one profile's keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from zlib import crc32

DEVICE_BUCKETS: Final = 1024
"""Device records are fields of this many hashes by default (ENRICHER_DEVICE_BUCKETS): about
64 devices a bucket keeps each a compact listpack up to 65,536 devices (issue 21); size it to
the devices expected over 64."""


def hash_tag(identifier: str) -> str:
    """``{id}`` with ``%``, ``{`` and ``}`` escaped, so any id (even ``""``) gives a non-empty
    tag that is the whole id: keys of one id share a slot, different ids never collide."""
    if not identifier:
        return "{%}"
    escaped = identifier.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return f"{{{escaped}}}"


@dataclass(frozen=True, slots=True)
class KeySpace:
    app_id: str
    device_buckets: int = DEVICE_BUCKETS

    def device_bucket(self, device_key: str) -> str:
        """The hash holding a device's record (layout 2, issue 21: a record is the field named
        by its device key in one of ``device_buckets`` hashes, chosen by the key's CRC-32):
        without a Redis key, an expiry entry and their headers a device costs about half."""
        return self.bucket(self.bucket_number(device_key))

    def bucket_number(self, device_key: str) -> int:
        """The number of the bucket holding a device's record: its key's CRC-32, modulo."""
        return crc32(device_key.encode()) % self.device_buckets

    def bucket(self, number: int) -> str:
        return f"{self.app_id}:devices:{{{number}}}"

    def layout(self) -> str:
        """String: the device layout the app's records are in (``buckets=<n>``); absent
        before issue 21, when every device was a key of its own."""
        return f"{self.app_id}:layout"

    def sweeping(self) -> str:
        """Which worker sweeps expired devices (one at a time)."""
        return f"{self.app_id}:sweeping"

    def legacy_device(self, device_key: str) -> str:
        """A device record's key before issue 21 (layout 1): read once, moved into its bucket."""
        return f"{self.app_id}:device:{hash_tag(device_key)}"

    def device_key_of(self, redis_key: str) -> str | None:
        """The device key a layout-1 record's Redis key names (None: not a device record)."""
        prefix = f"{self.app_id}:device:{{"
        if not (redis_key.startswith(prefix) and redis_key.endswith("}")):
            return None
        tag = redis_key[len(prefix) : -1]
        if tag == "%":
            return ""
        return tag.replace("%7D", "}").replace("%7B", "{").replace("%25", "%")

    def pattern(self) -> str:
        """SCAN pattern of every key of the app."""
        return f"{_glob_escaped(self.app_id)}:*"

    def legacy_device_pattern(self) -> str:
        """SCAN pattern of every layout-1 device record of the app."""
        return f"{_glob_escaped(self.app_id)}:device:*"

    def user(self, user_id: str) -> str:
        """A user profile (format 2): one hash of its traits (``t:<name>``), first and last
        seen (``f``, ``l``), anonymousIds (``a:<id>``) and device keys (``d:<key>``) by last
        seen, and ``x`` while it lists every device (R39)."""
        return f"{self.app_id}:user:{hash_tag(user_id)}"

    def profile(self, kind: str, identifier: str) -> tuple[str, str, str, str, str]:
        """A ``kind`` ("user" or "group") profile's hash, then its four keys of format 1
        (before issue 21: traits hash, meta hash, anonymousIds and devices sorted sets; read,
        and moved into the hash by the next merge): what ``profiles.lua`` is given for it."""
        key = self.user(identifier) if kind == "user" else self.group(identifier)
        return (key, *_format1(key))

    def user_pattern(self) -> str:
        """SCAN pattern of every user profile key, of both formats."""
        return f"{_glob_escaped(self.app_id)}:user:*"

    def group(self, group_id: str) -> str:
        """A group profile: a hash as a user profile's (no anonymousIds or devices)."""
        return f"{self.app_id}:group:{hash_tag(group_id)}"

    # R39: the suppression list and what it needs, under one hash tag (one cluster slot)

    def suppressed(self) -> str:
        """The set of digests of suppressed ids."""
        return f"{self.app_id}:suppressed:{{r}}"

    def suppression_links(self, user_digest: bytes) -> str:
        """The digests a user's suppression added for its linked ids (unsuppress removes them)."""
        return f"{self.app_id}:suppressed:{{r}}:links:{user_digest.hex()}"

    def regulations(self) -> str:
        """Hash: the digest key's fingerprint."""
        return f"{self.app_id}:suppressed:{{r}}:meta"

    def regulations_lease(self) -> str:
        """Which worker applies regulations (one at a time)."""
        return f"{self.app_id}:suppressed:{{r}}:lease"


def _format1(profile: str) -> tuple[str, str, str, str]:
    return f"{profile}:traits", f"{profile}:meta", f"{profile}:aids", f"{profile}:devices"


def _glob_escaped(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
