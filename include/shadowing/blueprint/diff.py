"""A compact, human-readable summary of what changed between two blueprint versions (stored per version)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_SECTIONS = ("launch_tiers", "networking", "traffic", "replication", "shadow_region", "schema_version")


def diff_blueprints(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """{first, services_added, services_removed, services_changed {name: {field: {from, to}}}, sections_changed}."""
    if previous is None:
        return {"first": True, "services_added": sorted(current.get("services") or {}), "services_removed": [],
                "services_changed": {}, "sections_changed": []}
    old_services: Mapping[str, Any] = previous.get("services") or {}
    new_services: Mapping[str, Any] = current.get("services") or {}
    changed: dict[str, dict[str, Any]] = {}
    for name in sorted(set(old_services) & set(new_services)):
        old, new = old_services[name], new_services[name]
        fields = {key: {"from": old.get(key), "to": new.get(key)}
                  for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}
        if fields:
            changed[name] = fields
    return {
        "first": False,
        "services_added": sorted(set(new_services) - set(old_services)),
        "services_removed": sorted(set(old_services) - set(new_services)),
        "services_changed": changed,
        "sections_changed": [s for s in _SECTIONS if previous.get(s) != current.get(s)],
    }
