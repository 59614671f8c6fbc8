"""One blueprint refresh of a primary region, as steps the DAG runs as tasks (and the CLI/bench in a row).

    build → validate → prestage (+ resolve ids) → upsert version → readiness

Pre-staging runs BEFORE the version is stored (DESIGN listed it after): the stored blueprint then carries the
shadow's real ids (VPC, subnets, security groups, launch templates, AMI copies, replicas), so the failover has
nothing left to look up, and a steady state yields exactly one version instead of an id-less one followed by
an id-resolved one. Only a validated plan is pre-staged, and pre-staging creates data-free resources only.

Every step takes and returns plain JSON-able dicts (Airflow XCom-friendly).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from shadowing.blueprint.builder import BuildInputs, build_blueprint, service_of
from shadowing.blueprint.diff import diff_blueprints
from shadowing.blueprint.inventory import ClientFactory, read_inventory
from shadowing.blueprint.model import Blueprint, blueprint_hash
from shadowing.blueprint.prestage import find_prestaged, prestage
from shadowing.blueprint.readiness import (
    check_amis,
    check_drift,
    check_freshness,
    check_prestaged,
    check_quotas,
    check_regions,
    live_summary,
    summarise,
)
from shadowing.errors import InputError, ValidationFailed
from shadowing.warehouse.blueprints import prestage_lock
from shadowing.warehouse.operations import ReadinessCheck, record_readiness
from shadowing.warehouse.store import (
    current_blueprint,
    latest_valid_fingerprint,
    latest_valid_graph,
    upsert_blueprint_version,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = timedelta(hours=24)
# Build-time issues re-checked on the final (pre-staged) blueprint, so they are not carried over.
_RECHECKED_LATER = {"ami_available"}


def _checks(items: list[Mapping[str, Any]]) -> list[ReadinessCheck]:
    return [ReadinessCheck(i["check"], i["subject"], bool(i["passed"]), i.get("detail", "")) for i in items]


def build_plan(engine: Engine, clients: ClientFactory, primary_region: str, shadow_region: str, *,
               run_id: str | None = None, now: datetime | None = None,
               max_age: timedelta = DEFAULT_MAX_AGE) -> dict[str, Any]:
    """Read the latest valid fingerprint and graph and the live primary; build the blueprint plan."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    issues = check_regions(primary_region, shadow_region)
    if not all(c.passed for c in issues):
        # An unknown region is a named readiness failure, never an exception (no AWS call is attempted).
        return {"primary_region": primary_region, "shadow_region": shadow_region, "payload": None,
                "issues": [c.to_dict() for c in issues], "images": {}, "live": {}, "seconds": {}}
    fingerprint = latest_valid_fingerprint(engine, primary_region)
    graph = latest_valid_graph(engine, primary_region)
    issues.append(check_freshness("fingerprint", _age_anchor(fingerprint), now, max_age))
    issues.append(check_freshness("graph", _age_anchor(graph), now, max_age))
    inventory = read_inventory(clients, primary_region)
    t_inventory = time.perf_counter()
    services = sorted({service_of(i.get("tags")) for i in inventory["instances"]} - {None}
                      | set(((fingerprint.payload if fingerprint else {}) or {}).get("services") or {}))
    state = find_prestaged(clients, shadow_region, primary_region, inventory["images"], services)
    result = build_blueprint(BuildInputs(
        primary_region=primary_region, shadow_region=shadow_region,
        fingerprint=fingerprint.payload if fingerprint else None, graph=graph.payload if graph else None,
        inventory=inventory, shadow=state, fingerprint_id=fingerprint.id if fingerprint else None,
        graph_id=graph.id if graph else None, run_id=run_id))
    issues.extend(result.issues)
    return {"primary_region": primary_region, "shadow_region": shadow_region, "payload": result.payload,
            "issues": [c.to_dict() for c in issues], "images": inventory["images"], "state": state,
            "placement": result.placement,
            "live": live_summary(inventory),
            "seconds": {"inventory": round(t_inventory - started, 3), "build": round(time.perf_counter() - started, 3)}}


def _age_anchor(artifact: Any) -> datetime | None:
    if artifact is None:
        return None
    return artifact.window_end or artifact.created_at


def validate_plan(engine: Engine, plan: Mapping[str, Any], *, run_id: str) -> Blueprint:
    """Parse and validate the planned blueprint; on failure record the named readiness failure and raise
    ValidationFailed (the current version stays current)."""
    try:
        if plan.get("payload") is None:
            raise InputError("no blueprint could be built", field="payload")
        blueprint = Blueprint.from_dict(plan["payload"])
        _guard_against_collapse(engine, plan)
        return blueprint
    except InputError as exc:
        checks = _checks(plan.get("issues") or []) + [ReadinessCheck("blueprint_valid", "blueprint", False, str(exc))]
        record_readiness(engine, primary_region=plan["primary_region"], shadow_region=plan["shadow_region"],
                         run_id=run_id, checks=checks)
        raise ValidationFailed(f"blueprint for {plan['primary_region']} failed validation: {exc}",
                               [str(exc)]) from exc


