"""The settings Analytics.js loads from its CDN (``/v1/projects/<writeKey>/settings``),
served by the collector so that a page needs only ``cdnURL`` pointed at it: the
``Segment.io`` integration's ``apiHost`` then names the collector, and nothing calls Segment.
"""

from __future__ import annotations

from typing import Any


def browser_settings(write_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """Source settings for analytics-next: deliver to ``protocol://api_host/<path>``, no
    device-mode destinations, no remote metrics (they would post to Segment)."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
