"""pytest plugin: record every AWS API action the package performs and hold it against include/iam/.

Every botocore client call goes through ``BaseClient._make_api_call``; this plugin wraps it once per session and
attributes each call to the IAM role that would make it in production, from the package module in the stack:

* ``shadowing.failover`` / ``shadowing.orchestration.failover``          → ``failover`` (regional_failover/back)
* ``shadowing.blueprint.prestage.prestage`` / ``refresh.prestage_plan``   → ``prestage`` (shadow-region writes)
* any other ``shadowing.*`` module                                        → ``refresh`` (read-only DAGs)
* ``shadowing.world`` (the demo's world seeder), or no package frame at all (a test seeding or asserting on the
  emulator itself, e.g. tests/support/shadow_world.py)                    → ``harness``: not a deployed role,
  recorded for the artefact but never checked.

At session end the recorded set goes to ``test-artifacts/aws-actions.json``. When integration tests ran, the
session FAILS if the code used an action its role's policy does not grant; when every integration module ran
(the full suite), it also fails if a policy grants an action nothing used (least privilege drifts otherwise).
``SHADOWING_IAM_CHECK=strict`` forces the unused-grant check, ``=off`` disables the session check entirely.

Calls made in subprocesses (the demo stack test, CLI subprocesses) are not seen; in-process ``dag.test()`` is.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
IAM_DIR = ROOT / "include" / "iam"
ARTIFACT = ROOT / "test-artifacts" / "aws-actions.json"
INTEGRATION_DIR = ROOT / "tests" / "integration"

ROLES = ("refresh", "prestage", "failover")
HARNESS = "harness"
POLICY_FILES = {role: IAM_DIR / f"shadowing-{role}-policy.json" for role in ROLES}

# IAM service prefixes that differ from botocore's signing name.
_IAM_PREFIX = {"monitoring": "cloudwatch"}
# API operations authorised by an IAM action of another name (AWS Service Authorization Reference).
_ACTION_ALIASES = {
    "s3:ListBuckets": "s3:ListAllMyBuckets",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:GetBucketReplication": "s3:GetReplicationConfiguration",
    "s3:PutBucketReplication": "s3:PutReplicationConfiguration",
    "s3:DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "s3:GetBucketVersioning": "s3:GetBucketVersioning",
    "s3:PutBucketVersioning": "s3:PutBucketVersioning",
    "logs:GetLogEvents": "logs:GetLogEvents",
}


# Extra IAM actions AWS authorises for one API call, by what the call carries (tag-on-create, passed roles…).
def implied_actions(action: str, params: Mapping[str, Any] | None = None, *, keywords: Iterable[str] = ()
                    ) -> set[str]:
    """Actions AWS also checks for ``action`` given its parameters (or, statically, its keyword names)."""
    names = set(params or {}) | set(keywords)
    prefix, _, operation = action.partition(":")
    implied: set[str] = set()
    if prefix == "ec2" and "TagSpecifications" in names:
        implied.add("ec2:CreateTags")  # tag-on-create: CreateTags with an ec2:CreateAction condition
    if prefix == "rds" and operation.startswith(("Create", "Restore", "Copy")) and "Tags" in names:
        implied.add("rds:AddTagsToResource")
    if prefix == "elasticloadbalancing" and operation.startswith("Create") and "Tags" in names:
        implied.add("elasticloadbalancing:AddTags")
    if action == "s3:PutReplicationConfiguration":
        implied.add("iam:PassRole")  # the replication role is passed to S3
    if action == "route53:CreateHostedZone" and "VPC" in names:
        implied.add("ec2:DescribeVpcs")  # Route 53 checks the private zone's VPC with the caller's rights
    return implied


def iam_prefix(service_model: Any) -> str:
    name = str(service_model.signing_name or service_model.endpoint_prefix)
    return _IAM_PREFIX.get(name, name)


def iam_action(service_model: Any, operation_name: str) -> str:
    """botocore operation (e.g. ``DescribeInstances``) → IAM action (``ec2:DescribeInstances``)."""
    action = f"{iam_prefix(service_model)}:{operation_name}"
    return _ACTION_ALIASES.get(action, action)


def action_for_method(service: str, method: str) -> str | None:
    """boto3 method name of a service (``describe_instances``) → IAM action, or None if not an operation."""
    model = _service_model(service)
    operation = _method_to_operation(service).get(method)
    return iam_action(model, operation) if operation else None


_MODELS: dict[str, Any] = {}
_METHODS: dict[str, dict[str, str]] = {}


def _service_model(service: str) -> Any:
    if service not in _MODELS:
        import botocore.session

        _MODELS[service] = botocore.session.get_session().get_service_model(service)
    return _MODELS[service]


def _method_to_operation(service: str) -> dict[str, str]:
    if service not in _METHODS:
        from botocore import xform_name

        model = _service_model(service)
        _METHODS[service] = {xform_name(op): op for op in model.operation_names}
    return _METHODS[service]


# ───────────────────────────────────────────── policies ─────────────────────────────────────────────

def load_policy(role: str) -> dict[str, Any]:
    return json.loads(POLICY_FILES[role].read_text())


def granted_actions(policy: Mapping[str, Any]) -> set[str]:
    """Actions of the policy's Allow statements (exact names; wildcards are kept as patterns)."""
    actions: set[str] = set()
    for stmt in policy.get("Statement", []):
        if stmt.get("Effect") != "Allow":
            continue
        value = stmt.get("Action", [])
        actions.update([value] if isinstance(value, str) else value)
    return actions


