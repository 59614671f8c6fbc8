"""include/iam against the code: static scan of the package, policy shape (least privilege), recorder plumbing.

The run-time check (every AWS call the integration tests saw, per role) lives in tests/support/aws_recorder.py
and runs at session end; these tests also run on a partial selection.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.security.iam_scan import scan_package
from tests.support.aws_recorder import (
    _ACTION_ALIASES,
    HARNESS,
    POLICY_FILES,
    RECORDER,
    ROLES,
    action_for_method,
    granted_actions,
    iam_action,
    implied_actions,
    is_granted,
    load_policy,
    policy_problems,
    role_from_stack,
)

READ_ONLY = re.compile(r"^[a-z0-9-]+:(Describe|List|Get|Filter)[A-Za-z]*$")
# Actions AWS gives no resource-level permission or tag condition for (Service Authorization Reference).
UNSCOPABLE = {"route53:CreateHostedZone"}
TAG_CONDITION = re.compile(r"^(aws:RequestTag/|aws:ResourceTag/|aws:TagKeys|ec2:CreateAction|"
                           r"elasticloadbalancing:CreateAction|iam:PassedToService|route53:ChangeResourceRecordSets)")


@pytest.fixture(scope="module")
def scan() -> Any:
    return scan_package()


def test_scanner_finds_the_known_call_sites(scan: Any) -> None:
    by_role = scan.actions_by_role()
    # one sentinel per role and pipeline: a scanner regression would make the checks below vacuous
    assert {"ec2:RunInstances", "ec2:CreateTags", "route53:ChangeResourceRecordSets",
            "rds:PromoteReadReplica"} <= by_role["failover"]
    assert {"ec2:CreateVpc", "ec2:CreateSecurityGroup", "rds:AddTagsToResource"} <= by_role["prestage"]
    assert {"cloudwatch:GetMetricData", "logs:FilterLogEvents", "ec2:DescribeInstances",
            "cloudwatch:DescribeAlarms", "s3:GetObject"} <= by_role["refresh"]
    assert not scan.unresolved, f"calls whose AWS service the scan cannot tell: {scan.unresolved}"


def test_every_call_in_the_package_is_granted_to_its_role(scan: Any) -> None:
    missing = []
    for call in scan.calls:
        for role in sorted(call.roles):
            grants = granted_actions(load_policy(role))
            for action in sorted({call.action, *call.implied}):
                if not is_granted(action, grants):
                    missing.append(f"{call.path}:{call.line} {call.function}() {call.method} → {action} "
                                   f"(role {role}, {POLICY_FILES[role].name})")
    assert not missing, "AWS actions the code performs but include/iam does not grant:\n" + "\n".join(missing)


def test_no_policy_grants_an_action_the_code_cannot_perform(scan: Any) -> None:
    problems, _notes = policy_problems({}, check_unused=True, reachable=scan.actions_by_role())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_policy_is_a_valid_least_privilege_document(role: str) -> None:
    import botocore.session

    policy = load_policy(role)
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids)), f"duplicate Sid in {POLICY_FILES[role].name}"
    session = botocore.session.get_session()
    prefixes = {}
    for service in ("ec2", "elbv2", "rds", "route53", "s3", "logs", "cloudwatch", "service-quotas"):
        model = session.get_service_model(service)
        for op in model.operation_names:
            prefixes.setdefault(iam_action(model, op), True)
    known = set(prefixes) | set(_ACTION_ALIASES.values()) | {"iam:PassRole"}
    for stmt in policy["Statement"]:
        assert stmt["Effect"] == "Allow" and "NotAction" not in stmt and "NotResource" not in stmt
        for action in stmt["Action"]:
            assert "*" not in action, f"{stmt['Sid']}: wildcard action {action}"
            assert action in known, f"{stmt['Sid']}: {action} is not an IAM action of a service the code uses"


def test_refresh_role_is_read_only() -> None:
    writes = sorted(a for a in granted_actions(load_policy("refresh")) if not READ_ONLY.match(a))
    assert not writes, f"the refresh role must stay read-only, but grants {writes}"


@pytest.mark.parametrize("role", ["prestage", "failover"])
def test_writes_are_scoped_by_resource_and_tag(role: str) -> None:
    """Every mutating grant names resource types (never '*') and, for EC2/ELB/RDS creates and changes,
    carries a tag condition (RequestTag on create, ResourceTag on change, CreateAction for tag-on-create)."""
    unscoped = []
    for stmt in load_policy(role)["Statement"]:
        writes = [a for a in stmt["Action"] if not READ_ONLY.match(a) and a not in UNSCOPABLE]
        if not writes:
            continue
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        if "*" in resources:
            unscoped.append(f"{stmt['Sid']}: {writes} on Resource '*'")
        keys = {k for cond in (stmt.get("Condition") or {}).values() for k in cond}
        taggable = [a for a in writes if a.split(":")[0] in ("ec2", "elasticloadbalancing")
                    and a not in ("ec2:CopyImage",)]
        if taggable and not any(TAG_CONDITION.match(k) for k in keys) and not all(
                r.endswith("::image/*") for r in resources):
            unscoped.append(f"{stmt['Sid']}: {taggable} without a tag condition")
    assert not unscoped, "\n".join(unscoped)


@pytest.mark.parametrize("role", ["prestage", "failover"])
def test_create_tags_only_when_creating_or_for_named_keys(role: str) -> None:
    for stmt in load_policy(role)["Statement"]:
        if "ec2:CreateTags" not in stmt["Action"]:
            continue
        cond = json.dumps(stmt.get("Condition") or {})
        assert "ec2:CreateAction" in cond or "aws:TagKeys" in cond, stmt["Sid"]


def test_terminate_is_limited_to_instances_a_failover_launched() -> None:
    stmt = next(s for s in load_policy("failover")["Statement"] if "ec2:TerminateInstances" in s["Action"])
    assert stmt["Condition"]["StringEquals"]["aws:ResourceTag/shadowing:role"] == "launched"
    assert stmt["Condition"]["Null"]["aws:ResourceTag/shadowing:failover-id"] == "false"


# ─────────────────────────────────────────── recorder plumbing ───────────────────────────────────────────

def test_operation_names_map_to_iam_actions() -> None:
    assert action_for_method("ec2", "describe_instances") == "ec2:DescribeInstances"
    assert action_for_method("cloudwatch", "get_metric_data") == "cloudwatch:GetMetricData"  # signs as monitoring
    assert action_for_method("s3", "list_buckets") == "s3:ListAllMyBuckets"
    assert action_for_method("s3", "list_objects_v2") == "s3:ListBucket"
    assert action_for_method("elbv2", "register_targets") == "elasticloadbalancing:RegisterTargets"
    assert action_for_method("service-quotas", "get_service_quota") == "servicequotas:GetServiceQuota"
    assert action_for_method("ec2", "not_an_operation") is None
    assert implied_actions("ec2:RunInstances", {"TagSpecifications": []}) == {"ec2:CreateTags"}
    assert implied_actions("ec2:RunInstances", {"MinCount": 1}) == set()


def _call_from(module: str, function: str = "f") -> str:
    import sys

    namespace: dict[str, Any] = {"__name__": module, "sys": sys}
    exec(f"def {function}():\n    return sys._getframe(0)\n", namespace)  # noqa: S102 - a frame of that module
    return role_from_stack(namespace[function]())


def test_calls_are_attributed_to_roles_by_the_package_module_on_the_stack() -> None:
    assert _call_from("shadowing.failover.launcher") == "failover"
    assert _call_from("shadowing.orchestration.failover") == "failover"
    assert _call_from("shadowing.blueprint.prestage", "prestage") == "prestage"
    assert _call_from("shadowing.blueprint.prestage", "find_prestaged") == "refresh"
    assert _call_from("shadowing.metrics.cloudwatch") == "refresh"
    assert _call_from("shadowing.world.seeding") == "harness"
    # `make drill` is a demo tool: its calls take the role of the package code it drives, never its own
    assert _call_from("shadowing.failover.drill") == "harness"
    assert _call_from("tests.support.shadow_world") == "harness"


def test_policy_problems_name_missing_and_unused_actions() -> None:
    problems, notes = policy_problems({"refresh": {"ec2:DescribeInstances", "ec2:RunInstances"}},
                                      check_unused=True, reachable={"refresh": {"cloudwatch:GetMetricData"}})
    assert any("calls ec2:RunInstances" in p and "refresh" in p for p in problems)
    assert not any("DescribeInstances" in p for p in problems if "calls" in p)
    assert any("grants logs:FilterLogEvents" in p and "never uses" in p for p in problems)
    assert any("cloudwatch:GetMetricData" in n for n in notes)


def test_recorder_sees_a_package_call_against_the_emulator(aws: str) -> None:
    from shadowing.aws.clients import client
    from shadowing.health.checks import alarm_checks

    RECORDER.install()
    before = set(RECORDER.calls.get("refresh", {}).get("cloudwatch:DescribeAlarms", set()))
    client("cloudwatch", "us-east-1", aws).describe_alarms()  # the test's own call: harness, not refresh
    alarm_checks(client("cloudwatch", "us-east-1", aws), "us-east-1")
    after = RECORDER.calls["refresh"]["cloudwatch:DescribeAlarms"]
    assert RECORDER.current_test in after - before or RECORDER.current_test in after
    assert "cloudwatch:DescribeAlarms" in RECORDER.calls["harness"]


def _role_here() -> str:
    import sys

    return role_from_stack(sys._getframe(0))


def test_pool_workers_keep_the_role_of_the_code_that_submitted_them() -> None:
    RECORDER.install()
    namespace: dict[str, Any] = {"__name__": "shadowing.blueprint.prestage", "work": _role_here}
    exec("def prestage():\n"  # noqa: S102 - a frame of the pre-stager, which fans out to a pool
         "    from concurrent.futures import ThreadPoolExecutor\n"
         "    with ThreadPoolExecutor(2) as pool:\n"
         "        return pool.submit(work).result()\n", namespace)
    assert namespace["prestage"]() == "prestage"
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # submitted from a test: the harness
        assert pool.submit(_role_here).result() == HARNESS
