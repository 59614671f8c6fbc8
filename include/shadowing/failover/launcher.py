"""Idempotent, fault-tolerant instance launches: count what exists by tags, create only what is missing.

Every instance a failover creates carries its failover id, service, tier, mode and ROLE=launched as tags set
atomically by RunInstances (TagSpecifications), so "what exists" is always answerable by
``describe_instances`` with tag filters. A create is:

    existing = count(failover, service, subnet)           # any state but shutting-down/terminated
    run_instances(Min=Max=target-existing, ClientToken=hash(failover, service, subnet, existing))

on a single-attempt client. On ANY error (throttled, 5xx, or a dropped response where the call may have
happened) we back off and RE-COUNT before creating again, so a retried call, a retried task, a cleared task or a
killed worker all converge to exactly the planned count. The ClientToken makes real AWS return the original
reservation for a repeat of the same create; it changes when ``existing`` changes, so it never collides with a
different request (IdempotentParameterMismatch). A surplus (two racing workers) is terminated, newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shadowing.aws import tags as tag_keys
from shadowing.failover.backoff import Backoff, error_code, is_retryable, poll_until
from shadowing.failover.identity import client_token
from shadowing.failover.plan import ServiceLaunch, TierPlan

log = logging.getLogger(__name__)

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
MAX_WORKERS = 16
CREATE_BACKOFF = Backoff(attempts=10)


@dataclass(frozen=True)
class LaunchContext:
    failover_id: str
    mode: str
    blueprint_version: int | None
    primary_region: str


@dataclass
class ServiceResult:
    service: str
    expected: int
    instance_ids: list[str] = field(default_factory=list)
    created: int = 0
    create_calls: int = 0
    retries: int = 0
    terminated_surplus: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "expected": self.expected, "present": len(self.instance_ids),
                "created": self.created, "create_calls": self.create_calls, "retries": self.retries,
                "terminated_surplus": list(self.terminated_surplus)}


def instance_tags(ctx: LaunchContext, launch: ServiceLaunch) -> dict[str, str]:
    tags = dict(launch.extra_tags)
    tags.update({
        "Name": f"{launch.service}-shadow",
        tag_keys.FAILOVER_ID: ctx.failover_id,
        tag_keys.MODE: ctx.mode,
        tag_keys.TIER: str(launch.tier),
        tag_keys.SERVICE: launch.service,
        tag_keys.ROLE: "launched",
        tag_keys.PRESTAGED_FOR: ctx.primary_region,
        tag_keys.BLUEPRINT_VERSION: str(ctx.blueprint_version or ""),
    })
    return tags


def describe_tagged(ec2: Any, failover_id: str, *, service: str | None = None, tier: int | None = None,
                    states: Iterable[str] = LIVE_STATES, role: str | None = None) -> list[dict[str, Any]]:
    """Instances of one failover (optionally one service/tier), any live state, all pages."""
    filters = [{"Name": f"tag:{tag_keys.FAILOVER_ID}", "Values": [failover_id]},
               {"Name": "instance-state-name", "Values": list(states)}]
    if service is not None:
        filters.append({"Name": f"tag:{tag_keys.SERVICE}", "Values": [service]})
    if tier is not None:
        filters.append({"Name": f"tag:{tag_keys.TIER}", "Values": [str(tier)]})
    if role is not None:
        filters.append({"Name": f"tag:{tag_keys.ROLE}", "Values": [role]})
    found: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters,
                                                                  PaginationConfig={"PageSize": 1000}):
        for reservation in page["Reservations"]:
            found.extend(reservation["Instances"])
    return found


def _placement_key(instance: dict[str, Any], subnets: list[str]) -> str:
    """Which planned subnet (id or AZ name) an existing instance counts towards."""
    subnet = instance.get("SubnetId")
    if subnet in subnets:
        return subnet
    zone = (instance.get("Placement") or {}).get("AvailabilityZone")
    return zone if zone in subnets else (subnet or zone or "?")


def count_by_placement(instances: Iterable[dict[str, Any]], subnets: list[str]) -> dict[str, list[str]]:
    """Instance ids per planned subnet, sorted by id (deterministic surplus choice)."""
    result: dict[str, list[str]] = {s: [] for s in subnets}
    for instance in instances:
        result.setdefault(_placement_key(instance, subnets), []).append(instance["InstanceId"])
    return {k: sorted(v) for k, v in result.items()}


def missing_per_subnet(plan: dict[str, int], existing: dict[str, list[str]]) -> dict[str, int]:
    """Instances still to create per subnet (never negative)."""
    return {s: max(0, n - len(existing.get(s, []))) for s, n in plan.items()}


def surplus(plan: dict[str, int], existing: dict[str, list[str]]) -> list[str]:
    """Instances beyond the plan (per subnet; plus any in a subnet the plan does not name), newest ids last."""
    extra: list[str] = []
    for subnet, ids in existing.items():
        keep = plan.get(subnet, 0)
        extra.extend(ids[keep:])
    return extra


def _run_request(ctx: LaunchContext, launch: ServiceLaunch, subnet: str, count: int, existing: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "MinCount": count, "MaxCount": count, "InstanceType": launch.instance_type,
        "ClientToken": client_token(ctx.failover_id, launch.service, subnet, existing),
        "TagSpecifications": [{"ResourceType": "instance",
                               "Tags": tag_keys.to_aws(instance_tags(ctx, launch))}],
    }
    if launch.ami:
        request["ImageId"] = launch.ami
    if launch.launch_template_id:
        request["LaunchTemplate"] = {"LaunchTemplateId": launch.launch_template_id}
    if subnet.startswith("subnet-"):
        request["SubnetId"] = subnet
        groups = [g for g in launch.security_groups if g.startswith("sg-")]
        if groups:
            request["SecurityGroupIds"] = groups
    else:  # an availability-zone name: the shadow was not pre-staged with subnet ids
        request["Placement"] = {"AvailabilityZone": subnet}
    return request


def ensure_service(ec2: Any, ec2_create: Any, ctx: LaunchContext, launch: ServiceLaunch, *,
                   existing: list[dict[str, Any]] | None = None, policy: Backoff = CREATE_BACKOFF,
                   sleep: Callable[[float], None] | None = None) -> ServiceResult:
    """Bring one service to exactly its planned count (see module doc). ``existing`` skips the first count."""
    import time

    pause = sleep or time.sleep
    result = ServiceResult(service=launch.service, expected=launch.count)
    current = count_by_placement(existing if existing is not None
                                 else describe_tagged(ec2, ctx.failover_id, service=launch.service),
                                 launch.subnets)
    failures = 0
    while True:
        missing = missing_per_subnet(launch.per_subnet, current)
        if not any(missing.values()):
            break
        subnet = next(s for s, n in missing.items() if n > 0)
        request = _run_request(ctx, launch, subnet, missing[subnet], len(current.get(subnet, [])))
        try:
            result.create_calls += 1
            response = ec2_create.run_instances(**request)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            failures += 1
            result.retries += 1
            if failures >= policy.attempts:
                raise
            log.info("%s: create in %s failed (%s); re-counting before retry %d", launch.service, subnet,
                     error_code(exc) or type(exc).__name__, failures)
            pause(policy.delay(failures))
            # The call may have happened (dropped response): trust only what the tags say now.
            current = count_by_placement(describe_tagged(ec2, ctx.failover_id, service=launch.service),
                                         launch.subnets)
            continue
        created = [i["InstanceId"] for i in response["Instances"]]
        result.created += len(created)
        current.setdefault(subnet, []).extend(created)
        current[subnet].sort()
    extra = surplus(launch.per_subnet, current)
    if extra:
        log.warning("%s: %d instance(s) beyond the plan (a concurrent attempt?), terminating %s",
                    launch.service, len(extra), extra)
        ec2.terminate_instances(InstanceIds=extra)
        result.terminated_surplus = extra
    result.instance_ids = sorted(i for s, ids in current.items() for i in ids if i not in set(extra))
    return result


def wait_running(ec2: Any, failover_id: str, instance_ids: list[str], *, timeout: float = 600) -> None:
    """Our own waiter (botocore's polls every 15 s): all ``instance_ids`` running."""
    if not instance_ids:
        return
    wanted = set(instance_ids)

    def check() -> bool | None:
        running: set[str] = set()
        for chunk_start in range(0, len(instance_ids), 500):
            chunk = instance_ids[chunk_start:chunk_start + 500]
            pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=chunk)
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        state = instance["State"]["Name"]
                        if state == "running":
                            running.add(instance["InstanceId"])
                        elif state in ("shutting-down", "terminated", "stopped", "stopping"):
                            raise RuntimeError(f"instance {instance['InstanceId']} of {failover_id} is {state}")
        return True if wanted <= running else None

    poll_until(check, what=f"{len(wanted)} instances running", timeout=timeout, interval=0.2)


