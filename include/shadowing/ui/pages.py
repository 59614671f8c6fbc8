"""Page data of the "Shadow Regions" UI, read from the warehouse only (an Engine is passed in).

``region_list`` is the landing table (one cheap grouped query per table, whatever the number of regions);
``region_detail`` is the per-region JSON the page loads lazily when a region is opened: blueprint version and
age, readiness with failing checks, capacity charts, the laid-out dependency graph, blueprint history with
diffs, failover history with step timelines, and the validation status of the latest refresh artefacts.
Every query is served by an index of the warehouse migrations (region first, then id / time).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shadowing.ui.capacity import capacity_charts
from shadowing.ui.diff import blueprint_diff
from shadowing.ui.graph_layout import layout
from shadowing.warehouse.tables import (
    blueprint_versions,
    capacity_fingerprints,
    dependency_graphs,
    failover_events,
    health_observations,
    readiness_results,
)

HISTORY_LIMIT = 100
DIFFED_VERSIONS = 10
FAILOVER_LIMIT = 50


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    value = _utc(value)
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _age_seconds(value: datetime | None, now: datetime) -> float | None:
    value = _utc(value)
    return None if value is None else max(0.0, (now - value).total_seconds())


# ───────────────────────────────────────────── landing list ─────────────────────────────────────────────

def region_list(engine: Engine, configured: Mapping[str, str] | None = None,
                now: datetime | None = None) -> list[dict[str, Any]]:
    """One summary row per primary region known to the configuration or the warehouse."""
    now = _utc(now) or datetime.now(UTC)
    bv, rr, ho, fe = blueprint_versions, readiness_results, health_observations, failover_events
    rows: dict[str, dict[str, Any]] = {}

    def entry(region: str) -> dict[str, Any]:
        return rows.setdefault(region, {
            "region": region, "shadow_region": (configured or {}).get(region), "blueprint_version": None,
            "blueprint_age_seconds": None, "blueprint_valid_from": None, "ready": None, "failing_checks": 0,
            "checked_at": None, "health": None, "last_failover": None, "has_fingerprint": False,
            "has_graph": False})

    for region in configured or {}:
        entry(region)
    with engine.connect() as conn:
        for table, flag in ((capacity_fingerprints, "has_fingerprint"), (dependency_graphs, "has_graph")):
            for region in conn.execute(sa.select(table.c.region).where(table.c.valid.is_(True)).distinct()).scalars():
                entry(region)[flag] = True
        for row in conn.execute(sa.select(bv.c.primary_region, bv.c.shadow_region, bv.c.version, bv.c.valid_from)
                                .where(bv.c.is_current.is_(True))).mappings():
            item = entry(row["primary_region"])
            item.update(shadow_region=row["shadow_region"], blueprint_version=row["version"],
                        blueprint_valid_from=_iso(row["valid_from"]),
                        blueprint_age_seconds=_age_seconds(row["valid_from"], now))
        latest_run = (sa.select(rr.c.primary_region, sa.func.max(rr.c.id).label("last_id"))
                      .group_by(rr.c.primary_region).subquery())
        runs = (sa.select(rr.c.primary_region, rr.c.run_id, rr.c.checked_at)
                .join(latest_run, rr.c.id == latest_run.c.last_id).subquery())
        counts = (sa.select(rr.c.primary_region, sa.func.max(runs.c.checked_at).label("checked_at"),
                            sa.func.sum(sa.case((rr.c.passed.is_(False), 1), else_=0)).label("failing"),
                            sa.func.count().label("total"))
                  .join(runs, sa.and_(rr.c.primary_region == runs.c.primary_region, rr.c.run_id == runs.c.run_id))
                  .group_by(rr.c.primary_region))
        for row in conn.execute(counts).mappings():
            item = entry(row["primary_region"])
            item.update(ready=int(row["failing"] or 0) == 0, failing_checks=int(row["failing"] or 0),
                        checked_at=_iso(row["checked_at"]))
        last_health = sa.select(sa.func.max(ho.c.id)).group_by(ho.c.primary_region)
        for row in conn.execute(sa.select(ho.c.primary_region, ho.c.verdict, ho.c.healthy, ho.c.observed_at)
                                .where(ho.c.id.in_(last_health))).mappings():
            entry(row["primary_region"])["health"] = {"verdict": row["verdict"], "healthy": bool(row["healthy"]),
                                                      "observed_at": _iso(row["observed_at"])}
        ranked = sa.select(fe.c.primary_region, fe.c.failover_id, fe.c.mode, fe.c.outcome, fe.c.started_at,
                           fe.c.recovery_seconds,
                           sa.func.row_number().over(partition_by=fe.c.primary_region,
                                                     order_by=(fe.c.started_at.desc(), fe.c.id.desc())
                                                     ).label("rank")).subquery()
        for row in conn.execute(sa.select(ranked).where(ranked.c.rank == 1)).mappings():
            entry(row["primary_region"])["last_failover"] = {
                "kind": _event_kind(row["failover_id"]),
                "mode": row["mode"], "outcome": row["outcome"], "started_at": _iso(row["started_at"]),
                "recovery_seconds": row["recovery_seconds"]}
    return [rows[r] for r in sorted(rows)]


# ───────────────────────────────────────────── region detail ─────────────────────────────────────────────

def _latest_artifact(conn: sa.Connection, table: sa.Table, region: str, *, valid_only: bool) -> Any:
    query = sa.select(table).where(table.c.region == region)
    if valid_only:
        query = query.where(table.c.valid.is_(True))
    return conn.execute(query.order_by(table.c.id.desc()).limit(1)).mappings().first()


def _artifact_status(conn: sa.Connection, table: sa.Table, region: str) -> dict[str, Any] | None:
    cols = [table.c.id, table.c.created_at, table.c.valid, table.c.errors, table.c.run_id]
    latest = conn.execute(sa.select(*cols).where(table.c.region == region).order_by(table.c.id.desc())
                          .limit(1)).mappings().first()
    if latest is None:
        return None
    valid = conn.execute(sa.select(table.c.id, table.c.created_at).where(
        table.c.region == region, table.c.valid.is_(True)).order_by(table.c.id.desc()).limit(1)).mappings().first()
    return {"latest_id": latest["id"], "latest_at": _iso(latest["created_at"]), "latest_valid": bool(latest["valid"]),
            "latest_errors": list(latest["errors"] or [])[:50], "run_id": latest["run_id"],
            "current_valid_id": None if valid is None else valid["id"],
            "current_valid_at": None if valid is None else _iso(valid["created_at"])}


def _readiness(conn: sa.Connection, region: str) -> dict[str, Any] | None:
    rr = readiness_results
    last = conn.execute(sa.select(rr.c.run_id, rr.c.checked_at, rr.c.blueprint_version)
                        .where(rr.c.primary_region == region).order_by(rr.c.id.desc()).limit(1)).mappings().first()
    if last is None:
        return None
    checks = [{"check": r["check_name"], "subject": r["subject"], "passed": bool(r["passed"]), "detail": r["detail"]}
              for r in conn.execute(sa.select(rr.c.check_name, rr.c.subject, rr.c.passed, rr.c.detail)
                                    .where(rr.c.primary_region == region, rr.c.run_id == last["run_id"])
                                    .order_by(rr.c.check_name, rr.c.subject)).mappings()]
    failing = [c for c in checks if not c["passed"]]
    by_check: dict[str, dict[str, int]] = {}
    for c in checks:
        counts = by_check.setdefault(c["check"], {"passed": 0, "failed": 0})
        counts["passed" if c["passed"] else "failed"] += 1
    return {"run_id": last["run_id"], "checked_at": _iso(last["checked_at"]),
            "blueprint_version": last["blueprint_version"], "ready": not failing, "total": len(checks),
            "failing": failing, "by_check": [{"check": k, **v} for k, v in sorted(by_check.items())]}


def _steps(raw: Any, started_at: datetime | None) -> list[dict[str, Any]]:
    """Normalise the failover's step records (a list of dicts or a name → dict mapping) for a timeline."""
    items: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(raw, Mapping):
        items = [(str(k), v) for k, v in raw.items() if isinstance(v, Mapping)]
    elif isinstance(raw, list):
        items = [(str(s.get("name") or s.get("step") or f"step {i + 1}"), s)
                 for i, s in enumerate(raw) if isinstance(s, Mapping)]
    steps = []
    for name, step in items:
        start = _parse_time(step.get("started_at") or step.get("start"))
        end = _parse_time(step.get("finished_at") or step.get("ended_at") or step.get("end"))
        steps.append({
            "name": name,
            "state": step.get("state") or step.get("status") or step.get("outcome"),
            "started_at": _iso(start), "finished_at": _iso(end),
            "offset_seconds": None if start is None or started_at is None else (start - started_at).total_seconds(),
            "duration_seconds": None if start is None or end is None else max(0.0, (end - start).total_seconds()),
            "detail": step.get("detail") or step.get("error"),
        })
    steps.sort(key=lambda s: (s["offset_seconds"] is None, s["offset_seconds"] or 0.0))
    return steps


