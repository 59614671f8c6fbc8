"""Ground truth of a world: the true graph (config-visible vs traffic-only edges) and per-service peak demand.

Helpers score themselves against it (dependency mapper: edges; capacity profiler: peak demand and counts).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from shadowing.world.app import App
from shadowing.world.metrics import instance_block

VCPUS = {"t3.small": 2, "t3.medium": 2, "t3.large": 2, "m5.large": 2, "c5.large": 2, "c5.xlarge": 4,
         "r5.large": 2, "db.r5.large": 2}
TARGET_UTILIZATION = 0.6  # sizing rule of thumb for "instances needed": p99 CPU-units at 60 % per instance
TRUTH_SCHEMA_VERSION = 1


def ground_truth(app: App, seed: int, *, start: datetime, end: datetime, step_seconds: int = 300,
                 instance_counts: dict[str, int] | None = None, world_id: str | None = None) -> dict[str, Any]:
    """The true edges and, per compute service, p99 of aggregate CPU units (vCPU × utilisation) over the window.

    ``instance_counts`` overrides the app's default counts (a seeded world may differ); instances are the
    ordinals 0..n-1 that the metric generator uses, so the figures match the published metrics.
    """
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    ts = np.arange(t0 - t0 % step_seconds, t1, step_seconds, dtype=np.int64)
    ts = ts[ts >= t0]
    services: dict[str, Any] = {}
    for si, svc in enumerate(app.services):
        n = (instance_counts or {}).get(svc.name, 1 if svc.managed else svc.instances)
        entry: dict[str, Any] = {"port": svc.port, "kind": svc.kind, "protocol": svc.protocol,
                                 "instance_type": svc.instance_type, "instances": n, "managed": svc.managed}
        if not svc.managed and n > 0 and len(ts):
            cpu = instance_block(app, si, np.arange(n), ts, step_seconds, seed, ["cpu_utilization"])[0]
            vcpu = VCPUS.get(svc.instance_type, 2)
            units = (cpu / 100.0 * vcpu).sum(axis=0)
            p99 = float(np.quantile(units, 0.99))
            entry.update({
                "vcpus_per_instance": vcpu,
                "peak_cpu_units_p99": round(p99, 4),
                "peak_cpu_units_max": round(float(units.max()), 4),
                "mean_cpu_units": round(float(units.mean()), 4),
                "instances_needed_at_target": max(1, int(np.ceil(p99 / (vcpu * TARGET_UTILIZATION)))),
            })
        services[svc.name] = entry
    return {
        "schema_version": TRUTH_SCHEMA_VERSION,
        "app": app.name,
        "world_id": world_id,
        "seed": seed,
        "window": {"start": start.isoformat(), "end": end.isoformat(), "step_seconds": step_seconds},
        "target_utilization": TARGET_UTILIZATION,
        "edges": [{"source": e.caller, "target": e.callee, "visibility": e.visibility} for e in app.edges],
        "config_edges": sorted([list(p) for p in app.config_edges()]),
        "traffic_only_edges": sorted([list(p) for p in app.traffic_only_edges()]),
        "cycles": app.cycles(),
        "services": services,
    }


def default_window(now: datetime, days: int = 7) -> tuple[datetime, datetime]:
    end = now.replace(second=0, microsecond=0)
    return end - timedelta(days=days), end


def write_truth(truth: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return path