def target_group_arns(elbv2: Any, names: Iterable[str]) -> dict[str, str]:
    """Target group name → ARN (names not found are left out)."""
    names = sorted(set(names))
    arns: dict[str, str] = {}
    for start in range(0, len(names), 20):  # DescribeTargetGroups takes ≤ 20 names
        chunk = names[start:start + 20]
        try:
            groups = elbv2.describe_target_groups(Names=chunk)["TargetGroups"]
        except Exception as exc:
            if error_code(exc) != "TargetGroupNotFound":
                raise
            groups = []
            for name in chunk:
                try:
                    groups.extend(elbv2.describe_target_groups(Names=[name])["TargetGroups"])
                except Exception as inner:
                    if error_code(inner) != "TargetGroupNotFound":
                        raise
        arns.update({g["TargetGroupName"]: g["TargetGroupArn"] for g in groups})
    return arns


def register_and_wait_healthy(elbv2: Any, registrations: dict[str, tuple[int | None, list[str]]], *,
                              timeout: float = 600) -> dict[str, int]:
    """Register instances in their target groups (idempotent in AWS) and wait until all are healthy.

    ``registrations``: target group ARN → (port, instance ids). Returns healthy target counts per ARN.
    """
    for arn, (port, ids) in registrations.items():
        for start in range(0, len(ids), 200):
            targets = [{"Id": i, **({"Port": port} if port else {})} for i in ids[start:start + 200]]
            elbv2.register_targets(TargetGroupArn=arn, Targets=targets)

    def check() -> dict[str, int] | None:
        healthy: dict[str, int] = {}
        for arn, (_port, ids) in registrations.items():
            states = {d["Target"]["Id"]: d["TargetHealth"]["State"]
                      for d in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}
            ok = [i for i in ids if states.get(i) == "healthy"]
            if len(ok) < len(ids):
                return None
            healthy[arn] = len(ok)
        return healthy

    return poll_until(check, what="targets healthy", timeout=timeout, interval=0.2)


