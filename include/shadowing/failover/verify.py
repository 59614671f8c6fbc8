"""Verification after a failover: counted from the cloud's own state, never from the plan's intentions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from shadowing.blueprint.model import Blueprint
from shadowing.failover.launcher import census, target_group_arns
from shadowing.failover.network import find_zone, zone_for
from shadowing.failover.plan import FailoverPlan
from shadowing.failover.traffic import traffic_on_shadow


def instance_census(ec2: Any, plan: FailoverPlan,
                    instances: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Expected vs present per service: duplicates (surplus) and missing instances (counted by tags + states)."""
    instances = census(ec2, plan.failover_id) if instances is None else instances
    present = Counter(service for service, _state in instances.values())
    expected = {s.service: s.count for s in plan.services}
    duplicates = sum(max(0, present.get(name, 0) - n) for name, n in expected.items()) + \
        sum(n for name, n in present.items() if name not in expected)
    missing = sum(max(0, n - present.get(name, 0)) for name, n in expected.items())
    return {"instances_expected": sum(expected.values()), "instances_launched": sum(present.values()),
            "duplicates": duplicates, "missing": missing,
            "per_service": {name: {"expected": n, "present": present.get(name, 0)}
                            for name, n in sorted(expected.items())}}


def verify_failover(ec2: Any, elbv2: Any, route53: Any, blueprint: Blueprint, plan: FailoverPlan) -> dict[str, Any]:
    """Instances exact, targets healthy, service DNS present, traffic on the shadow (live). Problems listed."""
    instances = census(ec2, plan.failover_id)
    counted = instance_census(ec2, plan, instances)
    problems: list[str] = []
    if counted["duplicates"] or counted["missing"]:
        problems.append(f"instances: {counted['duplicates']} duplicate(s), {counted['missing']} missing")
    launched = {i for i, (_service, state) in instances.items() if state == "running"}
    wanted = {s.target_group for s in plan.services if s.target_group}
    unhealthy = 0
    for name, arn in target_group_arns(elbv2, wanted).items():
        states = {d["Target"]["Id"]: d["TargetHealth"]["State"]
                  for d in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}
        unhealthy += sum(1 for i, s in states.items() if i in launched and s != "healthy")
        expected = next(s for s in plan.services if s.target_group == name)
        registered = sum(1 for i in states if i in launched)
        if registered < expected.count:
            problems.append(f"target group {name}: {registered}/{expected.count} registered")
    if unhealthy:
        problems.append(f"{unhealthy} unhealthy target(s)")
    if blueprint.networking.vpc.id and find_zone(route53, zone_for(plan.primary_region, plan.failover_id,
                                                                   plan.mode)) is None:
        problems.append("internal DNS zone missing")
    if plan.mode == "live":
        problems.extend(traffic_on_shadow(route53, elbv2, blueprint))
    return {**counted, "unhealthy_targets": unhealthy, "problems": problems, "ok": not problems}