def is_granted(action: str, grants: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), g.lower()) for g in grants)


def policy_problems(used: Mapping[str, Iterable[str]], *, check_unused: bool,
                    reachable: Mapping[str, Iterable[str]] | None = None) -> tuple[list[str], list[str]]:
    """(problems, notes). Problems: actions used but not granted; with ``check_unused``, actions granted that
    nothing used — neither seen at run time nor found in the code by the static scan (``reachable``). Notes:
    grants the code can reach but no test exercised (a coverage gap, not a privilege gap)."""
    problems: list[str] = []
    notes: list[str] = []
    for role in ROLES:
        grants = granted_actions(load_policy(role))
        role_used = set(used.get(role, ()))
        role_reachable = set((reachable or {}).get(role, ()))
        for action in sorted(a for a in role_used if not is_granted(a, grants)):
            problems.append(f"{role}: the code calls {action} but {POLICY_FILES[role].name} does not grant it")
        if not check_unused:
            continue
        for grant in sorted(grants):
            def matches(actions: set[str], pattern: str = grant) -> bool:
                return any(fnmatch.fnmatchcase(a.lower(), pattern.lower()) for a in actions)
            if matches(role_used):
                continue
            if matches(role_reachable):
                notes.append(f"{role}: {grant} is reachable in the code but no test exercised it")
            else:
                problems.append(f"{role}: {POLICY_FILES[role].name} grants {grant} but the code never uses it")
    return problems, notes


# ───────────────────────────────────────────── recording ─────────────────────────────────────────────

_PACKAGE = "shadowing."
_SKIP_MODULES = ("shadowing.aws.",)  # client plumbing: never the caller that matters


_PRESTAGE_ENTRIES = {("shadowing.blueprint.prestage", "prestage"), ("shadowing.blueprint.refresh", "prestage_plan"),
                     ("shadowing.orchestration.blueprints", "prestage")}
_NEUTRAL_MODULES = ("shadowing.failover.drill",)  # `make drill`: a demo tool driving refresh, then a drill


_INHERITED = threading.local()  # a pool worker's view of the stack that submitted its work


def _stack_role(frame: Any) -> tuple[str | None, bool]:
    """(the innermost role-bearing frame's role or None, whether any package frame is on the stack)."""
    in_package = False
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_PACKAGE) and not module.startswith(_SKIP_MODULES + _NEUTRAL_MODULES):
            in_package = True
            if module.startswith(("shadowing.failover", "shadowing.orchestration.failover")):
                return "failover", True
            if module.startswith("shadowing.world"):
                return HARNESS, True
            if (module, frame.f_code.co_name) in _PRESTAGE_ENTRIES:
                return "prestage", True
        frame = frame.f_back
    return None, in_package


def _effective(frame: Any) -> tuple[str | None, bool]:
    role, in_package = _stack_role(frame)
    inherited_role, inherited_package = getattr(_INHERITED, "value", (None, False))
    return role or inherited_role, in_package or inherited_package


def role_from_stack(frame: Any) -> str:
    """Attribute a call to a role: the innermost role-bearing frame on the calling thread's stack decides
    (failover modules → failover, a pre-staging entry point → prestage, the world seeder → harness); with
    none, any other package frame means refresh, and no package frame at all means the test harness. Work
    run in a thread pool sees the stack that submitted it (see ``AwsActionRecorder.install``)."""
    role, in_package = _effective(frame)
    return role or ("refresh" if in_package else HARNESS)


