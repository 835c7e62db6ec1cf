"""Redis key layout. Every key is namespaced by the app id, and every atomic operation touches
keys of one hash tag (one Redis Cluster slot): a device's record, or one profile's keys."""

from __future__ import annotations

from dataclasses import dataclass


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

    def device(self, device_key: str) -> str:
        return f"{self.app_id}:device:{hash_tag(device_key)}"

    def device_key_of(self, redis_key: str) -> str | None:
        """The device key a device record's Redis key names (None: not a device record)."""
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

    def device_pattern(self) -> str:
        """SCAN pattern of every device record of the app."""
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
