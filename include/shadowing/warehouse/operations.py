"""Operational records: readiness results, health observations, failover events, failover locks, audit.

Failover events are written by the failover DAG as it goes (one row per failover id, its step timeline in
JSON, merged under a row lock so parallel step tasks never lose each other's entries). The lock table holds at
most one row per primary region: "one failover per primary at a time" is a primary-key constraint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from shadowing.warehouse.codec import utc as _utc
from shadowing.warehouse.tables import (
    auto_failover_audit,
    failover_events,
    failover_locks,
    health_observations,
    readiness_results,
)
from shadowing.warehouse.transactions import run_in_write_transaction, write_transaction

FAILOVER_MODES = ("dry_run", "drill", "live")
FAILOVER_TRIGGERS = ("manual", "sensor")
FAILOVER_OUTCOMES = ("running", "succeeded", "failed", "aborted")


def _now(value: datetime | None = None) -> datetime:
    return _utc(value) or datetime.now(UTC)


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _now(value).isoformat()


# ─────────────────────────────────────────── readiness ───────────────────────────────────────────

@dataclass(frozen=True)
class ReadinessCheck:
    """One check outcome. ``subject`` names what was checked (service, AMI, quota…)."""

    check: str
    subject: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "subject": self.subject, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class ReadinessReport:
    primary_region: str
    run_id: str
    checked_at: datetime
    blueprint_version: int | None
    checks: list[ReadinessCheck]

    @property
    def ready(self) -> bool:
        """A region is ready only when every check passed (and there was at least one)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[ReadinessCheck]:
        return [c for c in self.checks if not c.passed]


def record_readiness(engine: Engine, *, primary_region: str, run_id: str, checks: Iterable[ReadinessCheck],
                     shadow_region: str | None = None, blueprint_version: int | None = None,
                     checked_at: datetime | None = None) -> ReadinessReport:
    """Store one run's readiness checks (all or nothing)."""
    stamp = _now(checked_at)
    items = list(checks)
    rows = [{"primary_region": primary_region, "shadow_region": shadow_region, "run_id": run_id,
             "checked_at": stamp, "blueprint_version": blueprint_version, "check_name": c.check,
             "subject": c.subject[:250], "passed": bool(c.passed), "detail": c.detail} for c in items]
    with write_transaction(engine) as conn:
        if rows:
            conn.execute(sa.insert(readiness_results), rows)
    return ReadinessReport(primary_region, run_id, stamp, blueprint_version, items)


def latest_readiness(engine: Engine, primary_region: str) -> ReadinessReport | None:
    """The checks of the most recent readiness run of ``primary_region``."""
    rr = readiness_results
    with engine.connect() as conn:
        last = conn.execute(sa.select(rr.c.run_id, rr.c.checked_at).where(rr.c.primary_region == primary_region)
                            .order_by(rr.c.checked_at.desc(), rr.c.id.desc()).limit(1)).first()
        if last is None:
            return None
        rows = conn.execute(sa.select(rr).where(rr.c.primary_region == primary_region, rr.c.run_id == last[0],
                                                rr.c.checked_at == last[1]).order_by(rr.c.id)).mappings().all()
    return ReadinessReport(primary_region, last[0], _now(last[1]), rows[0]["blueprint_version"] if rows else None,
                           [ReadinessCheck(r["check_name"], r["subject"], bool(r["passed"]), r["detail"])
                            for r in rows])


# ─────────────────────────────────────────── health ───────────────────────────────────────────

@dataclass(frozen=True)
class HealthObservation:
    id: int
    primary_region: str
    observed_at: datetime
    healthy: bool
    checks: list[dict[str, Any]]
    verdict: str
    action: str
    detail: str
    run_id: str | None


def record_health_observation(engine: Engine, *, primary_region: str, healthy: bool,
                              checks: Sequence[Mapping[str, Any]], verdict: str, action: str, detail: str = "",
                              run_id: str | None = None, observed_at: datetime | None = None) -> int:
    """One monitor run's observation of a region: raw checks, the N-of-M verdict and what was done."""
    row = {"primary_region": primary_region, "observed_at": _now(observed_at), "run_id": run_id,
           "healthy": bool(healthy), "checks": [dict(c) for c in checks], "verdict": verdict, "action": action,
           "detail": detail}
    with write_transaction(engine) as conn:
        return int(conn.execute(sa.insert(health_observations).values(**row)).inserted_primary_key[0])


