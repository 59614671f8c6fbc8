"""The fingerprint → blueprint handoff, attacked with real fingerprints (``capacity.fingerprint.build`` on a tidy
frame) and real dependency graphs (``dependencies.graph.build_graph``): what the blueprint will launch per service
when the fingerprint, the graph and the primary's tags disagree, and whether every departure from the sizing is
*said* (a failed readiness check naming the service and the reason).

The rule of thumb the expectations follow: at failover, launching nothing for a service with real demand is the
worst outcome; when the sizing is unknown, the primary's running count (said) beats nothing; a service that
cannot be launched at all must not be planned, or the failover's preflight refuses the whole plan.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shadowing.aws import tags as T
from shadowing.blueprint.builder import BuildInputs, BuildResult, build_blueprint
from shadowing.blueprint.diff import diff_blueprints
from shadowing.blueprint.model import Blueprint, blueprint_hash
from shadowing.capacity import fingerprint as F
from shadowing.capacity.sizing import SizingRule
from shadowing.dependencies.configs import ConfigFindings
from shadowing.dependencies.graph import build_graph
from shadowing.dependencies.model import Reference
from shadowing.failover.plan import build_plan as failover_plan
from shadowing.metrics.frame import from_pandas

PRIMARY, SHADOW = "us-east-1", "us-west-2"
START = 1_700_000_000  # a Tuesday, 22:13 UTC
# instances and mean CPU % per instance: the sizing differs from the running count (web 4 × 15 % → 1 instance,
# api 2 × 90 % → 3, worker 3 × 10 % → 1), so a fallback to the running count cannot pass for the sizing
LOAD = {"web": (4, 15.0), "api": (2, 90.0), "worker": (3, 10.0)}
RUNNING = {service: count for service, (count, _) in LOAD.items()}
CALLS = (("web", "api"), ("api", "worker"))


# ───────────────────────────── real inputs ─────────────────────────────

def frame(load: dict[str, tuple[int, float]], *, hours: int = 3, metric: str = "cpu_utilization",
          region: str = PRIMARY, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.arange(START, START + hours * 3600, 60)
    parts = []
    for service, (count, level) in load.items():
        for i in range(count):
            values = np.clip(level + rng.normal(0.0, 3.0, ts.size), 0.0, 100.0) if level else np.zeros(ts.size)
            parts.append(pd.DataFrame({"timestamp": pd.to_datetime(ts, unit="s", utc=True), "region": region,
                                       "service": service, "instance_id": f"i-{service.strip().lower()}-{i}",
                                       "metric": metric, "value": values}))
    return pd.concat(parts, ignore_index=True)


@functools.cache
def _fingerprint(load: tuple[tuple[str, tuple[int, float]], ...], metric: str, rule: SizingRule,
                 region: str) -> dict[str, Any]:
    return F.build(from_pandas(frame(dict(load), metric=metric, region=region)),
                   params=F.ProfileParams(sizing=rule))


def fingerprint(load: dict[str, tuple[int, float]] | None = None, *, metric: str = "cpu_utilization",
                rule: SizingRule | None = None, region: str = PRIMARY) -> dict[str, Any]:
    """A real fingerprint (cached: building one takes ~0.1 s), deep-copied so a test may edit it."""
    return copy.deepcopy(_fingerprint(tuple(sorted((load or LOAD).items())), metric, rule or F.ProfileParams().sizing,
                                      region))


def graph(calls: tuple[tuple[str, str], ...] = CALLS, *, services: tuple[str, ...] = ()) -> dict[str, Any]:
    """A real dependency graph from configuration findings (port 8080 on every callee)."""
    findings = ConfigFindings()
    for name in [n for pair in calls for n in pair] + list(services):
        findings.catalog.add(name)
    findings.references = [Reference(a, b, 8080, "env", f"env {b.upper()}_ADDR") for a, b in calls]
    return build_graph(findings, region=PRIMARY, now=float(START))


def inventory(running: dict[str, int] | None = None, *, templates: dict[str, str] | None = None) -> dict[str, Any]:
    """The primary's inventory: ``running`` instances per service tag (and its security group, port 8080), launch
    templates per service tag."""
    running = RUNNING if running is None else running
    instances = [{"id": f"i-{k:04d}", "type": "t3.large", "ami": f"ami-{svc.strip().lower()}", "subnet": "subnet-a",
                  "az": "us-east-1a", "security_groups": [], "private_ip": f"10.0.0.{k}", "tags": {T.SERVICE: svc}}
                 for k, (svc, _) in enumerate(((s, i) for s, n in sorted(running.items()) for i in range(n)), 1)]
    groups = [{"id": f"sg-{k}", "name": svc, "tags": {T.SERVICE: svc}, "ingress": [
        {"protocol": "tcp", "from_port": 8080, "to_port": 8080, "from_groups": [], "cidrs": ["10.0.0.0/16"]}]}
        for k, svc in enumerate(sorted(running))]
    lts = [{"id": f"lt-{svc}", "name": f"app-{svc}", "tags": {T.SERVICE: svc}, "image_id": ami,
            "instance_type": "t3.large", "env": {}} for svc, ami in sorted((templates or {}).items())]
    return {"region": PRIMARY, "inventory_hash": "inv", "vpcs": [{"id": "vpc-1", "cidr": "10.0.0.0/16", "tags": {}}],
            "subnets": [{"id": "subnet-a", "az": "us-east-1a", "cidr": "10.0.0.0/20", "vpc_id": "vpc-1",
                         "tags": {}}],
            "security_groups": groups, "instances": instances, "launch_templates": lts, "images": {},
            "load_balancers": [], "target_groups": [], "hosted_zones": [], "db_instances": [], "db_clusters": [],
            "buckets": []}


def build(fp: Any = None, g: Any = None, inv: Any = None, **kwargs: Any) -> BuildResult:
    result = build_blueprint(BuildInputs(
        primary_region=PRIMARY, shadow_region=SHADOW, fingerprint=fingerprint() if fp is None else fp,
        graph=graph() if g is None else g, inventory=inventory() if inv is None else inv, **kwargs))
    Blueprint.from_dict(result.payload)  # whatever the inputs, the plan validates
    return result


def counts(result: BuildResult) -> dict[str, int]:
    return {name: spec.count for name, spec in result.blueprint.services.items()}


def failed(result: BuildResult) -> dict[tuple[str, str], str]:
    return {(c.check, c.subject): c.detail for c in result.issues if not c.passed}


def sized(fp: dict[str, Any]) -> dict[str, int | None]:
    return {name: s["sizing"]["instances"] for name, s in fp["services"].items()}


# ───────────────────────────── the handoff as designed ─────────────────────────────

def test_the_blueprint_launches_the_real_fingerprints_sizing_and_says_nothing_about_it() -> None:
    fp = fingerprint()
    assert sized(fp) == {"api": 3, "web": 1, "worker": 1}
    assert sized(fp) != RUNNING
    result = build(fp)
    assert counts(result) == sized(fp)
    assert not [k for k in failed(result) if k[0] in {"sizing", "naming", "drift", "completeness", "fingerprint"}]
    assert result.blueprint.launch_tiers == [["worker"], ["api"], ["web"]]


def test_a_sizing_made_under_another_rule_is_launched_as_recorded() -> None:
    """The rule travels with the sizing: the blueprint launches the recorded count, it never re-sizes."""
    rule = SizingRule(target_utilization=50.0, margin=0.5, name="half-full")
    fp = fingerprint(rule=rule)
    assert sized(fp) != sized(fingerprint())  # the other rule really sized differently
    assert fp["services"]["api"]["sizing"]["rule"]["name"] == "half-full"
    result = build(fp)
    assert counts(result) == sized(fp)
    assert not [k for k in failed(result) if k[0] == "sizing"]


# ───────────────────────────── the fingerprint and the graph disagree ─────────────────────────────

def test_a_service_in_the_graph_and_running_but_absent_from_the_fingerprint_keeps_its_running_count() -> None:
    g = graph((*CALLS, ("api", "search")))
    result = build(g=g, inv=inventory({**RUNNING, "search": 4}))
    assert counts(result)["search"] == 4
    detail = failed(result)[("sizing", "search")]
    assert "not in the fingerprint" in detail and "4" in detail


def test_a_graph_node_neither_running_nor_sized_is_not_launched_and_is_named() -> None:
    result = build(g=graph((*CALLS, ("api", "ledger"))))
    assert "ledger" not in result.blueprint.services
    assert "no capacity" in failed(result)[("completeness", "ledger")]


def test_a_sized_service_without_a_graph_node_is_launched_last_and_named() -> None:
    result = build(g=graph((("web", "api"),)))
    assert counts(result)["worker"] == 1 and result.blueprint.services["worker"].tier == 2  # sized, not 3
    assert ("completeness", "worker") in failed(result)


def test_a_retired_service_the_fingerprint_still_sizes_is_left_out_and_named() -> None:
    """Folds keep a service's history after its instances are gone. Planning it with an unknown AMI made the
    failover's preflight (a blocking `image` check: no AMI and no launch template) refuse the whole plan."""
    fp = fingerprint()
    result = build(fp, inv=inventory({"web": 4, "api": 2}))  # worker retired
    assert "worker" not in result.blueprint.services
    assert "worker" not in {n for tier in result.blueprint.launch_tiers for n in tier}
    detail = failed(result)[("drift", "worker")]
    assert "not running in the primary" in detail and "launch template" in detail
    assert all(s.ami is not None and s.ami.primary != "unknown" and s.instance_type != "unknown"
               for s in result.blueprint.services.values())
    plan = failover_plan(result.blueprint, failover_id="f1", mode="dry_run")
    assert {s.service for s in plan.services} == {"web", "api"}


