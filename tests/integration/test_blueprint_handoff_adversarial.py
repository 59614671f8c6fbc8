"""The fingerprint → blueprint handoff end to end: real fingerprints (``capacity.fingerprint.build``) stored in the
warehouse beside invalid, foreign-region and retired-service ones, the world seeder's shopfront on the moto server
(fixture `aws`), ``refresh_region``, the stored versions, and the failover's preflight on what was stored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from shadowing.blueprint.model import Blueprint
from shadowing.blueprint.refresh import refresh_region
from shadowing.capacity import fingerprint as F
from shadowing.failover.launcher import LaunchContext
from shadowing.failover.plan import build_plan as failover_plan
from shadowing.failover.preflight import run_preflight
from shadowing.metrics.frame import from_pandas
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.store import (
    blueprint_history,
    current_blueprint,
    latest_readiness,
    save_fingerprint,
    save_graph,
)
from shadowing.world.app import App
from tests.support.blueprint_world import client_factory, seeded_world

PRIMARY, SHADOW = "us-east-1", "us-west-2"
START = 1_700_000_000
QUIET = 10.0  # CPU % per instance: every compute service sizes to 1 instance while 2–3 run


@pytest.fixture
def world(aws: str) -> App:
    return seeded_world(aws)


factory = client_factory


def compute(app: App) -> dict[str, int]:
    return {s.name: s.instances for s in app.services if s.kind != "database"}


def fingerprint(app: App, *, busy: dict[str, float] | None = None, spelt: dict[str, str] | None = None,
                extra: dict[str, int] | None = None, memory_only: tuple[str, ...] = (),
                region: str = PRIMARY) -> dict[str, Any]:
    """A real fingerprint of the shopfront's compute services over 3 h: QUIET CPU per instance unless ``busy``,
    service names as ``spelt``, ``extra`` services that do not run in the world, ``memory_only`` services without
    a CPU series (no aggregate for the sizing metric)."""
    rng = np.random.default_rng(1)
    ts = pd.to_datetime(np.arange(START, START + 3 * 3600, 60), unit="s", utc=True)
    parts = []
    for name, count in {**compute(app), **(extra or {})}.items():
        metric = "memory_utilization" if name in memory_only else "cpu_utilization"
        level = (busy or {}).get(name, QUIET)
        for i in range(count):
            parts.append(pd.DataFrame({
                "timestamp": ts, "region": region, "service": (spelt or {}).get(name, name),
                "instance_id": f"i-{name}-{i}", "metric": metric,
                "value": np.clip(level + rng.normal(0.0, 2.0, ts.size), 0.0, 100.0)}))
    return F.build(from_pandas(pd.concat(parts, ignore_index=True)))


def graph(app: App, *, spelt: dict[str, str] | None = None) -> dict[str, Any]:
    from shadowing.dependencies.graph import launch_order_of

    def name(n: str) -> str:
        return (spelt or {}).get(n, n)

    tiers, cycles = launch_order_of([name(s.name) for s in app.services],
                                    [(name(e.caller), name(e.callee)) for e in app.edges])
    return {"directed": True, "multigraph": False, "graph": {"launch_tiers": tiers, "cycles": cycles},
            "nodes": [{"id": name(s.name), "kind": s.kind, "ports": [{"port": s.port, "target_port": s.port}]}
                      for s in app.services],
            "edges": [{"source": name(e.caller), "target": name(e.callee), "confidence": 0.9, "evidence": []}
                      for e in app.edges]}


def running(endpoint: str) -> dict[str, int]:
    """Instances per service running in the emulated primary (the world's churn may have added some)."""
    from collections import Counter

    from shadowing.aws import tags as T
    from shadowing.blueprint.inventory import read_inventory

    inventory = read_inventory(factory(endpoint), PRIMARY)
    return dict(Counter(i["tags"][T.SERVICE] for i in inventory["instances"] if T.SERVICE in i["tags"]))


def sized(fp: dict[str, Any]) -> dict[str, int | None]:
    return {name: s["sizing"]["instances"] for name, s in fp["services"].items()}


def stored_counts(engine: Any) -> dict[str, int]:
    current = current_blueprint(engine, PRIMARY)
    assert current is not None
    return {name: spec["count"] for name, spec in current.payload["services"].items()}


def failures(engine: Any) -> dict[tuple[str, str], str]:
    report = latest_readiness(engine, PRIMARY)
    assert report is not None
    return {(c.check, c.subject): c.detail for c in report.failures}


@pytest.mark.slow
def test_only_the_latest_valid_fingerprint_of_the_primary_sizes_the_blueprint(world: App, aws: str,
                                                                              sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    good = fingerprint(world)
    assert set(sized(good).values()) == {1}
    good_id = save_fingerprint(engine, region=PRIMARY, fingerprint=good, valid=True)
    busy = fingerprint(world, busy={"catalog": 90.0})
    assert sized(busy)["catalog"] == 4
    save_fingerprint(engine, region=PRIMARY, fingerprint=busy, valid=False, errors=["catalog: p99 > max"])
    save_fingerprint(engine, region="eu-west-1", fingerprint=fingerprint(world, busy={"web": 90.0},
                                                                         region="eu-west-1"), valid=True)
    save_graph(engine, region=PRIMARY, graph=graph(world), valid=True)
    out = refresh_region(engine, factory(aws), PRIMARY, SHADOW, run_id="r1", with_prestage=False)
    assert out["valid"] and out["created"]
    assert stored_counts(engine) == {**{n: 1 for n in compute(world)}, "db": 1}
    current = current_blueprint(engine, PRIMARY)
    assert current is not None and current.payload["provenance"]["fingerprint_id"] == good_id
    assert not [k for k in failures(engine) if k[0] in {"sizing", "fingerprint", "naming", "drift"}]


@pytest.mark.slow
def test_a_fingerprint_of_another_region_stored_for_the_primary_is_not_used(world: App, aws: str,
                                                                            sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    foreign = fingerprint(world, region="eu-west-1")  # sizes 1 everywhere; the primary runs 2–3
    assert foreign["region"] == "eu-west-1"
    save_fingerprint(engine, region=PRIMARY, fingerprint=foreign, valid=True)
    save_graph(engine, region=PRIMARY, graph=graph(world), valid=True)
    out = refresh_region(engine, factory(aws), PRIMARY, SHADOW, run_id="r1", with_prestage=False)
    assert out["valid"]
    assert stored_counts(engine) == {**running(aws), "db": 1}
    assert {n: 1 for n in compute(world)} != running(aws)  # what the ignored fingerprint would have launched
    found = failures(engine)
    assert "eu-west-1" in found[("fingerprint", "region")]
    assert "running in the primary" in found[("sizing", "catalog")]


@pytest.mark.slow
def test_misspelt_and_retired_services_neither_duplicate_nor_block_the_failover(world: App, aws: str,
                                                                               sqlite_url: str) -> None:
    """The fingerprint spells two services in capitals and still sizes a retired one; the graph capitalises a
    third. The blueprint has exactly the world's services at their sizing, the refresh is ready but for the
    named spellings and the retired service, and the failover's preflight accepts the stored plan."""
    engine = open_warehouse(sqlite_url)
    fp = fingerprint(world, spelt={"web": "Web", "api-gateway": "API-Gateway"}, extra={"ledger": 2})
    save_fingerprint(engine, region=PRIMARY, fingerprint=fp, valid=True)
    save_graph(engine, region=PRIMARY, graph=graph(world, spelt={"checkout": "Checkout"}), valid=True)
    clients = factory(aws)
    out = refresh_region(engine, clients, PRIMARY, SHADOW, run_id="r1")
    assert out["valid"] and out["created"]
    bp = Blueprint.from_dict(current_blueprint(engine, PRIMARY).payload)  # type: ignore[union-attr]
    assert set(bp.services) == set(world.names)
    assert {n: s.count for n, s in bp.services.items()} == {**{n: 1 for n in compute(world)}, "db": 1}
    assert {r.from_service for r in bp.networking.security_groups["payment"].ingress} == {"checkout"}
    assert bp.services["checkout"].tier > bp.services["payment"].tier or \
        bp.services["checkout"].group == bp.services["payment"].group
    found = failures(engine)
    assert set(found) == {("naming", "web"), ("naming", "api-gateway"), ("naming", "checkout"),
                          ("drift", "ledger")}, found
    assert "left out" in found[("drift", "ledger")]

    plan = failover_plan(bp, failover_id="f-handoff", mode="dry_run", blueprint_version=out["version"])
    checks = run_preflight(clients("ec2", SHADOW), clients("service-quotas", SHADOW), plan,
                           ctx=LaunchContext("f-handoff", "dry_run", out["version"], PRIMARY),
                           blueprint_valid_from=None, readiness=latest_readiness(engine, PRIMARY))
    assert {c.subject for c in checks if c.check == "dry_run" and c.passed} == set(compute(world))


@pytest.mark.slow
def test_same_sizing_no_new_version_changed_sizing_a_version_naming_the_count(world: App, aws: str,
                                                                              warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    clients = factory(aws)
    save_graph(engine, region=PRIMARY, graph=graph(world), valid=True)

    def refresh(fp: dict[str, Any], run: str) -> dict[str, Any]:
        save_fingerprint(engine, region=PRIMARY, fingerprint=fp, valid=True)
        out = refresh_region(engine, clients, PRIMARY, SHADOW, run_id=run, with_prestage=False)
        assert out["valid"], out
        return out

    first = refresh(fingerprint(world), "r1")
    assert first["created"] and first["version"] == 1
    assert not refresh(fingerprint(world), "r2")["created"]  # rebuilt: another generated_at and row, same sizing
    assert not refresh(fingerprint(world, busy={"auth": 12.0}), "r3")["created"]  # demand moved, count did not

    busier = refresh(fingerprint(world, busy={"catalog": 90.0}), "r4")
    assert busier["created"] and busier["version"] == 2
    assert busier["diff"]["services_changed"] == {"catalog": {"count": {"from": 1, "to": 4}}}

    unknown = refresh(fingerprint(world, busy={"catalog": 90.0}, memory_only=("search",)), "r5")
    assert unknown["created"] and unknown["version"] == 3
    assert unknown["diff"]["services_changed"] == {"search": {"count": {"from": 1, "to": running(aws)["search"]}}}
    assert "no cpu_utilization aggregate" in failures(engine)[("sizing", "search")]
    assert not refresh(fingerprint(world, busy={"catalog": 90.0}, memory_only=("search",)), "r6")["created"]
    assert [v.version for v in blueprint_history(engine, PRIMARY)] == [1, 2, 3]
