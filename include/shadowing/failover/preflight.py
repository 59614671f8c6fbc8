"""Preflight: can the plan run? Blueprint freshness, the shadow's readiness, EC2 DryRun launches, limits.

Blocking checks (a launch cannot work): every service has an image; ``RunInstances(DryRun=True)`` with the
exact launch request answers ``DryRunOperation`` (AWS's "would have succeeded"); the vCPU quota, when it can be
read, covers the launch. Warnings (reported, never blocking: during an outage an old plan beats none): the
blueprint's age and the last readiness report. No call here mutates anything, so dry runs run it too.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shadowing.errors import ShadowingError
from shadowing.failover.backoff import error_code, retry_call
from shadowing.failover.launcher import LaunchContext, _run_request
from shadowing.failover.plan import FailoverPlan, ServiceLaunch

log = logging.getLogger(__name__)
VCPU_QUOTA = ("ec2", "L-1216C47A")  # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, vCPUs


class PreflightFailed(ShadowingError):
    def __init__(self, failures: list[dict[str, Any]]) -> None:
        super().__init__("preflight failed: " + "; ".join(f"{f['check']} {f['subject']}: {f['detail']}"
                                                           for f in failures))
        self.failures = failures


@dataclass(frozen=True)
class Check:
    check: str
    subject: str
    passed: bool
    detail: str = ""
    blocking: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "subject": self.subject, "passed": self.passed, "detail": self.detail,
                "blocking": self.blocking}


def freshness_check(valid_from: datetime | None, max_age_hours: float, now: datetime | None = None) -> Check:
    if valid_from is None:
        return Check("freshness", "blueprint", False, "blueprint creation time unknown", blocking=False)
    age = ((now or datetime.now(UTC)) - valid_from).total_seconds() / 3600
    return Check("freshness", "blueprint", age <= max_age_hours,
                 f"{age:.1f} h old (limit {max_age_hours:g} h)", blocking=False)


def dry_run_check(ec2: Any, ctx: LaunchContext, launch: ServiceLaunch) -> Check:
    if launch.count == 0:
        return Check("dry_run", launch.service, True, "nothing to launch")
    if not launch.ami and not launch.launch_template_id:
        return Check("image", launch.service, False, "no AMI in the shadow region and no launch template")
    subnet = launch.subnets[0] if launch.subnets else ""
    request = _run_request(ctx, launch, subnet, launch.count, 0)
    request.pop("ClientToken")
    try:
        retry_call(lambda: ec2.run_instances(DryRun=True, **request), what=f"dry run {launch.service}")
    except Exception as exc:
        if error_code(exc) == "DryRunOperation":
            return Check("dry_run", launch.service, True, "request would have succeeded")
        return Check("dry_run", launch.service, False, f"{error_code(exc) or type(exc).__name__}: {exc}")
    # A DryRun that returns normally means the endpoint ignored DryRun: it may have launched something.
    return Check("dry_run", launch.service, False, "endpoint ignored DryRun=True")


def limits_check(ec2: Any, quotas: Any | None, plan: FailoverPlan) -> Check:
    types = sorted({s.instance_type for s in plan.services if s.count})
    if not types:
        return Check("limits", "vcpus", True, "nothing to launch")
    vcpus: dict[str, int] = {}
    for start in range(0, len(types), 100):
        for info in ec2.describe_instance_types(InstanceTypes=types[start:start + 100])["InstanceTypes"]:
            vcpus[info["InstanceType"]] = int(info["VCpuInfo"]["DefaultVCpus"])
    needed = sum(vcpus.get(s.instance_type, 2) * s.count for s in plan.services)
    if quotas is None:
        return Check("limits", "vcpus", True, f"{needed} vCPUs needed; quota not checked", blocking=False)
    try:
        quota = quotas.get_service_quota(ServiceCode=VCPU_QUOTA[0], QuotaCode=VCPU_QUOTA[1])["Quota"]["Value"]
    except Exception as exc:
        return Check("limits", "vcpus", True, f"{needed} vCPUs needed; quota unreadable "
                     f"({error_code(exc) or type(exc).__name__})", blocking=False)
    return Check("limits", "vcpus", needed <= quota, f"{needed} vCPUs needed, quota {quota:g}")


def run_preflight(ec2: Any, quotas: Any | None, plan: FailoverPlan, *, ctx: LaunchContext,
                  blueprint_valid_from: datetime | None, readiness: Any | None,
                  max_age_hours: float = 24.0) -> list[Check]:
    """All checks; raises :class:`PreflightFailed` when a blocking one failed."""
    checks = [freshness_check(blueprint_valid_from, max_age_hours)]
    if readiness is None:
        checks.append(Check("readiness", plan.primary_region, False, "no readiness report yet", blocking=False))
    else:
        failed = [f"{c.check} {c.subject}" for c in readiness.failures]
        checks.append(Check("readiness", plan.primary_region, not failed,
                            "ready" if not failed else "not ready: " + ", ".join(failed[:10]), blocking=False))
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="preflight") as pool:
        checks.extend(pool.map(lambda launch: dry_run_check(ec2, ctx, launch), plan.services))
    checks.append(limits_check(ec2, quotas, plan))
    for check in checks:
        if not check.passed:
            log.warning("preflight %s %s: %s%s", check.check, check.subject, check.detail,
                        "" if check.blocking else " (warning)")
    blocking = [c.to_dict() for c in checks if not c.passed and c.blocking]
    if blocking:
        raise PreflightFailed(blocking)
    return checks
