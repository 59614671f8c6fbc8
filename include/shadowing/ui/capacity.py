"""Capacity chart data from a capacity fingerprint (DESIGN §3), one compact record per service.

The fingerprint carries every metric's stats and a 168-value hour-of-week profile; the page needs only the
metric the sizing rule used (observed p50/p95/p99 of the service total against the sized shadow capacity) and
its weekly profile, so the payload stays small for 200 services. Unknown or partial shapes degrade to fewer
fields, never to an error: the page must render whatever the warehouse holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PREFERRED_METRICS = ("cpu_utilization", "active_connections", "memory_utilization", "request_latency_ms",
                     "network_in_bytes", "network_out_bytes", "disk_read_bytes", "disk_write_bytes")
PERCENT_METRICS = frozenset({"cpu_utilization", "memory_utilization"})
UNITS = {"cpu_utilization": "%", "memory_utilization": "%", "request_latency_ms": "ms",
         "network_in_bytes": "B", "network_out_bytes": "B", "disk_read_bytes": "B", "disk_write_bytes": "B",
         "active_connections": "conn"}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or value == 0:
        return value
    return round(value, max(0, digits - 1 - int(math.floor(math.log10(abs(value))))))


def _rule(sizing: Mapping[str, Any]) -> Mapping[str, Any]:
    rule = sizing.get("rule")
    return rule if isinstance(rule, Mapping) else {}


def _sizing_metric(sizing: Mapping[str, Any], stats_by_metric: Mapping[str, Any]) -> str | None:
    for name in (_rule(sizing).get("metric"), sizing.get("metric")):
        if isinstance(name, str) and name in stats_by_metric:
            return name
    for name in PREFERRED_METRICS:
        if name in stats_by_metric:
            return name
    return next(iter(sorted(stats_by_metric)), None)


def _recommended_instances(sizing: Mapping[str, Any]) -> int | None:
    for key in ("recommended_instances", "instances", "count", "recommended_count", "recommended"):
        value = sizing.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, Mapping):
            nested = _recommended_instances(value)
            if nested is not None:
                return nested
    return None


def _capacity_line(sizing: Mapping[str, Any], metric: str, instances: int | None) -> float | None:
    """The sized shadow capacity in the metric's units (what the chart draws the observed values against).

    With the sizing rule of :mod:`shadowing.capacity.sizing` that is what the recommended instances can carry
    (instances × the rule's target utilisation per instance); ``sizing.capacity`` is the demand plus margin the
    count was derived from, used only when no instance count is known.
    """
    target = _num(_rule(sizing).get("target_utilization"))
    if instances is not None and target is not None:
        return instances * target
    for key in ("capacity", "shadow_capacity", "recommended_capacity"):
        value = _num(sizing.get(key))
        if value is not None:
            return value
    if instances is not None and metric in PERCENT_METRICS:
        # A utilisation metric summed over instances: each sized instance brings 100 points of headroom.
        return instances * 100.0
    return None


def describe_rule(sizing: Mapping[str, Any]) -> str | None:
    """One line explaining the recommendation (the rule's parameters travel with every sizing block)."""
    rule = sizing.get("rule")
    if isinstance(rule, str):
        return rule
    if not isinstance(rule, Mapping):
        return None if sizing.get("reason") is None else str(sizing["reason"])
    parts = [str(rule.get("name") or "rule")]
    if _num(rule.get("percentile")) is not None:
        decayed = "decayed " if rule.get("decayed") else ""
        parts.append(f"{decayed}p{_round(float(rule['percentile']) * 100, 4):g} of demand")
    if rule.get("seasonal"):
        parts.append("or the hour-of-week peak ahead, whichever is higher")
    if _num(rule.get("margin")) is not None:
        parts.append(f"+{float(rule['margin']) * 100:g}% margin")
    if _num(sizing.get("confidence")) is not None and float(sizing["confidence"]) != 1.0:
        parts.append(f"×{float(sizing['confidence']):.2f} short-history")
    if _num(rule.get("target_utilization")) is not None:
        parts.append(f"{float(rule['target_utilization']):g} per instance")
    return ", ".join(parts)


def service_chart(name: str, service: Mapping[str, Any]) -> dict[str, Any]:
    """One service's chart record: metric, unit, p50/p95/p99/max of the service total, capacity, profile."""
    aggregate = service.get("aggregate")
    metrics = service.get("metrics")
    stats_by_metric: Mapping[str, Any] = {}
    source = "aggregate"
    if isinstance(aggregate, Mapping):
        # Either {metric: stats} or {"metrics": {metric: stats}}.
        inner = aggregate.get("metrics")
        stats_by_metric = inner if isinstance(inner, Mapping) else aggregate
    if not any(isinstance(v, Mapping) and "p50" in v for v in stats_by_metric.values()):
        stats_by_metric, source = (metrics if isinstance(metrics, Mapping) else {}), "per_instance"
    stats_by_metric = {k: v for k, v in stats_by_metric.items() if isinstance(v, Mapping)}
    sizing = service.get("sizing") if isinstance(service.get("sizing"), Mapping) else {}
    metric = _sizing_metric(sizing, stats_by_metric)
    stats = stats_by_metric.get(metric, {}) if metric else {}
    instances = _recommended_instances(sizing)
    observed = service.get("instances") if isinstance(service.get("instances"), Mapping) else {}
    profile_raw = stats.get("hour_of_week_peak")
    profile = ([_round(_num(v)) for v in profile_raw] if isinstance(profile_raw, list) and len(profile_raw) == 168
               else None)
    return {
        "service": name,
        "metric": metric,
        "unit": UNITS.get(metric or "", ""),
        "source": source,
        "p50": _round(_num(stats.get("p50"))),
        "p95": _round(_num(stats.get("p95"))),
        "p99": _round(_num(stats.get("p99"))),
        "max": _round(_num(stats.get("max"))),
        "capacity": _round(_capacity_line(sizing, metric or "", instances)),
        "recommended_instances": instances,
        "observed_instances": {k: _round(_num(observed.get(k))) for k in ("min", "p50", "max", "mean")
                               if _num(observed.get(k)) is not None},
        "rule": describe_rule(sizing),
        "hour_of_week": profile,
    }


def capacity_charts(fingerprint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Chart records for every service of a fingerprint, busiest first relative to capacity."""
    services = fingerprint.get("services")
    if not isinstance(services, Mapping):
        return []
    charts = [service_chart(str(name), svc) for name, svc in services.items() if isinstance(svc, Mapping)]

    def pressure(chart: dict[str, Any]) -> float:
        if chart["p99"] is not None and chart["capacity"]:
            return chart["p99"] / chart["capacity"]
        return -1.0

    return sorted(charts, key=lambda c: (-pressure(c), c["service"]))