def _event_kind(event_id: str) -> str:
    """failback rows (their own run, see shadowing.failover.failback) have ids ``fb-…``."""
    return "failback" if str(event_id).startswith("fb-") else "failover"


def _failovers(conn: sa.Connection, region: str) -> list[dict[str, Any]]:
    fe = failover_events
    cols = [fe.c.failover_id, fe.c.dag_run_id, fe.c.shadow_region, fe.c.mode, fe.c.trigger, fe.c.triggered_by,
            fe.c.blueprint_version, fe.c.steps, fe.c.outcome, fe.c.error, fe.c.detected_at, fe.c.started_at,
            fe.c.finished_at, fe.c.recovery_seconds]
    events = []
    for row in conn.execute(sa.select(*cols).where(fe.c.primary_region == region)
                            .order_by(fe.c.started_at.desc(), fe.c.id.desc()).limit(FAILOVER_LIMIT)).mappings():
        started = _utc(row["started_at"])
        finished = _utc(row["finished_at"])
        events.append({
            "failover_id": row["failover_id"], "kind": _event_kind(row["failover_id"]),
            "dag_run_id": row["dag_run_id"], "shadow_region": row["shadow_region"],
            "mode": row["mode"], "trigger": row["trigger"], "triggered_by": row["triggered_by"],
            "blueprint_version": row["blueprint_version"], "outcome": row["outcome"], "error": row["error"],
            "detected_at": _iso(row["detected_at"]), "started_at": _iso(started), "finished_at": _iso(finished),
            "duration_seconds": None if finished is None or started is None else (finished - started).total_seconds(),
            "recovery_seconds": row["recovery_seconds"], "steps": _steps(row["steps"], started)})
    return events


