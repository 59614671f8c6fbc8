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
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from shadowing.aws import tags as tag_keys
from shadowing.failover.backoff import Backoff, error_code, is_retryable, poll_until
from shadowing.failover.identity import client_token
from shadowing.failover.plan import ServiceLaunch, TierPlan

log = logging.getLogger(__name__)

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
MAX_WORKERS = 16
STATUS_CHUNK = 100  # DescribeInstanceStatus ids per call
DESCRIBE_CHUNK = 1000  # DescribeInstances ids per call
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
    # Private address per instance, from the RunInstances answers (or descriptions on a resume): the network
    # step's DNS records need them and should not have to describe hundreds of instances again.
    addresses: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "expected": self.expected, "present": len(self.instance_ids),
                "created": self.created, "create_calls": self.create_calls, "retries": self.retries,
                "terminated_surplus": list(self.terminated_surplus)}


def serial_creates(ec2: Any) -> bool:
    """Must creates be serialised? Only against an emulator: moto's RunInstances shares a per-subnet address
    generator between its request threads ("generator already executing" → HTTP 500); real AWS takes them in
    parallel."""
    from urllib.parse import urlparse

    endpoint = getattr(getattr(ec2, "meta", None), "endpoint_url", None) or ""
    host = urlparse(endpoint).hostname or ""
    return not (host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn"))


def create_gate(ec2: Any) -> AbstractContextManager[Any]:
    """A lock around RunInstances for the emulator, a no-op context for real AWS."""
    return threading.Lock() if serial_creates(ec2) else nullcontext()


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


def tag_values(ec2: Any, key: str, values: Iterable[str] | None = None) -> dict[str, str]:
    """Instance id → value of tag ``key`` (only values in ``values`` when given), from DescribeTags.

    Tags only, no instance bodies: one narrow call where DescribeInstances would describe every instance (and
    moto's DescribeInstances costs O(instances × all tags in the region): seconds at a few hundred instances).
    """
    wanted = None if values is None else sorted(set(values))
    chunks: list[list[str] | None] = [None] if wanted is None else \
        [wanted[i:i + 200] for i in range(0, len(wanted), 200)]  # ≤ 200 values per filter
    found: dict[str, str] = {}
    for chunk in chunks:
        filters = [{"Name": "resource-type", "Values": ["instance"]}, {"Name": "key", "Values": [key]}]
        if chunk is not None:
            if not chunk:
                continue
            filters.append({"Name": "value", "Values": chunk})
        for page in ec2.get_paginator("describe_tags").paginate(Filters=filters,
                                                                  PaginationConfig={"PageSize": 1000}):
            for tag in page["Tags"]:
                if tag.get("Key") == key and (chunk is None or tag.get("Value") in chunk):
                    found[tag["ResourceId"]] = tag.get("Value", "")
    return found


def instance_states(ec2: Any, instance_ids: Iterable[str]) -> dict[str, str]:
    """Instance id → state name, from DescribeInstanceStatus (IncludeAllInstances; ≤ 100 ids a call).

    Ids EC2 does not know (yet: tags and instances are eventually consistent on AWS; or long gone) are left out.
    """
    import re

    pending = sorted(set(instance_ids))
    states: dict[str, str] = {}
    for start in range(0, len(pending), STATUS_CHUNK):
        chunk = pending[start:start + STATUS_CHUNK]
        while chunk:
            try:
                statuses = ec2.describe_instance_status(InstanceIds=chunk, IncludeAllInstances=True)
            except Exception as exc:
                if error_code(exc) != "InvalidInstanceID.NotFound":
                    raise
                unknown = set(re.findall(r"i-[0-9a-f]+", str(exc)))
                if not unknown & set(chunk):
                    raise
                chunk = [i for i in chunk if i not in unknown]
                continue
            for status in statuses["InstanceStatuses"]:
                states[status["InstanceId"]] = status["InstanceState"]["Name"]
            break
    return states


def census(ec2: Any, failover_id: str, *, service: str | None = None, role: str | None = None,
           states: Iterable[str] | None = LIVE_STATES) -> dict[str, tuple[str, str]]:
    """Instance id → (service, state) of one failover's instances (optionally one service / role).

    Counted from tags (DescribeTags) and states (DescribeInstanceStatus). An instance whose tags are visible but
    whose state is not yet counts as ``pending``: it exists, so it must never be created twice.
    """
    ids = tag_values(ec2, tag_keys.FAILOVER_ID, [failover_id])
    if not ids:
        return {}
    services = tag_values(ec2, tag_keys.SERVICE, None if service is None else [service])
    keep = [i for i in ids if i in services]
    if role is not None:
        roles = tag_values(ec2, tag_keys.ROLE, [role])
        keep = [i for i in keep if i in roles]
    known = instance_states(ec2, keep)
    wanted = None if states is None else set(states)
    result: dict[str, tuple[str, str]] = {}
    for instance_id in keep:
        state = known.get(instance_id, "pending")
        if wanted is None or state in wanted:
            result[instance_id] = (services[instance_id], state)
    return result


def describe_ids(ec2: Any, instance_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Full descriptions of the given instances only (≤ 1000 ids a call; unknown ids left out)."""
    ids = sorted(set(instance_ids))
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), DESCRIBE_CHUNK):
        chunk = ids[start:start + DESCRIBE_CHUNK]
        try:
            for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=chunk):
                for reservation in page["Reservations"]:
                    found.extend(reservation["Instances"])
        except Exception as exc:
            if error_code(exc) != "InvalidInstanceID.NotFound":
                raise
            known = instance_states(ec2, chunk)  # drop the ids EC2 does not know yet, describe the rest
            if known and len(known) < len(chunk):
                found.extend(describe_ids(ec2, known))
    return found


def describe_tagged(ec2: Any, failover_id: str, *, service: str | None = None, tier: int | None = None,
                    states: Iterable[str] = LIVE_STATES, role: str | None = None) -> list[dict[str, Any]]:
    """Full descriptions of one failover's instances (optionally one service/tier/role) in ``states``.

    Finds the ids by tags first and describes only those: nothing when the failover has nothing yet.
    """
    ids = census(ec2, failover_id, service=service, role=role, states=states)
    if not ids:
        return []
    found = describe_ids(ec2, ids)
    wanted = set(states)
    found = [i for i in found if i["State"]["Name"] in wanted]
    if tier is not None:
        found = [i for i in found if tag_keys.from_aws(i.get("Tags")).get(tag_keys.TIER) == str(tier)]
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
                   sleep: Callable[[float], None] | None = None,
                   gate: AbstractContextManager[Any] | None = None) -> ServiceResult:
    """Bring one service to exactly its planned count (see module doc). ``existing`` skips the first count."""
    import time

    pause = sleep or time.sleep
    result = ServiceResult(service=launch.service, expected=launch.count)
    seen = existing if existing is not None else describe_tagged(ec2, ctx.failover_id, service=launch.service)
    _remember_addresses(result, seen)
    current = count_by_placement(seen, launch.subnets)
    failures = 0
    while True:
        missing = missing_per_subnet(launch.per_subnet, current)
        if not any(missing.values()):
            break
        subnet = next(s for s, n in missing.items() if n > 0)
        request = _run_request(ctx, launch, subnet, missing[subnet], len(current.get(subnet, [])))
        try:
            result.create_calls += 1
            with gate if gate is not None else nullcontext():
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
            seen = describe_tagged(ec2, ctx.failover_id, service=launch.service)
            _remember_addresses(result, seen)
            current = count_by_placement(seen, launch.subnets)
            continue
        _remember_addresses(result, response["Instances"])
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
    result.addresses = {i: result.addresses[i] for i in result.instance_ids if i in result.addresses}
    return result


def _remember_addresses(result: ServiceResult, instances: Iterable[dict[str, Any]]) -> None:
    for instance in instances:
        if instance.get("PrivateIpAddress"):
            result.addresses[instance["InstanceId"]] = instance["PrivateIpAddress"]


def wait_running(ec2: Any, failover_id: str, instance_ids: list[str], *, timeout: float = 600) -> None:
    """Our own waiter (botocore's polls every 15 s): all ``instance_ids`` running (DescribeInstanceStatus:
    states only, ≤ 100 ids a call; ids EC2 does not know yet are simply not running yet)."""
    if not instance_ids:
        return
    wanted = set(instance_ids)

    def check() -> bool | None:
        states = instance_states(ec2, wanted)
        dead = sorted(i for i, s in states.items() if s in ("shutting-down", "terminated", "stopped", "stopping"))
        if dead:
            raise RuntimeError(f"instance(s) {dead[:5]} of {failover_id} are {states[dead[0]]}")
        return True if all(states.get(i) == "running" for i in wanted) else None

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
                timeout: float = 600, gate: AbstractContextManager[Any] | None = None) -> TierResult:
    """Launch every service of a tier in parallel, wait until running, register and wait healthy."""
    by_service: dict[str, list[dict[str, Any]]] | None = None
    if existing is not None:
        by_service = {}
        for instance in existing:
            name = tag_keys.from_aws(instance.get("Tags")).get(tag_keys.SERVICE, "")
            by_service.setdefault(name, []).append(instance)
    gate = gate if gate is not None else create_gate(ec2_create)
    own_pool = pool is None
    executor = pool or ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="launch")
    try:
        futures = {launch.service: executor.submit(
            ensure_service, ec2, ec2_create, ctx, launch,
            existing=None if by_service is None else by_service.get(launch.service, []), gate=gate)
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
    gate = create_gate(ec2_create)
    results: list[TierResult] = []
    with ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="launch") as pool:
        for tier in tiers:
            log.info("tier %d: %s", tier.index, ", ".join(s.service for s in tier.services))
            results.append(launch_tier(ec2, ec2_create, elbv2, ctx, tier, existing=existing, pool=pool,
                                       timeout=timeout, gate=gate))
    return results


def terminate_launched(ec2: Any, failover_id: str, *, timeout: float = 600) -> list[str]:
    """Terminate every instance the failover launched (ROLE=launched); pre-staged resources are never touched."""
    ids = sorted(census(ec2, failover_id, role="launched"))
    for start in range(0, len(ids), DESCRIBE_CHUNK):
        ec2.terminate_instances(InstanceIds=ids[start:start + DESCRIBE_CHUNK])
    if ids:
        def gone() -> bool | None:
            states = instance_states(ec2, ids)
            return True if all(states.get(i, "terminated") == "terminated" for i in ids) else None

        poll_until(gone, what="launched instances terminated", timeout=timeout, interval=0.2)
    return ids
