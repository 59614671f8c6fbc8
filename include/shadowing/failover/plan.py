"""The failover plan: what launches where, in which order, with which capacity — built from a blueprint alone.

Pure (no AWS, no database), so a dry run renders exactly what a live run would do, and unit tests cover tier
ordering, cycle groups and capacity scaling without any emulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from shadowing.blueprint.model import Blueprint, ServiceBlueprint
from shadowing.errors import InputError

Mode = Literal["dry_run", "drill", "live"]
Trigger = Literal["manual", "sensor"]
MODES: tuple[str, ...] = ("dry_run", "drill", "live")
TRIGGERS: tuple[str, ...] = ("manual", "sensor")
STEPS: tuple[str, ...] = ("prepare", "preflight", "launch", "network", "traffic", "replication", "verify")


@dataclass(frozen=True)
class ServiceLaunch:
    """One compute service's launch: how many instances in which subnets."""

    service: str
    tier: int
    group: str | None
    count: int
    instance_type: str
    ami: str | None
    subnets: list[str]
    per_subnet: dict[str, int]
    security_groups: list[str]
    launch_template: str
    launch_template_id: str | None
    target_group: str | None
    target_port: int | None
    extra_tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "tier": self.tier, "group": self.group, "count": self.count,
                "instance_type": self.instance_type, "ami": self.ami, "subnets": list(self.subnets),
                "per_subnet": dict(self.per_subnet), "security_groups": list(self.security_groups),
                "launch_template": self.launch_template, "launch_template_id": self.launch_template_id,
                "target_group": self.target_group, "target_port": self.target_port,
                "extra_tags": dict(self.extra_tags)}


@dataclass(frozen=True)
class LaunchGroup:
    """Services launched and awaited together: one service, or all members of one dependency cycle."""

    name: str
    services: list[ServiceLaunch]

    @property
    def is_cycle(self) -> bool:
        return any(s.group is not None for s in self.services)


@dataclass(frozen=True)
class TierPlan:
    index: int
    groups: list[LaunchGroup]

    @property
    def services(self) -> list[ServiceLaunch]:
        return [s for g in self.groups for s in g.services]


@dataclass(frozen=True)
class FailoverPlan:
    """Everything a failover will do, in order (rendered into the task log and the failover event)."""

    failover_id: str
    primary_region: str
    shadow_region: str
    mode: str
    capacity_percent: int
    blueprint_version: int | None
    tiers: list[TierPlan]
    managed_services: list[str]
    traffic_changes: list[dict[str, Any]]
    replication: list[dict[str, Any]]
    networking: dict[str, Any]

    @property
    def services(self) -> list[ServiceLaunch]:
        return [s for t in self.tiers for s in t.services]

    @property
    def instances_expected(self) -> int:
        return sum(s.count for s in self.services)

    def service(self, name: str) -> ServiceLaunch:
        for launch in self.services:
            if launch.service == name:
                return launch
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failover_id": self.failover_id, "primary_region": self.primary_region,
            "shadow_region": self.shadow_region, "mode": self.mode, "capacity_percent": self.capacity_percent,
            "blueprint_version": self.blueprint_version, "instances_expected": self.instances_expected,
            "tiers": [{"tier": t.index, "groups": [{"name": g.name, "cycle": g.is_cycle,
                                                    "services": [s.to_dict() for s in g.services]}
                                                   for g in t.groups]} for t in self.tiers],
            "managed_services": list(self.managed_services), "networking": self.networking,
            "traffic_changes": self.traffic_changes, "replication": self.replication,
        }

    def render(self) -> str:
        """Human-readable plan for the task log."""
        lines = [f"Failover {self.failover_id} ({self.mode}): {self.primary_region} → {self.shadow_region}, "
                 f"blueprint v{self.blueprint_version}, capacity {self.capacity_percent}%, "
                 f"{len(self.services)} services / {self.instances_expected} instances"]
        for tier in self.tiers:
            lines.append(f"  tier {tier.index}:")
            for group in tier.groups:
                prefix = f"    cycle {group.name}: " if group.is_cycle else "    "
                for s in group.services:
                    where = ", ".join(f"{k}×{v}" for k, v in s.per_subnet.items())
                    lb = f" → target group {s.target_group}:{s.target_port}" if s.target_group else ""
                    lines.append(f"{prefix}{s.service}: {s.count} × {s.instance_type} ({s.ami}) in {where}{lb}")
        if self.managed_services:
            lines.append(f"  managed (via replication): {', '.join(self.managed_services)}")
        net = self.networking
        lines.append(f"  network: {net.get('security_group_rules', 0)} ingress rules, "
                     f"{len(net.get('target_groups', []))} target groups, private zone {net.get('private_zone')}")
        if self.traffic_changes:
            for change in self.traffic_changes:
                lines.append(f"  traffic: {change['name']} {change['type']} → {change['to']} ({change['strategy']})")
        else:
            lines.append("  traffic: production records untouched" + (" (drill)" if self.mode == "drill" else ""))
        for step in self.replication:
            lines.append(f"  replication: {step['action']} {step['source']} → {step['target']}")
        return "\n".join(lines)