class AwsActionRecorder:
    """Wraps botocore's single call path; thread-safe (the launcher calls AWS from a thread pool)."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))  # role→action→tests
        self.current_test = "<collection>"
        self._lock = threading.Lock()
        self._original: Any = None
        self._original_submit: Any = None

    def install(self) -> None:
        from botocore.client import BaseClient

        if self._original is not None:
            return
        self._original = original = BaseClient._make_api_call
        recorder = self

        def _make_api_call(client: Any, operation_name: str, api_params: Any) -> Any:
            try:
                action = iam_action(client.meta.service_model, operation_name)
                role = role_from_stack(sys._getframe(1))
                with recorder._lock:
                    for name in {action, *implied_actions(action, api_params)}:
                        recorder.calls[role][name].add(recorder.current_test)
            except Exception:  # noqa: BLE001 - recording must never change the code under test
                pass
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = _make_api_call  # type: ignore[method-assign]

        # Pool workers (the launcher, pre-staging, inventory reads) lose the submitting stack: carry it over.
        from concurrent.futures import ThreadPoolExecutor

        self._original_submit = original_submit = ThreadPoolExecutor.submit

        def submit(pool: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            context = _effective(sys._getframe(1))

            def run_with_context(*a: Any, **kw: Any) -> Any:
                previous = getattr(_INHERITED, "value", None)
                _INHERITED.value = context
                try:
                    return fn(*a, **kw)
                finally:
                    _INHERITED.value = previous

            return original_submit(pool, run_with_context, *args, **kwargs)

        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]

    def uninstall(self) -> None:
        from botocore.client import BaseClient

        if self._original is not None:
            from concurrent.futures import ThreadPoolExecutor

            BaseClient._make_api_call = self._original  # type: ignore[method-assign]
            ThreadPoolExecutor.submit = self._original_submit  # type: ignore[method-assign]
            self._original = None

    def used(self) -> dict[str, set[str]]:
        with self._lock:
            return {role: set(actions) for role, actions in self.calls.items()}

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {role: {action: sorted(tests) for action, tests in sorted(actions.items())}
                    for role, actions in sorted(self.calls.items())}


RECORDER = AwsActionRecorder()
_RAN_MODULES: set[str] = set()
_COLLECTED_MODULES: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    RECORDER.install()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    _COLLECTED_MODULES.update(str(Path(str(i.path)).resolve()) for i in items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    RECORDER.current_test = item.nodeid
    yield
    RECORDER.current_test = "<between tests>"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and not report.skipped:
        _RAN_MODULES.add(str((ROOT / report.nodeid.split("::")[0]).resolve()))


def _integration_modules() -> set[str]:
    return {str(p.resolve()) for p in INTEGRATION_DIR.glob("test_*.py")}


def _integration_ran() -> bool:
    return bool(_integration_modules() & _RAN_MODULES)


def _full_integration_ran() -> bool:
    """Every integration module was collected (no file left out; some tests may skip, e.g. PostgreSQL)."""
    wanted = _integration_modules()
    return bool(wanted) and wanted <= _COLLECTED_MODULES and bool(wanted & _RAN_MODULES)


_SESSION_PROBLEMS: list[str] = []
_SESSION_NOTES: list[str] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mode = os.environ.get("SHADOWING_IAM_CHECK", "auto").lower()
    data = RECORDER.to_json()
    check_unused = mode == "strict" or (mode == "auto" and _full_integration_ran())
    checked = mode != "off" and (_integration_ran() or mode == "strict")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    notes: list[str] = []
    if checked:
        reachable = None
        if check_unused:
            from tests.security.iam_scan import scan_package

            reachable = scan_package().actions_by_role()
        problems, notes = policy_problems(RECORDER.used(), check_unused=check_unused, reachable=reachable)
    ARTIFACT.write_text(json.dumps({
        "roles": data, "checked": checked, "checked_unused_grants": check_unused, "problems": problems,
        "untested_grants": notes,
        "note": "harness = world seeder and tests' own emulator calls: not a deployed role, not checked"},
        indent=2, sort_keys=True) + "\n")
    _SESSION_PROBLEMS[:] = problems
    _SESSION_NOTES[:] = notes
    if problems and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _SESSION_NOTES and not _SESSION_PROBLEMS:
        terminalreporter.line(f"IAM: {len(_SESSION_NOTES)} granted action(s) reachable in the code but not exercised "
                              f"by an integration test (see {ARTIFACT.relative_to(ROOT)})")
    if not _SESSION_PROBLEMS:
        return
    terminalreporter.section("IAM least privilege (include/iam vs AWS calls recorded in this session)", red=True)
    for line in _SESSION_PROBLEMS:
        terminalreporter.line(line, red=True)
    terminalreporter.line(f"recorded calls: {ARTIFACT.relative_to(ROOT)}")