def _history(conn: sa.Connection, region: str, now: datetime) -> list[dict[str, Any]]:
    bv = blueprint_versions
    rows = conn.execute(sa.select(bv.c.id, bv.c.version, bv.c.content_hash, bv.c.valid_from, bv.c.valid_to,
                                  bv.c.is_current, bv.c.fingerprint_id, bv.c.graph_id, bv.c.run_id, bv.c.diff_summary)
                        .where(bv.c.primary_region == region).order_by(bv.c.version.desc())
                        .limit(HISTORY_LIMIT)).mappings().all()
    # Payloads only for the newest versions (plus one to diff against): history stays cheap with long tails.
    wanted = [r["id"] for r in rows[:DIFFED_VERSIONS + 1]]
    payloads = dict(conn.execute(sa.select(bv.c.id, bv.c.payload).where(bv.c.id.in_(wanted))).all()) if wanted else {}
    history = []
    for index, row in enumerate(rows):
        item = {"version": row["version"], "content_hash": row["content_hash"], "valid_from": _iso(row["valid_from"]),
                "valid_to": _iso(row["valid_to"]), "is_current": bool(row["is_current"]),
                "fingerprint_id": row["fingerprint_id"], "graph_id": row["graph_id"], "run_id": row["run_id"],
                "summary": row["diff_summary"] or {}, "diff": None}
        if index < DIFFED_VERSIONS and row["id"] in payloads:
            previous = rows[index + 1]["id"] if index + 1 < len(rows) else None
            item["diff"] = blueprint_diff(payloads.get(previous) if previous is not None else None,
                                          payloads[row["id"]])
        history.append(item)
    return history