def _guard_against_collapse(engine: Engine, plan: Mapping[str, Any]) -> None:
    """A primary that is failing (instances gone) must not overwrite the last good blueprint with a hollow one:
    when more than half of the current version's services no longer run, the refresh is rejected."""
    current = current_blueprint(engine, plan["primary_region"])
    if current is None:
        return
    before = set(current.payload.get("services") or {})
    running = set(plan.get("live") or {})
    lost = sorted(before - running)
    if before and len(lost) * 2 > len(before):
        raise InputError(f"{len(lost)} of the {len(before)} services of blueprint v{current.version} are not running "
                         f"in the primary (outage or broken inventory?): keeping v{current.version}",
                         field="services")


def resolve_prestaged(blueprint: Blueprint, state: Mapping[str, Any],
                      placement: Mapping[str, list[str]] | None = None) -> Blueprint:
    """Fill the shadow's real ids found by tags into the blueprint (pure).

    A service's availability-zone entry becomes the shadow subnets of that zone with the CIDRs its primary
    instances use (``placement``, from the build), as the builder maps them once the subnets exist; only a
    service without a known placement gets every subnet of the zone. Mapping a zone to all its subnets used to
    put a service in subnets it never ran in (a public and a private subnet of one AZ, or two primary AZs folded
    onto one in a shadow with fewer zones), and the next refresh, finding the subnets, stored a second version.
    """
    subnet_ids = state.get("subnets") or {}
    subnets = [dataclasses.replace(s, id=(subnet_ids.get(s.cidr) or {}).get("id") or s.id)
               for s in blueprint.networking.subnets]
    ids_by_az: dict[str, list[str]] = {}
    ids_by_az_cidr: dict[tuple[str, str], str] = {}
    for s in subnets:
        if s.id:
            ids_by_az.setdefault(s.az, []).append(s.id)
            ids_by_az_cidr[(s.az, s.cidr)] = s.id

    def subnet_ids_of(service: str, entry: str) -> list[str]:
        if entry.startswith("subnet-"):
            return [entry]
        placed = [ids_by_az_cidr[(entry, cidr)] for cidr in (placement or {}).get(service) or []
                  if (entry, cidr) in ids_by_az_cidr]
        return placed or ids_by_az.get(entry, [entry])
    group_ids = state.get("security_groups") or {}
    groups = {n: dataclasses.replace(g, id=group_ids.get(n) or g.id)
              for n, g in blueprint.networking.security_groups.items()}
    templates = state.get("launch_templates") or {}
    copies = state.get("ami_copies") or {}
    services = {}
    for name, svc in blueprint.services.items():
        resolved_subnets = sorted({sid for entry in svc.subnets for sid in subnet_ids_of(name, entry)})
        sg = groups.get(name)
        services[name] = dataclasses.replace(
            svc, subnets=resolved_subnets,
            security_groups=[sg.id or sg.name or name] if sg else svc.security_groups,
            ami=None if svc.ami is None else dataclasses.replace(
                svc.ami, shadow=copies.get(svc.ami.primary) or svc.ami.shadow),
            launch_template=None if svc.launch_template is None else dataclasses.replace(
                svc.launch_template, id=templates.get(svc.launch_template.name) or svc.launch_template.id))
    replicas = state.get("replicas") or {}
    replication = [dataclasses.replace(r, action="promote_replica")
                   if r.kind == "rds" and r.target.identifier in replicas else r for r in blueprint.replication]
    vpc = dataclasses.replace(blueprint.networking.vpc, id=(state.get("vpc") or {}).get("id") or
                              blueprint.networking.vpc.id)
    networking = dataclasses.replace(blueprint.networking, vpc=vpc, subnets=subnets, security_groups=groups)
    return dataclasses.replace(blueprint, services=services, networking=networking, replication=replication)