def scaled_count(count: int, capacity_percent: int) -> int:
    """Instances at ``capacity_percent`` of the blueprint (rounded up; a running service keeps ≥ 1)."""
    if count <= 0:
        return 0
    return max(1, math.ceil(count * capacity_percent / 100))


def spread(count: int, subnets: list[str]) -> dict[str, int]:
    """Round-robin ``count`` instances over ``subnets`` (first subnets get the remainder)."""
    if not subnets:
        return {}
    base, extra = divmod(count, len(subnets))
    return {s: base + (1 if i < extra else 0) for i, s in enumerate(subnets)}


def _launch(spec: ServiceBlueprint, capacity_percent: int) -> ServiceLaunch:
    count = scaled_count(spec.count, capacity_percent)
    subnets = sorted(spec.subnets)
    return ServiceLaunch(
        service=spec.name, tier=spec.tier, group=spec.group, count=count, instance_type=spec.instance_type,
        ami=spec.ami.shadow, subnets=subnets, per_subnet=spread(count, subnets),
        security_groups=sorted(spec.security_groups), launch_template=spec.launch_template.name,
        launch_template_id=spec.launch_template.id,
        target_group=spec.target_group.name if spec.target_group else None,
        target_port=spec.target_group.port if spec.target_group else None, extra_tags=dict(spec.tags))


def launch_tiers(blueprint: Blueprint, capacity_percent: int = 100) -> list[TierPlan]:
    """Compute services per tier in the blueprint's dependency order; cycle members form one group."""
    tiers: list[TierPlan] = []
    for index, names in enumerate(blueprint.launch_tiers):
        groups: dict[str, list[ServiceLaunch]] = {}
        for name in sorted(names):
            spec = blueprint.services[name]
            if spec.kind != "compute":
                continue
            key = f"cycle:{spec.group}" if spec.group else name
            groups.setdefault(key, []).append(_launch(spec, capacity_percent))
        tiers.append(TierPlan(index=index, groups=[LaunchGroup(name=k.removeprefix("cycle:"), services=v)
                                                   for k, v in sorted(groups.items())]))
    return [t for t in tiers if t.groups]


def private_zone_name(primary_region: str) -> str:
    """Internal DNS zone of the shadow: every service resolves as ``<service>.<zone>``."""
    return f"{primary_region}.shadow.internal."


def build_plan(blueprint: Blueprint, *, failover_id: str, mode: str, capacity_percent: int = 100,
               blueprint_version: int | None = None) -> FailoverPlan:
    """The full plan for one failover. Validates mode and capacity (InputError names the field)."""
    if mode not in MODES:
        raise InputError(f"must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    if isinstance(capacity_percent, bool) or not isinstance(capacity_percent, int) \
            or not 1 <= capacity_percent <= 200:
        raise InputError(f"must be an integer percentage 1..200, got {capacity_percent!r}",
                         field="capacity_percent")
    lb = blueprint.networking.load_balancer
    traffic = blueprint.traffic
    changes: list[dict[str, Any]] = []
    if mode == "live":
        strategy = traffic.strategy
        for record in traffic.records:
            changes.append({"name": record.name, "type": record.type, "set_identifier": record.set_identifier,
                            "failover": record.failover, "from": record.primary_target,
                            "to": record.shadow_target, "strategy": strategy,
                            "steps": list(traffic.weighted_steps) if strategy == "weighted" else [100]})
    replication = [{"kind": r.kind, "action": r.action, "source": r.source.identifier,
                    "target": r.target.identifier, "service": r.service} for r in blueprint.replication] \
        if mode == "live" else []
    networking = {
        "vpc": blueprint.networking.vpc.id, "private_zone": private_zone_name(blueprint.primary_region),
        "security_group_rules": sum(len(sg.ingress) for sg in blueprint.networking.security_groups.values()),
        "load_balancer": lb.name if lb else None,
        "target_groups": sorted(g.name for g in lb.target_groups) if lb else [],
        "listeners": sorted(f"{x.protocol}:{x.port}→{x.target_group}" for x in lb.listeners) if lb else [],
    }
    return FailoverPlan(
        failover_id=failover_id, primary_region=blueprint.primary_region, shadow_region=blueprint.shadow_region,
        mode=mode, capacity_percent=capacity_percent, blueprint_version=blueprint_version,
        tiers=launch_tiers(blueprint, capacity_percent),
        managed_services=sorted(n for n, s in blueprint.services.items() if s.kind != "compute"),
        traffic_changes=changes, replication=replication, networking=networking)