def test_a_service_with_no_instances_but_a_launch_template_keeps_its_sized_count() -> None:
    """Instances gone (primary trouble, an ASG at 0) but the template says how to launch it: the fingerprint's
    memory is exactly what the failover needs."""
    result = build(inv=inventory({"web": 4, "api": 2}, templates={"worker": "ami-worker-lt"}))
    spec = result.blueprint.services["worker"]
    assert spec.count == 1 and spec.ami is not None and spec.ami.primary == "ami-worker-lt"
    assert "launch template" in failed(result)[("drift", "worker")]


def test_unknown_sizing_and_no_instance_running_falls_back_to_the_fingerprints_observed_count() -> None:
    """No usable sizing (no cpu aggregate) and nothing running now: the fingerprint still saw 3 instances; 0 would
    launch nothing for a service with real demand."""
    fp = fingerprint(metric="memory_utilization")
    assert sized(fp)["worker"] is None
    result = build(fp, inv=inventory({"web": 4, "api": 2}, templates={"worker": "ami-worker-lt"}))
    assert counts(result)["worker"] == 3
    detail = failed(result)[("sizing", "worker")]
    assert "no cpu_utilization aggregate" in detail and "observed" in detail and "3" in detail


# ───────────────────────────── the sizing says None or 0 ─────────────────────────────

