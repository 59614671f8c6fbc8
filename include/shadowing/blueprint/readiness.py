"""Readiness checks run on every refresh; a region is "ready" only when every check passes.

Checks: ``region_known``, ``freshness`` (fingerprint and graph), ``blueprint_valid``, ``ami_available``,
``quota`` (VPC quotas through Service Quotas; EC2 vCPUs where the API answers — moto 5.2 implements only the
``vpc`` service code of Service Quotas, so there the vCPU check reports "not verifiable" and is not counted as
a failure), ``drift`` (blueprint vs live primary: services added/removed, instance types, ports),
``completeness`` (capacity ↔ graph), ``sizing``, ``prestaged`` (launch templates, security groups, subnets and
replicas present in the shadow).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shadowing.blueprint.builder import service_of
from shadowing.blueprint.inventory import ClientFactory
from shadowing.warehouse.operations import ReadinessCheck

log = logging.getLogger(__name__)

EC2_VCPU_QUOTA = ("ec2", "L-1216C47A")  # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances
VPC_SECURITY_GROUPS_PER_REGION = ("vpc", "L-E79EC296")
VPC_RULES_PER_SECURITY_GROUP = ("vpc", "L-0EA8095F")
VPC_SUBNETS_PER_VPC = ("vpc", "L-407747CB")
# How far ahead of this run's clock an input may be dated and still count as fresh: worker clocks drift by
# seconds, not minutes; an input from further in the future carries a wrong clock or window.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """Regions botocore's bundled endpoint data knows for EC2 (offline, no API call)."""
    import boto3

    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def check_regions(primary: str, shadow: str) -> list[ReadinessCheck]:
    known = known_regions()
    return [ReadinessCheck("region_known", region, region in known,
                           "" if region in known else f"{region} is not an AWS region")
            for region in (primary, shadow)]


def check_freshness(name: str, created: datetime | None, now: datetime, max_age: timedelta) -> ReadinessCheck:
    if created is None:
        return ReadinessCheck("freshness", name, False, f"no valid {name} in the warehouse")
    age = now - created
    if age < -CLOCK_SKEW_TOLERANCE:
        # Negative ages used to pass: a skewed clock or a wrong window then counted as fresh until it came true.
        return ReadinessCheck("freshness", name, False,
                              f"dated {int(-age.total_seconds())} s after this run's clock ({created.isoformat()}): "
                              f"clock skew or a wrong window, not trusted as fresh")
    ok = age <= max_age
    return ReadinessCheck("freshness", name, ok,
                          f"age {int(age.total_seconds())} s" + ("" if ok else f" > {int(max_age.total_seconds())} s"))


def _quota(quotas: Any, code: tuple[str, str]) -> float | None:
    try:
        return float(quotas.get_service_quota(ServiceCode=code[0], QuotaCode=code[1])["Quota"]["Value"])
    except (ClientError, BotoCoreError, KeyError) as exc:
        log.info("service quota %s/%s unavailable: %s", code[0], code[1], exc)
        return None


def check_quotas(clients: ClientFactory, blueprint: Mapping[str, Any], *,
                 prestaged_groups: int = 0) -> list[ReadinessCheck]:
    """Headroom in the shadow for the sized capacity and the pre-staged network."""
    shadow = blueprint["shadow_region"]
    checks: list[ReadinessCheck] = []
    quotas = clients("service-quotas", shadow)
    ec2 = clients("ec2", shadow)
    services = blueprint.get("services") or {}
    compute = {n: s for n, s in services.items() if s.get("kind", "compute") == "compute"}
    vcpu_quota = _quota(quotas, EC2_VCPU_QUOTA)
    types = sorted({s["instance_type"] for s in compute.values() if s.get("instance_type") not in (None, "unknown")})
    vcpus: dict[str, int] = {}
    try:
        for start in range(0, len(types), 100):
            for it in ec2.describe_instance_types(InstanceTypes=types[start:start + 100])["InstanceTypes"]:
                vcpus[it["InstanceType"]] = int(it["VCpuInfo"]["DefaultVCpus"])
    except (ClientError, BotoCoreError) as exc:
        log.info("describe_instance_types: %s", exc)
    needed = sum(int(s.get("count") or 0) * vcpus.get(s.get("instance_type"), 2) for s in compute.values())
    if vcpu_quota is None:
        checks.append(ReadinessCheck("quota", "ec2-vcpus", True,
                                     f"not verifiable: Service Quotas has no ec2/{EC2_VCPU_QUOTA[1]} here "
                                     f"(needed {needed} vCPUs)"))
    else:
        checks.append(ReadinessCheck("quota", "ec2-vcpus", needed <= vcpu_quota,
                                     f"needed {needed} vCPUs, quota {vcpu_quota:.0f}"))
    groups = len((blueprint.get("networking") or {}).get("security_groups") or {})
    sg_quota = _quota(quotas, VPC_SECURITY_GROUPS_PER_REGION)
    if sg_quota is not None:
        try:
            in_use = len(ec2.describe_security_groups()["SecurityGroups"])
        except (ClientError, BotoCoreError):
            in_use = 0
        to_create = max(0, groups - prestaged_groups)  # pre-staged ones are already in in_use
        checks.append(ReadinessCheck("quota", "security-groups-per-region", in_use + to_create <= sg_quota,
                                     f"{in_use} in use + {to_create} to create, quota {sg_quota:.0f}"))
    rules_quota = _quota(quotas, VPC_RULES_PER_SECURITY_GROUP)
    if rules_quota is not None:
        widest = max((len(sg.get("ingress") or []) for sg in
                      ((blueprint.get("networking") or {}).get("security_groups") or {}).values()), default=0)
        checks.append(ReadinessCheck("quota", "rules-per-security-group", widest <= rules_quota,
                                     f"widest group has {widest} ingress rules, quota {rules_quota:.0f}"))
    subnet_quota = _quota(quotas, VPC_SUBNETS_PER_VPC)
    if subnet_quota is not None:
        subnets = len((blueprint.get("networking") or {}).get("subnets") or [])
        checks.append(ReadinessCheck("quota", "subnets-per-vpc", subnets <= subnet_quota,
                                     f"{subnets} subnets, quota {subnet_quota:.0f}"))
    return checks