def recent_health_observations(engine: Engine, primary_region: str, limit: int) -> list[HealthObservation]:
    """The last ``limit`` observations of a region, newest first."""
    ho = health_observations
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ho).where(ho.c.primary_region == primary_region)
                            .order_by(ho.c.observed_at.desc(), ho.c.id.desc()).limit(limit)).mappings().all()
    return [HealthObservation(r["id"], r["primary_region"], _now(r["observed_at"]), bool(r["healthy"]),
                              r["checks"], r["verdict"], r["action"], r["detail"], r["run_id"]) for r in rows]


# ─────────────────────────────────────────── failover events ───────────────────────────────────────────

@dataclass(frozen=True)
class FailoverEvent:
    id: int
    failover_id: str
    dag_run_id: str | None
    primary_region: str
    shadow_region: str
    mode: str
    trigger: str
    triggered_by: str | None
    blueprint_version: int | None
    blueprint_id: int | None
    steps: list[dict[str, Any]]
    outcome: str
    error: str | None
    detected_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    recovery_seconds: float | None
    plan: dict[str, Any] | None


def _event(row: Any) -> FailoverEvent:
    return FailoverEvent(
        id=row["id"], failover_id=row["failover_id"], dag_run_id=row["dag_run_id"],
        primary_region=row["primary_region"], shadow_region=row["shadow_region"], mode=row["mode"],
        trigger=row["trigger"], triggered_by=row["triggered_by"], blueprint_version=row["blueprint_version"],
        blueprint_id=row["blueprint_id"], steps=list(row["steps"] or []), outcome=row["outcome"],
        error=row["error"], detected_at=_utc(row["detected_at"]), started_at=_now(row["started_at"]),
        finished_at=_utc(row["finished_at"]), recovery_seconds=row["recovery_seconds"], plan=row["plan"])


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def record_failover_event(engine: Engine, *, failover_id: str, primary_region: str, shadow_region: str,
                          mode: str, trigger: str, triggered_by: str | None = None,
                          blueprint_version: int | None = None, blueprint_id: int | None = None,
                          detected_at: datetime | None = None, started_at: datetime | None = None,
                          plan: dict[str, Any] | None = None, dag_run_id: str | None = None) -> FailoverEvent:
    """Create the event row of a failover (outcome ``running``); idempotent by ``failover_id`` — a retried
    task gets the existing row back unchanged (its timeline is never reset)."""
    _check_choice("mode", mode, FAILOVER_MODES)
    _check_choice("trigger", trigger, FAILOVER_TRIGGERS)
    fe = failover_events

    def work(conn: sa.Connection) -> FailoverEvent:
        existing = conn.execute(sa.select(fe).where(fe.c.failover_id == failover_id)).mappings().first()
        if existing is not None:
            return _event(existing)
        stamp = _now(started_at)
        conn.execute(sa.insert(fe).values(
            failover_id=failover_id, dag_run_id=dag_run_id, primary_region=primary_region,
            shadow_region=shadow_region, mode=mode, trigger=trigger, triggered_by=triggered_by,
            blueprint_version=blueprint_version, blueprint_id=blueprint_id, steps=[], outcome="running",
            detected_at=_utc(detected_at), started_at=stamp, plan=plan, updated_at=datetime.now(UTC)))
        return _event(conn.execute(sa.select(fe).where(fe.c.failover_id == failover_id)).mappings().one())

    return run_in_write_transaction(engine, work)