def test_no_aggregate_for_the_sizing_metric_falls_back_to_the_running_count_with_the_reason() -> None:
    fp = fingerprint(metric="memory_utilization")
    assert set(sized(fp).values()) == {None}
    result = build(fp)
    assert counts(result) == RUNNING
    for name in ("web", "api", "worker"):
        detail = failed(result)[("sizing", name)]
        assert "no cpu_utilization aggregate to size from" in detail and "running" in detail


def test_demand_beyond_any_count_falls_back_to_the_running_count_with_the_reason() -> None:
    rule = SizingRule(target_utilization=5e-324)  # one instance carries (almost) nothing: any demand overflows
    fp = fingerprint(rule=rule)
    assert sized(fp)["api"] is None and "beyond any instance count" in fp["services"]["api"]["sizing"]["reason"]
    result = build(fp)
    assert counts(result)["api"] == 2
    assert "beyond any instance count" in failed(result)[("sizing", "api")]


def test_sized_zero_while_the_primary_runs_it_launches_one_and_says_so() -> None:
    """min_instances 0 and no CPU demand: 0 would remove the service from the shadow although the primary runs it
    (its callers would fail). One instance keeps it reachable, and the departure is named."""
    load = {**LOAD, "worker": (2, 0.0)}
    fp = fingerprint(load, rule=SizingRule(min_instances=0))
    assert sized(fp)["worker"] == 0
    result = build(fp, inv=inventory({**RUNNING, "worker": 2}))
    assert counts(result)["worker"] == 1
    detail = failed(result)[("sizing", "worker")]
    assert "0" in detail and "2 run" in detail and "min_instances 0" in detail
    assert counts(result)["api"] == sized(fp)["api"]  # the other sizings untouched


def test_sized_zero_and_nothing_running_launches_nothing() -> None:
    load = {**LOAD, "worker": (2, 0.0)}
    fp = fingerprint(load, rule=SizingRule(min_instances=0))
    result = build(fp, inv=inventory({"web": 4, "api": 2}, templates={"worker": "ami-worker-lt"}))
    assert counts(result)["worker"] == 0


# ───────────────────────────── names that differ by case or spaces ─────────────────────────────

def test_case_variants_across_fingerprint_graph_and_tags_are_one_service() -> None:
    """Raw CloudWatch exports lower-case the service (file stem), the dependency catalog keeps the first spelling
    it met, EC2 keeps the tag: one service, the primary's tag names it, the sizing and the graph still apply."""
    fp = fingerprint({"Web": (4, 15.0), "API": (2, 90.0), "worker": (3, 10.0)})
    g = graph((("WEB", "Api"), ("Api", "worker")))
    result = build(fp, g)
    assert set(result.blueprint.services) == {"web", "api", "worker"}
    assert counts(result) == {"web": 1, "api": 3, "worker": 1}
    assert result.blueprint.launch_tiers == [["worker"], ["api"], ["web"]]
    assert {r.from_service for r in result.blueprint.networking.security_groups["api"].ingress} == {"web"}
    problems = failed(result)
    assert "'Web'" in problems[("naming", "web")] and "'WEB'" in problems[("naming", "web")]
    assert "'API'" in problems[("naming", "api")]
    assert not [k for k in problems if k[0] in {"sizing", "drift", "completeness"}]