def live_summary(inventory: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Compact view of the live primary for drift checks: service → {instance_type (majority), ports}."""
    types: dict[str, Counter[str]] = {}
    for inst in inventory.get("instances", []):
        name = service_of(inst.get("tags"))
        if name:
            types.setdefault(name, Counter())[inst.get("type") or "unknown"] += 1
    for db in inventory.get("db_instances", []):
        name = service_of(db.get("tags"))
        if name:
            types.setdefault(name, Counter())[db.get("instance_class") or "unknown"] += 1
    ports: dict[str, set[int]] = {}
    for g in inventory.get("security_groups", []):
        name = service_of(g.get("tags"))
        if name:
            ports.setdefault(name, set()).update(
                int(r["from_port"]) for r in g.get("ingress", [])
                if r.get("from_port") is not None and r.get("from_port") == r.get("to_port"))
    return {name: {"instance_type": sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0],
                   "ports": sorted(ports.get(name, set()))} for name, c in sorted(types.items())}


def check_drift(blueprint: Mapping[str, Any], live: Mapping[str, Mapping[str, Any]]) -> list[ReadinessCheck]:
    """The blueprint against the live primary: services added/removed, instance types, ports."""
    services = blueprint.get("services") or {}
    checks: list[ReadinessCheck] = []
    for name in sorted(set(live) - set(services)):
        checks.append(ReadinessCheck("drift", name, False, "runs in the primary but is not in the blueprint"))
    for name in sorted(set(services) - set(live)):
        checks.append(ReadinessCheck("drift", name, False, "in the blueprint but no longer runs in the primary"))
    for name in sorted(set(services) & set(live)):
        spec, now = services[name], live[name]
        problems = []
        if spec.get("instance_type") != now["instance_type"]:
            problems.append(f"instance type {spec.get('instance_type')} in the blueprint, {now['instance_type']} live")
        missing_ports = set(now.get("ports") or []) - set(spec.get("ports") or [])
        if missing_ports:
            problems.append(f"live ports {sorted(missing_ports)} not in the blueprint")
        if problems:
            checks.append(ReadinessCheck("drift", name, False, "; ".join(problems)))
    if not checks:
        checks.append(ReadinessCheck("drift", "services", True, f"{len(services)} services match the primary"))
    return checks


def check_amis(blueprint: Mapping[str, Any]) -> list[ReadinessCheck]:
    missing = sorted(n for n, s in (blueprint.get("services") or {}).items()
                     if s.get("kind", "compute") == "compute" and not (s.get("ami") or {}).get("shadow"))
    if not missing:
        return [ReadinessCheck("ami_available", "services", True, "every compute service has an AMI in the shadow")]
    return [ReadinessCheck("ami_available", n, False,
                           f"{(blueprint['services'][n].get('ami') or {}).get('primary')} has no copy in "
                           f"{blueprint.get('shadow_region')}") for n in missing]


def check_prestaged(blueprint: Mapping[str, Any], state: Mapping[str, Any]) -> list[ReadinessCheck]:
    """Every data-free piece the failover needs exists in the shadow."""
    checks: list[ReadinessCheck] = []
    missing: list[str] = []
    if not state.get("vpc"):
        missing.append("vpc")
    subnets = state.get("subnets") or {}
    missing += [f"subnet {s['cidr']}" for s in (blueprint.get("networking") or {}).get("subnets") or []
                if s["cidr"] not in subnets]
    groups = state.get("security_groups") or {}
    missing += [f"security-group {n}" for n in sorted((blueprint.get("networking") or {}).get("security_groups") or {})
                if n not in groups]
    templates = state.get("launch_templates") or {}
    for _name, svc in sorted((blueprint.get("services") or {}).items()):
        lt = svc.get("launch_template")
        if svc.get("kind", "compute") == "compute" and lt and lt["name"] not in templates:
            missing.append(f"launch-template {lt['name']}")
    replicas = state.get("replicas") or {}
    missing += [f"replica {r['target']['identifier']}" for r in blueprint.get("replication") or []
                if r["kind"] == "rds" and r["target"]["identifier"] not in replicas]
    checks.append(ReadinessCheck("prestaged", "shadow", not missing,
                                 "all pre-staged" if not missing else "missing: " + ", ".join(missing[:20])
                                 + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else "")))
    return checks


def summarise(checks: Iterable[ReadinessCheck]) -> dict[str, Any]:
    items = list(checks)
    failures = [c for c in items if not c.passed]
    return {"ready": bool(items) and not failures, "checks": len(items), "failures": len(failures),
            "failed": [f"{c.check}:{c.subject}: {c.detail}" for c in failures[:50]]}


def utcnow() -> datetime:
    return datetime.now(UTC)