def _blueprint_summary(payload: Mapping[str, Any]) -> dict[str, Any]:
    services = payload.get("services") if isinstance(payload.get("services"), Mapping) else {}
    return {"services": len(services),
            "instances": sum(int(s.get("count") or 0) for s in services.values() if isinstance(s, Mapping)
                             and s.get("kind", "compute") == "compute"),
            "launch_tiers": len(payload.get("launch_tiers") or []),
            "shadow_ami_missing": sorted(n for n, s in services.items() if isinstance(s, Mapping)
                                         and isinstance(s.get("ami"), Mapping) and s.get("kind", "compute") == "compute"
                                         and not s["ami"].get("shadow"))}


def region_detail(engine: Engine, region: str, configured: Mapping[str, str] | None = None,
                  now: datetime | None = None) -> dict[str, Any] | None:
    """Everything the page shows for one primary region; None when the warehouse knows nothing about it."""
    now = _utc(now) or datetime.now(UTC)
    bv, ho = blueprint_versions, health_observations
    with engine.connect() as conn:
        current = conn.execute(sa.select(bv).where(bv.c.primary_region == region, bv.c.is_current.is_(True))
                               ).mappings().first()
        fingerprint = _latest_artifact(conn, capacity_fingerprints, region, valid_only=True)
        graph = _latest_artifact(conn, dependency_graphs, region, valid_only=True)
        readiness = _readiness(conn, region)
        failovers = _failovers(conn, region)
        history = _history(conn, region, now)
        health = conn.execute(sa.select(ho.c.observed_at, ho.c.healthy, ho.c.verdict, ho.c.action, ho.c.detail,
                                        ho.c.checks).where(ho.c.primary_region == region)
                              .order_by(ho.c.id.desc()).limit(1)).mappings().first()
        validation = {"capacity_fingerprint": _artifact_status(conn, capacity_fingerprints, region),
                      "dependency_graph": _artifact_status(conn, dependency_graphs, region)}
    if not any([current, fingerprint, graph, readiness, failovers, health]) and region not in (configured or {}):
        return None
    shadow = (current["shadow_region"] if current is not None else None) or (configured or {}).get(region)
    fp_payload = fingerprint["payload"] if fingerprint is not None else None
    graph_payload = graph["payload"] if graph is not None else None
    return {
        "region": region,
        "shadow_region": shadow,
        "generated_at": now.isoformat(),
        "blueprint": None if current is None else {
            "version": current["version"], "content_hash": current["content_hash"],
            "valid_from": _iso(current["valid_from"]), "age_seconds": _age_seconds(current["valid_from"], now),
            "run_id": current["run_id"], "fingerprint_id": current["fingerprint_id"],
            "graph_id": current["graph_id"], **_blueprint_summary(current["payload"] or {})},
        "readiness": readiness,
        "health": None if health is None else {
            "observed_at": _iso(health["observed_at"]), "healthy": bool(health["healthy"]),
            "verdict": health["verdict"], "action": health["action"], "detail": health["detail"]},
        "capacity": None if fp_payload is None else {
            "fingerprint_id": fingerprint["id"], "window": fp_payload.get("window"),
            "generated_at": fp_payload.get("generated_at") or _iso(fingerprint["created_at"]),
            "age_seconds": _age_seconds(fingerprint["created_at"], now),
            "services": capacity_charts(fp_payload)},
        "graph": None if graph_payload is None else {
            "graph_id": graph["id"], "generated_at": _iso(graph["created_at"]),
            "age_seconds": _age_seconds(graph["created_at"], now), **layout(graph_payload)},
        "blueprint_history": history,
        "failovers": failovers,
        "validation": validation,
    }
