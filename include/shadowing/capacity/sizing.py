"""Shadow capacity from a service's aggregate demand: a percentile, a margin, and caution while history is short.

Demand is the service aggregate (time-aligned sum over instances) of ``metric``; for CPU that is in
"percent of one instance" units, so ``target_utilization`` (percent of one instance a shadow instance may run
at) turns it into an instance count:

    capacity = quantile(aggregate, percentile) × (1 + margin) × confidence
    instances = max(min_instances, ceil(capacity / target_utilization))
    confidence = 1 + short_history_boost × max(0, 1 − history / full_history)

The rule's parameters travel with every result so a recommendation can always be explained and replayed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SizingRule:
    metric: str = "cpu_utilization"
    percentile: float = 0.995
    margin: float = 0.10
    target_utilization: float = 100.0
    short_history_boost: float = 0.5
    full_history_seconds: float = 7 * 86400.0
    min_instances: int = 1
    name: str = "shadowing-percentile"

    def confidence(self, history_seconds: float) -> float:
        short = max(0.0, 1.0 - max(history_seconds, 0.0) / self.full_history_seconds)
        return 1.0 + self.short_history_boost * short

    def capacity(self, demand_quantile: float, history_seconds: float) -> float:
        """Capacity in demand units (e.g. CPU percent of one instance)."""
        return max(demand_quantile, 0.0) * (1.0 + self.margin) * self.confidence(history_seconds)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recommend(rule: SizingRule, *, demand_quantile: float | None, history_seconds: float,
              observed_instances: float | None = None) -> dict[str, Any]:
    """The sizing block of a service in the fingerprint."""
    if demand_quantile is None or not math.isfinite(demand_quantile):
        return {"instances": None, "reason": f"no {rule.metric} aggregate to size from", "rule": rule.as_dict()}
    capacity = rule.capacity(demand_quantile, history_seconds)
    instances = max(rule.min_instances, math.ceil(capacity / rule.target_utilization - 1e-9))
    return {
        "instances": int(instances),
        "capacity": capacity,
        "demand_quantile": demand_quantile,
        "confidence": rule.confidence(history_seconds),
        "history_seconds": history_seconds,
        "observed_instances": observed_instances,
        "rule": rule.as_dict(),
    }