def test_a_tag_with_surrounding_spaces_is_the_same_service() -> None:
    inv = inventory({"web ": 4, " api": 2, "worker": 3})
    result = build(inv=inv)
    assert counts(result) == sized(fingerprint())
    assert result.blueprint.launch_tiers == [["worker"], ["api"], ["web"]]
    assert not [k for k in failed(result) if k[0] in {"sizing", "drift", "completeness"}]


def test_a_name_matching_several_primary_services_is_not_guessed() -> None:
    fp = fingerprint({"WEB": (4, 15.0), "api": (2, 90.0), "worker": (3, 10.0)})
    result = build(fp, inv=inventory({"web": 2, "Web": 2, "api": 2, "worker": 3}))
    assert counts(result)["web"] == 2 and counts(result)["Web"] == 2  # running counts, not the sizing (1)
    assert "WEB" not in result.blueprint.services
    assert "several" in failed(result)[("naming", "WEB")]


# ───────────────────────────── the fingerprint itself is off ─────────────────────────────

def test_a_fingerprint_of_another_region_is_not_used_for_sizing() -> None:
    fp = fingerprint(rule=SizingRule(target_utilization=10.0), region="eu-west-1")  # sizes 10× the running count
    assert fp["region"] == "eu-west-1"
    result = build(fp)
    assert counts(result) == RUNNING
    detail = failed(result)[("fingerprint", "region")]
    assert "eu-west-1" in detail and PRIMARY in detail


def test_an_empty_fingerprint_falls_back_to_running_counts_for_every_service() -> None:
    fp = {**fingerprint(), "services": {}}
    result = build(fp)
    assert counts(result) == RUNNING
    assert {k for k in failed(result) if k[0] == "sizing"} == {("sizing", "web"), ("sizing", "api"),
                                                               ("sizing", "worker")}


@pytest.mark.parametrize("services", [[], "web", 7])
def test_a_fingerprint_whose_services_are_not_an_object_is_named_not_a_crash(services: Any) -> None:
    result = build({**fingerprint(), "services": services})
    assert counts(result) == RUNNING
    assert ("fingerprint", "services") in failed(result)


@pytest.mark.parametrize(("instances", "expected", "why"), [
    (math.nan, 2, "not a finite"), (math.inf, 2, "not a finite"), (-2, 2, "negative"), (True, 2, "not a number"),
    ("4", 2, "not a number"), (2.5, 3, None), (4.0, 4, None), (0, 1, "0")])
def test_a_malformed_count_is_named_and_never_a_crash_or_a_silent_zero(instances: Any, expected: int,
                                                                       why: str | None) -> None:
    fp = fingerprint()
    fp["services"]["api"]["sizing"]["instances"] = instances
    result = build(fp)
    assert counts(result)["api"] == expected  # 2 running; 2.5 instances round up
    if why is None:
        assert ("sizing", "api") not in failed(result)
    else:
        assert why in failed(result)[("sizing", "api")]


def test_a_sizing_whose_rule_cannot_be_replayed_is_not_trusted() -> None:
    """A negative margin sizes below demand: a recorded rule the sizing package refuses discredits its count."""
    fp = fingerprint()
    fp["services"]["api"]["sizing"]["rule"]["margin"] = -0.5
    fp["services"]["api"]["sizing"]["instances"] = 1
    result = build(fp)
    assert counts(result)["api"] == 2
    detail = failed(result)[("sizing", "api")]
    assert "margin" in detail and "rule" in detail


# ───────────────────────────── idempotence ─────────────────────────────

def test_the_same_demand_refingerprinted_gives_the_same_blueprint_hash() -> None:
    first = F.build(from_pandas(frame(LOAD)))
    again = F.build(from_pandas(frame(LOAD)))  # another generated_at, same content
    a, b = build(first, fingerprint_id=1).payload, build(again, fingerprint_id=2, run_id="later").payload
    assert blueprint_hash(a) == blueprint_hash(b)
    fallback = {**first, "services": {}}
    assert blueprint_hash(build(fallback).payload) == blueprint_hash(build(copy.deepcopy(fallback)).payload)


def test_a_changed_sizing_changes_the_hash_and_the_diff_names_the_service_and_the_count() -> None:
    before = build(fingerprint()).payload
    busier = fingerprint({**LOAD, "api": (3, 90.0)})  # 270 % of CPU → 4 instances
    after = build(busier).payload
    assert blueprint_hash(before) != blueprint_hash(after)
    assert diff_blueprints(before, after)["services_changed"] == {"api": {"count": {"from": 3, "to": 4}}}
