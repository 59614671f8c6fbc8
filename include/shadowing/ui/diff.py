"""Readable differences between two blueprint versions (what the history table shows per version).

Services are compared field by field (dotted paths, old → new); other top-level sections are reported as
changed when their content differs. Provenance is ignored: it changes with every refresh run, the content
hash does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_CHANGES_PER_SERVICE = 12


def _services(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    services = (payload or {}).get("services")
    if isinstance(services, Mapping):
        return {str(k): v for k, v in services.items()}
    if isinstance(services, list):  # tolerate a list of {"name": ...}
        return {str(s.get("name")): s for s in services if isinstance(s, Mapping) and s.get("name")}
    return {}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    return {prefix: value}


def blueprint_diff(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """``{"added": [...], "removed": [...], "changed": {service: [{"field", "old", "new"}]}, "sections": [...]}``."""
    before, after = _services(previous), _services(current)
    changed: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(before.keys() & after.keys()):
        old, new = _flatten(before[name]), _flatten(after[name])
        fields = [{"field": f, "old": old.get(f), "new": new.get(f)}
                  for f in sorted(old.keys() | new.keys()) if old.get(f) != new.get(f)]
        if fields:
            changed[name] = fields[:MAX_CHANGES_PER_SERVICE]
            if len(fields) > MAX_CHANGES_PER_SERVICE:
                changed[name].append({"field": f"… {len(fields) - MAX_CHANGES_PER_SERVICE} more", "old": None,
                                      "new": None})
    sections = sorted(k for k in (set((previous or {}).keys()) | set(current.keys()))
                      if k not in {"services", "provenance"} and (previous or {}).get(k) != current.get(k))
    return {"added": sorted(after.keys() - before.keys()), "removed": sorted(before.keys() - after.keys()),
            "changed": changed, "sections": sections if previous is not None else []}
