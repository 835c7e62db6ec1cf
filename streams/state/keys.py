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

    def user(self, user_id: str) -> tuple[str, str, str]:
        """(traits hash, meta hash, anonymousIds sorted set) of one user profile."""
        base = f"{self.app_id}:user:{hash_tag(user_id)}"
        return f"{base}:traits", f"{base}:meta", f"{base}:aids"

    def group(self, group_id: str) -> tuple[str, str, str]:
        """(traits hash, meta hash, unused sorted set) of one group profile."""
        base = f"{self.app_id}:group:{hash_tag(group_id)}"
        return f"{base}:traits", f"{base}:meta", f"{base}:aids"