def prestage_plan(clients: ClientFactory, plan: Mapping[str, Any], *, with_replicas: bool = True,
                  lock: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """Pre-stage the validated plan, then resolve the real ids into it. Returns the updated plan.

    ``lock``: the region's pre-staging lock (:func:`shadowing.warehouse.blueprints.prestage_lock`). Under it the
    shadow is read again first: the state the build read may predate a concurrent refresh's pre-staging, and
    creating from it would duplicate what that refresh just made."""
    blueprint = Blueprint.from_dict(plan["payload"])
    images = plan.get("images") or {}

    def find() -> dict[str, Any]:
        return find_prestaged(clients, blueprint.shadow_region, blueprint.primary_region, images,
                              sorted(blueprint.services))

    with lock if lock is not None else nullcontext():
        state = find() if lock is not None else plan.get("state")
        report = prestage(clients, blueprint, images, with_replicas=with_replicas, state=state)
        if state is None or report.created or report.updated:  # read back the ids of what was just made
            state = find()
    resolved = resolve_prestaged(blueprint, state, plan.get("placement"))
    resolved.check_consistency()
    return {**plan, "payload": resolved.to_dict(), "prestage": report.to_dict(), "state": state}


def store_plan(engine: Engine, plan: Mapping[str, Any], *, run_id: str | None = None) -> dict[str, Any]:
    """Upsert the plan as the current version when its content changed. Returns {version, created, hash}."""
    payload = plan["payload"]
    Blueprint.from_dict(payload)  # never store what does not validate
    provenance = payload.get("provenance") or {}
    outcome = upsert_blueprint_version(
        engine, primary_region=plan["primary_region"], shadow_region=plan["shadow_region"], payload=payload,
        hash_=blueprint_hash(payload), fingerprint_id=provenance.get("fingerprint_id"),
        graph_id=provenance.get("graph_id"), run_id=run_id or provenance.get("run_id"),
        primary_inventory_hash=provenance.get("primary_inventory_hash"), diff=diff_blueprints)
    return {"version": outcome.version.version, "created": outcome.created, "hash": outcome.version.content_hash,
            "diff": outcome.version.diff_summary if outcome.created else {}}


def readiness_for_plan(engine: Engine, clients: ClientFactory, plan: Mapping[str, Any], *, run_id: str,
                       version: int | None = None) -> dict[str, Any]:
    """Run and store the readiness checks of this refresh; returns the summary (ready only if all pass)."""
    primary = plan["primary_region"]
    checks = [c for c in _checks(plan.get("issues") or []) if c.check not in _RECHECKED_LATER]
    current = current_blueprint(engine, primary)
    if current is not None and plan.get("payload") is not None:
        blueprint = current.payload
        checks += check_amis(blueprint)
        checks += check_quotas(clients, blueprint,
                               prestaged_groups=len((plan.get("state") or {}).get("security_groups") or {}))
        checks += check_drift(blueprint, plan.get("live") or {})
        state = plan.get("state")
        if state is None:
            state = find_prestaged(clients, plan["shadow_region"], primary, plan.get("images") or {},
                                   sorted(blueprint.get("services") or {}))
        checks += check_prestaged(blueprint, state)
        version = version or current.version
    elif plan.get("payload") is not None:
        checks.append(ReadinessCheck("blueprint_valid", "blueprint", False, "no current blueprint version"))
    report = record_readiness(engine, primary_region=primary, shadow_region=plan["shadow_region"], run_id=run_id,
                              checks=checks, blueprint_version=version)
    return {"primary_region": primary, "version": version, **summarise(report.checks)}


def refresh_region(engine: Engine, clients: ClientFactory, primary_region: str, shadow_region: str, *,
                   run_id: str, with_prestage: bool = True, now: datetime | None = None,
                   max_age: timedelta = DEFAULT_MAX_AGE) -> dict[str, Any]:
    """All steps in a row (CLI, bench, tests). A validation failure returns ready=False, never raises."""
    t0 = time.perf_counter()
    plan = build_plan(engine, clients, primary_region, shadow_region, run_id=run_id, now=now, max_age=max_age)
    t_build = time.perf_counter()
    try:
        validate_plan(engine, plan, run_id=run_id)
    except ValidationFailed as exc:
        return {"primary_region": primary_region, "ready": False, "valid": False, "error": str(exc),
                "version": None, "created": False}
    if with_prestage:
        plan = prestage_plan(clients, plan, lock=prestage_lock(engine, primary_region))
    t_prestage = time.perf_counter()
    stored = store_plan(engine, plan, run_id=run_id)
    t_store = time.perf_counter()
    readiness = readiness_for_plan(engine, clients, plan, run_id=run_id, version=stored["version"])
    t_end = time.perf_counter()
    return {**readiness, **stored, "valid": True, "prestage": plan.get("prestage"),
            "seconds": {"build": round(t_build - t0, 3), "prestage": round(t_prestage - t_build, 3),
                        "store": round(t_store - t_prestage, 3), "readiness": round(t_end - t_store, 3),
                        "total": round(t_end - t0, 3)}}