def _locked_event(conn: sa.Connection, failover_id: str) -> Any:
    fe = failover_events
    query = sa.select(fe).where(fe.c.failover_id == failover_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise KeyError(f"no failover event {failover_id!r}")
    return row


def record_failover_step(engine: Engine, failover_id: str, step: str, *, started_at: datetime | None = None,
                         finished_at: datetime | None = None, outcome: str | None = None,
                         detail: Mapping[str, Any] | None = None) -> FailoverEvent:
    """Merge one step's timeline entry ({step, started_at, finished_at, outcome, detail}) into the event.

    Call it at step start (``started_at``) and again at the end (``finished_at`` + ``outcome``); fields not
    given are kept. Entries stay in first-start order."""
    fe = failover_events

    def work(conn: sa.Connection) -> FailoverEvent:
        row = _locked_event(conn, failover_id)
        steps = [dict(s) for s in row["steps"] or []]
        entry = next((s for s in steps if s.get("step") == step), None)
        if entry is None:
            entry = {"step": step, "started_at": None, "finished_at": None, "outcome": None, "detail": {}}
            steps.append(entry)
        if started_at is not None and entry.get("started_at") is None:
            entry["started_at"] = _iso(started_at)
        if finished_at is not None:
            entry["finished_at"] = _iso(finished_at)
        if outcome is not None:
            entry["outcome"] = outcome
        if detail:
            entry["detail"] = {**(entry.get("detail") or {}), **dict(detail)}
        conn.execute(sa.update(fe).where(fe.c.id == row["id"]).values(steps=steps, updated_at=datetime.now(UTC)))
        return _event(conn.execute(sa.select(fe).where(fe.c.id == row["id"])).mappings().one())

    return run_in_write_transaction(engine, work, retry_integrity=False)


def finish_failover_event(engine: Engine, failover_id: str, *, outcome: str, finished_at: datetime | None = None,
                          error: str | None = None, recovery_at: datetime | None = None) -> FailoverEvent:
    """Close the event: outcome, finish time and recovery seconds measured from detection (else from start)
    to ``recovery_at`` (when traffic was redirected; defaults to the finish time)."""
    _check_choice("outcome", outcome, FAILOVER_OUTCOMES)
    fe = failover_events

    def work(conn: sa.Connection) -> FailoverEvent:
        row = _locked_event(conn, failover_id)
        end = _now(finished_at)
        origin = _utc(row["detected_at"]) or _now(row["started_at"])
        recovered = _utc(recovery_at) or end
        seconds = max(0.0, (recovered - origin).total_seconds()) if outcome == "succeeded" else None
        conn.execute(sa.update(fe).where(fe.c.id == row["id"]).values(
            outcome=outcome, finished_at=end, error=error, recovery_seconds=seconds, updated_at=datetime.now(UTC)))
        return _event(conn.execute(sa.select(fe).where(fe.c.id == row["id"])).mappings().one())

    return run_in_write_transaction(engine, work, retry_integrity=False)


def update_failover_plan(engine: Engine, failover_id: str, plan: dict[str, Any]) -> None:
    fe = failover_events
    with write_transaction(engine) as conn:
        conn.execute(sa.update(fe).where(fe.c.failover_id == failover_id)
                     .values(plan=plan, updated_at=datetime.now(UTC)))


def get_failover_event(engine: Engine, failover_id: str) -> FailoverEvent | None:
    fe = failover_events
    with engine.connect() as conn:
        row = conn.execute(sa.select(fe).where(fe.c.failover_id == failover_id)).mappings().first()
    return None if row is None else _event(row)


def list_failover_events(engine: Engine, primary_region: str | None = None, limit: int = 100) -> list[FailoverEvent]:
    """Most recent first."""
    fe = failover_events
    query = sa.select(fe).order_by(fe.c.started_at.desc(), fe.c.id.desc()).limit(limit)
    if primary_region is not None:
        query = query.where(fe.c.primary_region == primary_region)
    with engine.connect() as conn:
        return [_event(r) for r in conn.execute(query).mappings().all()]


# ─────────────────────────────────────────── failover locks ───────────────────────────────────────────

def acquire_failover_lock(engine: Engine, primary_region: str, failover_id: str, *, mode: str | None = None,
                          now: datetime | None = None) -> bool:
    """Take the region's failover lock for ``failover_id``. True when held by it afterwards (re-entrant:
    a retried task of the same failover gets True again); False when another failover holds it."""
    try:
        with write_transaction(engine) as conn:
            holder = conn.execute(sa.select(failover_locks.c.failover_id)
                                  .where(failover_locks.c.primary_region == primary_region)).scalar()
            if holder is not None:
                return bool(holder == failover_id)
            conn.execute(sa.insert(failover_locks).values(primary_region=primary_region, failover_id=failover_id,
                                                          mode=mode, acquired_at=_now(now)))
            return True
    except IntegrityError:  # a concurrent failover inserted first (PostgreSQL; SQLite serialises above)
        return failover_lock_holder(engine, primary_region) == failover_id


def release_failover_lock(engine: Engine, primary_region: str, failover_id: str) -> bool:
    """Release the lock if ``failover_id`` holds it; True when something was released."""
    with write_transaction(engine) as conn:
        result = conn.execute(sa.delete(failover_locks).where(failover_locks.c.primary_region == primary_region,
                                                              failover_locks.c.failover_id == failover_id))
        return bool(result.rowcount)


def failover_lock_holder(engine: Engine, primary_region: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(failover_locks.c.failover_id)
                            .where(failover_locks.c.primary_region == primary_region)).scalar()


# ─────────────────────────────────────────── auto-failover audit ───────────────────────────────────────────

@dataclass(frozen=True)
class AutoFailoverDecision:
    id: int
    primary_region: str
    decided_at: datetime
    decision: str
    reason: str
    auto_failover: bool
    failover_id: str | None
    run_id: str | None
    detail: dict[str, Any]


def record_auto_failover_decision(engine: Engine, *, primary_region: str, decision: str, reason: str,
                                  auto_failover: bool, failover_id: str | None = None, run_id: str | None = None,
                                  detail: Mapping[str, Any] | None = None,
                                  decided_at: datetime | None = None) -> int:
    """Audit what the health monitor decided for a failed region (triggered | alerted | suppressed_*)."""
    with write_transaction(engine) as conn:
        return int(conn.execute(sa.insert(auto_failover_audit).values(
            primary_region=primary_region, decided_at=_now(decided_at), decision=decision, reason=reason,
            auto_failover=bool(auto_failover), failover_id=failover_id, run_id=run_id,
            detail=dict(detail or {}))).inserted_primary_key[0])


def auto_failover_decisions(engine: Engine, primary_region: str, *, decision: str | None = None,
                            limit: int = 50) -> list[AutoFailoverDecision]:
    """Most recent first, optionally only one kind of decision."""
    aa = auto_failover_audit
    query = sa.select(aa).where(aa.c.primary_region == primary_region)
    if decision is not None:
        query = query.where(aa.c.decision == decision)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(aa.c.decided_at.desc(), aa.c.id.desc()).limit(limit)).mappings().all()
    return [AutoFailoverDecision(r["id"], r["primary_region"], _now(r["decided_at"]), r["decision"], r["reason"],
                                 bool(r["auto_failover"]), r["failover_id"], r["run_id"], r["detail"] or {})
            for r in rows]