@dataclass
class TierResult:
    index: int
    services: dict[str, ServiceResult]
    healthy_targets: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"tier": self.index, "services": {k: v.to_dict() for k, v in sorted(self.services.items())},
                "healthy_targets": self.healthy_targets}


def launch_tier(ec2: Any, ec2_create: Any, elbv2: Any, ctx: LaunchContext, tier: TierPlan, *,
                existing: list[dict[str, Any]] | None = None, pool: ThreadPoolExecutor | None = None,
                timeout: float = 600) -> TierResult:
    """Launch every service of a tier in parallel, wait until running, register and wait healthy."""
    by_service: dict[str, list[dict[str, Any]]] | None = None
    if existing is not None:
        by_service = {}
        for instance in existing:
            name = tag_keys.from_aws(instance.get("Tags")).get(tag_keys.SERVICE, "")
            by_service.setdefault(name, []).append(instance)
    own_pool = pool is None
    executor = pool or ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="launch")
    try:
        futures = {launch.service: executor.submit(
            ensure_service, ec2, ec2_create, ctx, launch,
            existing=None if by_service is None else by_service.get(launch.service, []))
            for launch in tier.services}
        results = {name: future.result() for name, future in futures.items()}
    finally:
        if own_pool:
            executor.shutdown(wait=True)
    all_ids = sorted(i for r in results.values() for i in r.instance_ids)
    wait_running(ec2, ctx.failover_id, all_ids, timeout=timeout)
    wanted = {launch.target_group: launch for launch in tier.services if launch.target_group}
    healthy: dict[str, int] = {}
    if wanted:
        arns = target_group_arns(elbv2, wanted)
        missing = sorted(set(wanted) - set(arns))
        if missing:
            raise RuntimeError(f"target groups missing in the shadow: {missing} (network pre-staging incomplete)")
        registrations = {arns[name]: (launch.target_port, results[launch.service].instance_ids)
                         for name, launch in wanted.items()}
        healthy = register_and_wait_healthy(elbv2, registrations, timeout=timeout)
    return TierResult(index=tier.index, services=results, healthy_targets=healthy)


def launch_all(ec2: Any, ec2_create: Any, elbv2: Any, ctx: LaunchContext, tiers: list[TierPlan], *,
               timeout: float = 600) -> list[TierResult]:
    """Tier after tier (dependency order); one upfront count of everything the failover already has."""
    existing = describe_tagged(ec2, ctx.failover_id)
    results: list[TierResult] = []
    with ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="launch") as pool:
        for tier in tiers:
            log.info("tier %d: %s", tier.index, ", ".join(s.service for s in tier.services))
            results.append(launch_tier(ec2, ec2_create, elbv2, ctx, tier, existing=existing, pool=pool,
                                       timeout=timeout))
    return results


def terminate_launched(ec2: Any, failover_id: str, *, timeout: float = 600) -> list[str]:
    """Terminate every instance the failover launched (ROLE=launched); pre-staged resources are never touched."""
    instances = describe_tagged(ec2, failover_id, role="launched", states=LIVE_STATES)
    ids = sorted(i["InstanceId"] for i in instances)
    for start in range(0, len(ids), 500):
        ec2.terminate_instances(InstanceIds=ids[start:start + 500])
    if ids:
        poll_until(lambda: True if not describe_tagged(ec2, failover_id, role="launched") else None,
                   what="launched instances terminated", timeout=timeout, interval=0.2)
    return ids
