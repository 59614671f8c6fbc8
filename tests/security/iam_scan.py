"""Static (AST) scan of the package for boto3 client calls, mapped to IAM actions and to the deployed role.

Best effort, on purpose conservative about what it claims:

* a receiver's service is known from ``x = client("ec2", …)`` / ``aws_client(…)`` / ``clients(…)`` /
  ``env.clients.get(…)`` / ``get_single_attempt(…)`` assignments, from such a call used directly as the receiver,
  or from the variable/parameter name (``ec2``, ``ec2_create``, ``rds_shadow``, ``s3_target``, ``route53``,
  ``cloudwatch``, ``logs``, ``quotas``…: the package's naming convention);
* operations named as strings count too: ``get_paginator("describe_instances")``,
  ``paginate_all(ec2, "describe_vpcs", …)``;
* an unknown receiver whose method is an operation of exactly one service the package uses is attributed to
  that service; an ambiguous one is reported as unresolved (never silently dropped).

Role of a call site (mirrors tests/support/aws_recorder.role_from_stack): ``shadowing.failover`` and
``shadowing.orchestration.failover`` → failover; the pre-staging entry points (``prestage``,
``prestage_plan``, the DAG's ``prestage`` task) → prestage; anything else → refresh. A refresh-role helper
also carries the roles of the package functions that call it (``find_prestaged`` is called by the pre-stager
too, so its reads must be granted to both). ``shadowing.world`` (the demo's world seeder) and
``shadowing.failover.drill`` (``make drill``, a demo tool that drives refresh and a drill) are no deployed
role.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.aws_recorder import _method_to_operation, action_for_method, implied_actions

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "shadowing"
SKIPPED_PACKAGES = ("world",)  # the world seeder: a demo/test tool, not a deployed role

_FACTORIES = {"client", "aws_client", "clients", "get", "get_single_attempt", "factory", "make"}
_ALIASES = {"cw": "cloudwatch", "quotas": "service-quotas", "servicequotas": "service-quotas",
            "elb": "elbv2", "sqs": "sqs", "sns": "sns"}
# boto3's injected S3 transfer methods (not API operations) → the IAM actions they need.
_S3_TRANSFER = {"download_file": "s3:GetObject", "download_fileobj": "s3:GetObject",
                "upload_file": "s3:PutObject", "upload_fileobj": "s3:PutObject"}
# Where the pre-staging role starts (mirrors aws_recorder.role_from_stack).
_PRESTAGE_ENTRIES = {("blueprint/prestage.py", "prestage"), ("blueprint/prestage.py", "_sync_ingress"),
                     ("blueprint/refresh.py", "prestage_plan"), ("orchestration/blueprints.py", "prestage")}
# Demo tools that drive several roles in a row (``make drill``: refresh, then a drill): no role of their own.
_NEUTRAL = {"failover/drill.py"}


@dataclass(frozen=True)
class CallSite:
    path: str  # relative to the package
    line: int
    function: str
    service: str
    method: str
    action: str
    roles: frozenset[str]
    implied: frozenset[str] = frozenset()  # extra actions AWS checks (tag-on-create, iam:PassRole, …)


@dataclass
class ScanResult:
    calls: list[CallSite] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # "path:line method (candidates)"

    def actions_by_role(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for call in self.calls:
            for role in call.roles:
                out.setdefault(role, set()).update({call.action, *call.implied})
        return out


def _services_in_use() -> set[str]:
    """Every botocore service named by a client factory call anywhere in the package."""
    import botocore.session

    known = set(botocore.session.get_session().get_available_services())
    found: set[str] = set()
    for path in _package_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            service = _factory_service(node, known)
            if service:
                found.add(service)
    return found


def _package_files() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] not in SKIPPED_PACKAGES:
            yield path


def _factory_service(node: ast.AST, known: set[str]) -> str | None:
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name in ("get", "get_single_attempt"):  # only on a clients holder: `env.clients.get("ec2", …)`
        holder = func.value if isinstance(func, ast.Attribute) else None
        holder_name = holder.attr if isinstance(holder, ast.Attribute) else getattr(holder, "id", "")
        if not str(holder_name).endswith("clients"):
            return None
    first = node.args[0]
    if name in _FACTORIES and isinstance(first, ast.Constant) and isinstance(first.value, str) \
            and first.value in known:
        return first.value
    return None


def _service_from_name(name: str, services: set[str]) -> str | None:
    head = name.lower().split("_")[0]
    head = _ALIASES.get(head, head)
    if head in services:
        return head
    return None


def _roles_for(rel: str, function: str) -> frozenset[str]:
    """A function's own role, by where it lives (refresh-role helpers also take their callers': see
    _propagated_roles)."""
    if rel in _NEUTRAL:
        return frozenset()
    if rel.startswith("failover/") or rel == "orchestration/failover.py":
        return frozenset({"failover"})
    if (rel, function) in _PRESTAGE_ENTRIES:
        return frozenset({"prestage"})
    return frozenset({"refresh"})


def _explicit(rel: str, function: str) -> bool:
    """Role entry points keep their own role: a refresh function calling the pre-stager does not make the
    pre-stager a refresh-role writer (in the DAG it is its own task with its own connection)."""
    return rel in _NEUTRAL or _roles_for(rel, function) != frozenset({"refresh"})


class _FunctionScanner(ast.NodeVisitor):
    def __init__(self, rel: str, services: set[str], known: set[str], result: ScanResult,
                 module_keys: set[str], roles: dict[tuple[str, str], frozenset[str]]) -> None:
        self.rel, self.services, self.known, self.result = rel, services, known, result
        self.module_keys = module_keys  # string dict keys of the module: what a **request may carry
        self.roles = roles  # (module, top-level function) → roles, after propagation along the call graph
        self.function = "<module>"
        self.top = "<module>"
        self.bindings: dict[str, str] = {}

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, outer_bindings, outer_top = self.function, self.bindings, self.top
        self.function, self.bindings = node.name, dict(outer_bindings)
        if outer == "<module>":
            self.top = node.name
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            service = _service_from_name(arg.arg, self.services)
            if service:
                self.bindings[arg.arg] = service
        # bindings first (assignments anywhere in the body), then calls
        for sub in ast.walk(node):
            if isinstance(sub, ast.Assign) and len(sub.targets) == 1 and isinstance(sub.targets[0], ast.Name):
                service = _factory_service(sub.value, self.known)
                if service:
                    self.bindings[sub.targets[0].id] = service
        self.generic_visit(node)
        self.function, self.bindings, self.top = outer, outer_bindings, outer_top

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def _receiver_service(self, receiver: ast.AST) -> str | None:
        if isinstance(receiver, ast.Name):
            return self.bindings.get(receiver.id) or _service_from_name(receiver.id, self.services)
        if isinstance(receiver, ast.Attribute):
            return _service_from_name(receiver.attr, self.services)
        return _factory_service(receiver, self.known)

    def _keywords(self, node: ast.AST) -> set[str]:
        if not isinstance(node, ast.Call):
            return set()
        names = {k.arg for k in node.keywords if k.arg}
        if any(k.arg is None for k in node.keywords):
            names |= self.module_keys
        return names

    def _record(self, node: ast.AST, service: str | None, method: str) -> None:
        line = getattr(node, "lineno", 0)
        if service is None:
            candidates = sorted(s for s in self.services if method in _method_to_operation(s))
            if len(candidates) == 1:
                service = candidates[0]
            elif candidates:
                self.result.unresolved.append(f"{self.rel}:{line} {method} {candidates}")
                return
            else:
                return
        action = _S3_TRANSFER.get(method) if service == "s3" else None
        action = action or action_for_method(service, method)
        if action is None:
            return
        self.result.calls.append(CallSite(self.rel, line, self.function, service, method, action,
                                          self.roles.get((self.rel, self.top), _roles_for(self.rel, self.top)),
                                          frozenset(implied_actions(action, keywords=self._keywords(node)))))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            service = self._receiver_service(func.value)
            if func.attr in ("get_paginator", "get_waiter") and node.args and isinstance(node.args[0], ast.Constant):
                if func.attr == "get_paginator":
                    self._record(node, service, str(node.args[0].value))
            elif service is not None and (func.attr in _method_to_operation(service)
                                          or (service == "s3" and func.attr in _S3_TRANSFER)):
                self._record(node, service, func.attr)
            elif service is None and any(func.attr in _method_to_operation(s) for s in self.services):
                self._record(node, None, func.attr)
        # helpers taking (client, "operation", …): paginate_all(ec2, "describe_vpcs", …)
        if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            service = self._receiver_service(node.args[0])
            if service and node.args[1].value in _method_to_operation(service):
                self._record(node, service, node.args[1].value)
        self.generic_visit(node)


def _module_rel(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "shadowing":
        return None
    for candidate in (PACKAGE.joinpath(*parts[1:]).with_suffix(".py"), PACKAGE.joinpath(*parts[1:], "__init__.py")):
        if candidate.exists():
            return candidate.relative_to(PACKAGE).as_posix()
    return None


def _propagated_roles(trees: dict[str, ast.Module]) -> dict[tuple[str, str], frozenset[str]]:
    """Roles per (module, top-level function): its own, plus those of every package function that calls it
    (resolved through ``from shadowing.x import f`` and same-module calls), so a shared helper in one module
    called from the pre-stager or the failover is held against those roles too."""
    edges: dict[tuple[str, str], set[tuple[str, str]]] = {}
    roles: dict[tuple[str, str], set[str]] = {}
    for rel, tree in trees.items():
        imported: dict[str, tuple[str, str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                target = _module_rel(node.module)
                if target:
                    for alias in node.names:
                        imported[alias.asname or alias.name] = (target, alias.name)
        local = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        for top in tree.body:
            if not isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            key = (rel, top.name)
            roles[key] = set(_roles_for(rel, top.name))
            for sub in ast.walk(top):
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
                    name = sub.func.id
                    if name in imported:
                        edges.setdefault(key, set()).add(imported[name])
                    elif name in local:
                        edges.setdefault(key, set()).add((rel, name))
    changed = True
    while changed:
        changed = False
        for caller, callees in edges.items():
            for callee in callees:
                if callee in roles and not _explicit(*callee) and not roles[caller] <= roles[callee]:
                    roles[callee] |= roles[caller]
                    changed = True
    return {k: frozenset(v) for k, v in roles.items()}


def scan_package() -> ScanResult:
    import botocore.session

    known = set(botocore.session.get_session().get_available_services())
    services = _services_in_use()
    result = ScanResult()
    trees = {path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(), str(path))
             for path in _package_files()}
    roles = _propagated_roles(trees)
    for rel, tree in trees.items():
        keys = {k.value for d in ast.walk(tree) if isinstance(d, ast.Dict) for k in d.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        _FunctionScanner(rel, services, known, result, keys, roles).visit(tree)
    return result