# ─────────────────────────────────────────── auto-failover switch ───────────────────────────────────────────

SWITCH_ENABLED, SWITCH_DISABLED = "switch_enabled", "switch_disabled"


def last_switch_change(engine: Engine, primary_region: str) -> AutoFailoverDecision | None:
    """The last audited flip of the region's auto-failover switch (None: never audited → the default, off)."""
    aa = auto_failover_audit
    query = (sa.select(aa).where(aa.c.primary_region == primary_region,
                                 aa.c.decision.in_((SWITCH_ENABLED, SWITCH_DISABLED)))
             .order_by(aa.c.decided_at.desc(), aa.c.id.desc()).limit(1))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return None if row is None else AutoFailoverDecision(
        row["id"], row["primary_region"], _now(row["decided_at"]), row["decision"], row["reason"],
        bool(row["auto_failover"]), row["failover_id"], row["run_id"], row["detail"] or {})


def record_switch_state(engine: Engine, *, primary_region: str, enabled: bool, changed_by: str,
                        run_id: str | None = None, detail: Mapping[str, Any] | None = None,
                        observed_at: datetime | None = None) -> int | None:
    """Audit the switch's state as observed now, when it differs from the last audited state (never audited
    counts as off, the switch's default). Returns the new row's id, or None when nothing changed.

    Compare and insert happen in one write transaction, so two observers never audit the same flip twice."""
    aa = auto_failover_audit
    decision = SWITCH_ENABLED if enabled else SWITCH_DISABLED

    def work(conn: sa.Connection) -> int | None:
        if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already serialises writers
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                         {"key": f"shadowing:auto_failover_switch:{primary_region}"})
        last = conn.execute(sa.select(aa.c.decision).where(
            aa.c.primary_region == primary_region, aa.c.decision.in_((SWITCH_ENABLED, SWITCH_DISABLED)))
            .order_by(aa.c.decided_at.desc(), aa.c.id.desc()).limit(1)).scalar()
        if (last or SWITCH_DISABLED) == decision:
            return None
        reason = f"auto-failover turned {'on' if enabled else 'off'} for {primary_region} by {changed_by}"
        return int(conn.execute(sa.insert(aa).values(
            primary_region=primary_region, decided_at=_now(observed_at), decision=decision, reason=reason,
            auto_failover=bool(enabled), failover_id=None, run_id=run_id,
            detail={"changed_by": changed_by, "previous": last, **dict(detail or {})})).inserted_primary_key[0])

    return run_in_write_transaction(engine, work)
