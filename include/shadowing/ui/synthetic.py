"""Synthetic warehouse content in the contract shapes (DESIGN §3), for the UI's tests and its benchmark.

``populate(engine, regions=20, services=200)`` writes, per primary region, a capacity fingerprint (every
canonical metric with quantiles, a sketch-sized blob and a 168-value profile), a dependency graph with launch
tiers and a cycle, blueprint versions (SCD2, through the warehouse API), a readiness run with failures, health
observations and failover events with step timings. Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shadowing.capacity.sizing import SizingRule, recommend
from shadowing.metrics.names import CANONICAL_METRICS
from shadowing.warehouse.blueprints import upsert_blueprint_version
from shadowing.warehouse.store import save_fingerprint, save_graph
from shadowing.warehouse.tables import failover_events, health_observations, readiness_results

REGIONS = ["us-east-1", "us-east-2", "us-west-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1",
           "eu-north-1", "eu-south-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
           "ap-southeast-1", "ap-southeast-2", "ap-east-1", "ca-central-1", "sa-east-1", "me-south-1", "af-south-1",
           "il-central-1", "mx-central-1"]
SHADOW_OF = {"us-east-1": "us-west-2", "us-east-2": "us-west-2", "us-west-1": "us-east-1"}
FAILOVER_STEPS = ["preflight", "launch_tier_0", "launch_tier_1", "launch_tier_2", "wire_network",
                  "redirect_traffic", "trigger_replication", "verify"]


def shadow_region(primary: str) -> str:
    return SHADOW_OF.get(primary, "us-west-2" if primary.startswith(("us-", "ca-", "sa-", "mx-")) else "eu-central-1"
                         if primary != "eu-central-1" else "eu-west-1")


def _stats(rng: random.Random, level: float, cap: float = math.inf) -> dict[str, Any]:
    """``cap``: a percentage never exceeds 100 (the capacity suite fails fingerprints that say otherwise)."""
    p50 = level * rng.uniform(0.8, 1.2)
    p95, p99 = p50 * rng.uniform(1.3, 1.7), p50 * rng.uniform(1.8, 2.4)
    p50, p95, p99 = min(p50, cap / 2.64), min(p95, cap / 1.1), min(p99, cap / 1.1)
    daily = [0.55 + 0.45 * max(0.0, 1 - abs(h - 14) / 9) for h in range(24)]
    profile = [round(p95 * daily[h % 24] * (0.75 if h >= 120 else 1.0) * rng.uniform(0.95, 1.05), 3)
               for h in range(168)]
    return {"count": 10080, "mean": round(p50 * 1.05, 3), "std": round(p50 * 0.3, 3), "ewma": round(p50, 3),
            "min": round(p50 * 0.2, 3), "max": round(p99 * 1.1, 3), "p50": round(p50, 3), "p90": round(p95 * 0.9, 3),
            "p95": round(p95, 3), "p99": round(p99, 3),
            "sketch": {"relative_accuracy": 0.01, "bins": {str(i): rng.randint(1, 400) for i in range(60)}},
            "hour_of_week_peak": profile}


def fingerprint(region: str, services: list[str], rng: random.Random, end: datetime) -> dict[str, Any]:
    payload: dict[str, Any] = {"schema_version": 1, "region": region, "generated_at": end.isoformat(),
                               "window": {"start": (end - timedelta(days=7)).isoformat(), "end": end.isoformat()},
                               "services": {}}
    for name in services:
        count = rng.randint(1, 6)
        levels = {m: (rng.uniform(15, 55) if m.endswith("utilization") else rng.uniform(10, 5e6)) for m in
                  CANONICAL_METRICS}
        metrics = {m: _stats(rng, lvl, 100.0 if m.endswith("utilization") else math.inf) for m, lvl in levels.items()}
        aggregate = {m: _stats(rng, lvl * count) for m, lvl in levels.items()}
        payload["services"][name] = {
            "instances": {"min": count, "max": count, "mean": float(count), "p50": float(count)},
            "metrics": metrics, "aggregate": aggregate,
            "sizing": recommend(SizingRule(), demand_quantile=aggregate["cpu_utilization"]["p99"],
                                history_seconds=rng.choice([7 * 86400.0, 2 * 86400.0]),
                                observed_instances=float(count))}
    return payload


def graph(services: list[str], rng: random.Random) -> dict[str, Any]:
    tiers: list[list[str]] = [services[: max(1, len(services) // 8)]]
    rest = services[len(tiers[0]):]
    while rest:
        size = max(1, min(len(rest), rng.randint(len(services) // 10 + 1, len(services) // 4 + 2)))
        tiers.append(rest[:size])
        rest = rest[size:]
    edges: list[dict[str, Any]] = []
    for level in range(1, len(tiers)):
        for caller in tiers[level]:
            for callee in rng.sample(tiers[level - 1], k=min(2, len(tiers[level - 1]))):
                edges.append({"source": caller, "target": callee, "confidence": round(rng.uniform(0.4, 1.0), 2),
                              "evidence": [{"kind": rng.choice(["config", "flow", "discovery"]),
                                            "detail": f"{caller} -> {callee}"}]})
    cycles: list[list[str]] = []
    if len(tiers) > 1 and len(tiers[1]) >= 2:
        a, b = tiers[1][0], tiers[1][1]
        edges += [{"source": a, "target": b, "confidence": 0.9, "evidence": [{"kind": "flow", "detail": "cycle"}]},
                  {"source": b, "target": a, "confidence": 0.9, "evidence": [{"kind": "flow", "detail": "cycle"}]}]
        cycles.append(sorted([a, b]))
    return {"directed": True, "multigraph": False,
            "nodes": [{"id": s, "kind": "datastore" if s.startswith("db") else "service"} for s in services],
            "edges": edges,
            "graph": {"launch_tiers": [sorted(t) for t in tiers], "cycles": cycles,
                      "dangling": [{"source": services[-1], "target": "legacy-ldap", "detail": "config"}],
                      "warnings": ["weak edge x -> y (confidence 0.2): traffic below the window thresholds"]}}


def blueprint(region: str, services: list[str], tiers: list[list[str]], rng: random.Random,
              bump: int = 0) -> dict[str, Any]:
    tier_of = {s: i for i, t in enumerate(tiers) for s in t}
    return {"schema_version": 1, "primary_region": region, "shadow_region": shadow_region(region),
            "launch_tiers": tiers,
            "services": {s: {"name": s, "tier": tier_of[s], "group": None, "kind": "compute",
                             "ami": {"primary": f"ami-{abs(hash(s)) % 10**8:08d}",
                                     "shadow": None if s.endswith("7") else f"ami-{abs(hash(s + 'x')) % 10**8:08d}"},
                             "instance_type": "m5.large", "count": rng.randint(1, 6) + (bump if i == 0 else 0),
                             "subnets": ["a", "b"], "security_groups": [f"sg-{s}"], "ports": [8080]}
                         for i, s in enumerate(services)}}


def populate(engine: Engine, *, regions: int = 20, services: int = 200, versions: int = 4, failovers: int = 3,
             seed: int = 7, now: datetime | None = None, names: list[str] | None = None) -> list[str]:
    """Write synthetic content for ``regions`` primary regions (or exactly ``names``); returns their names."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    if names is None:
        names = REGIONS[:regions] if regions <= len(REGIONS) else [f"xx-test-{i}" for i in range(regions)]
    service_names = [("db" if i % 17 == 0 else "svc") + f"-{i:03d}" for i in range(services)]
    for region in names:
        fp_id = save_fingerprint(engine, region=region, fingerprint=fingerprint(region, service_names, rng, now),
                                 valid=True, run_id="synthetic", window_start=now - timedelta(days=7), window_end=now)
        graph_payload = graph(service_names, rng)
        graph_id = save_graph(engine, region=region, graph=graph_payload, valid=True, run_id="synthetic")
        # A later refresh that failed validation: stored for audit, never current.
        save_graph(engine, region=region, graph={"nodes": [], "edges": [], "graph": {}}, valid=False,
                   errors=["expect_graph_to_have_nodes: 0 nodes"], run_id="synthetic-bad")
        tiers = graph_payload["graph"]["launch_tiers"]
        for v in range(versions):
            upsert_blueprint_version(engine, primary_region=region, shadow_region=shadow_region(region),
                                     payload=blueprint(region, service_names, tiers, random.Random(seed + v), bump=v),
                                     fingerprint_id=fp_id, graph_id=graph_id, run_id=f"synthetic-{v}",
                                     now=now - timedelta(hours=(versions - v) * 6))
        with engine.begin() as conn:
            conn.execute(sa.insert(readiness_results), [
                {"primary_region": region, "shadow_region": shadow_region(region), "run_id": f"ready-{region}",
                 "checked_at": now - timedelta(minutes=5), "blueprint_version": versions, "check_name": check,
                 "subject": s, "passed": not (check == "ami_available" and s.endswith("7")),
                 "detail": "no AMI copy in the shadow region" if check == "ami_available" and s.endswith("7")
                 else "ok"}
                for check in ("ami_available", "quota_headroom", "launch_template") for s in service_names])
            conn.execute(sa.insert(health_observations), [
                {"primary_region": region, "observed_at": now - timedelta(minutes=m), "run_id": f"health-{m}",
                 "healthy": True, "checks": {"alarms": "OK"}, "verdict": "healthy", "action": "none", "detail": ""}
                for m in (1, 2, 3)])
            rows = []
            for f in range(failovers):
                start = now - timedelta(days=f + 1)
                offset, steps = 0.0, []
                for step in FAILOVER_STEPS:
                    took = rng.uniform(0.5, 6.0)
                    steps.append({"name": step, "state": "success",
                                  "started_at": (start + timedelta(seconds=offset)).isoformat(),
                                  "finished_at": (start + timedelta(seconds=offset + took)).isoformat()})
                    offset += took
                rows.append({"failover_id": f"{region}-{f}", "dag_run_id": f"manual__{f}", "primary_region": region,
                             "shadow_region": shadow_region(region), "mode": ["dry_run", "drill", "live"][f % 3],
                             "trigger": "manual", "triggered_by": "admin", "blueprint_version": versions,
                             "blueprint_id": None, "steps": steps, "outcome": "succeeded", "error": None,
                             "detected_at": start - timedelta(seconds=20), "started_at": start,
                             "finished_at": start + timedelta(seconds=offset), "recovery_seconds": offset + 20,
                             "plan": None, "updated_at": start + timedelta(seconds=offset)})
            conn.execute(sa.insert(failover_events), rows)
    return names
