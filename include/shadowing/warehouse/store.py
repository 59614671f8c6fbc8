"""Storing and reading the artefacts the refresh DAGs produce (fingerprints, graphs).

Every artefact row is stored, valid or not, so a failed validation is auditable; readers only ever see the latest
*valid* one, so a bad refresh never replaces a good artefact. A valid fingerprint whose window ends before the
region's current one (a zombie worker storing after its retry did, overlapping runs) is stored as superseded (not
valid, the reason in ``errors``), so the latest valid row by id — what every reader, the UI and retention take —
is always the one with the newest window end. Old rows are pruned by
:mod:`shadowing.warehouse.retention`, which never deletes a region's latest (valid) row nor one a blueprint cites.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shadowing.warehouse.codec import content_hash, utc
from shadowing.warehouse.tables import capacity_fingerprints, dependency_graphs
from shadowing.warehouse.transactions import run_in_write_transaction

# pg_advisory_xact_lock(class, key) class of the per-region lock that serialises capacity fingerprint stores.
_FINGERPRINT_LOCK_CLASS = 727275


@dataclass(frozen=True)
class StoredArtifact:
    id: int
    region: str
    payload: dict[str, Any]
    created_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    content_hash: str
    run_id: str | None


_utc = utc


def _row(*, region: str, payload: dict[str, Any], valid: bool, errors: list[str] | None, run_id: str | None,
         window_start: datetime | None, window_end: datetime | None) -> dict[str, Any]:
    return {
        "region": region,
        "created_at": datetime.now(UTC),
        "window_start": _utc(window_start),
        "window_end": _utc(window_end),
        "run_id": run_id,
        "valid": bool(valid),
        "errors": list(errors or []),
        "content_hash": content_hash(payload),
        "payload": payload,
    }


def _save(engine: Engine, table: sa.Table, *, region: str, payload: dict[str, Any], valid: bool,
          errors: list[str] | None, run_id: str | None, window_start: datetime | None,
          window_end: datetime | None) -> int:
    row = _row(region=region, payload=payload, valid=valid, errors=errors, run_id=run_id, window_start=window_start,
               window_end=window_end)
    with engine.begin() as conn:
        result = conn.execute(table.insert().values(**row))
        return int(result.inserted_primary_key[0])


def _latest_valid(engine: Engine, table: sa.Table, region: str) -> StoredArtifact | None:
    query = (sa.select(table).where(table.c.region == region, table.c.valid.is_(True))
             .order_by(table.c.id.desc()).limit(1))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return None if row is None else _artifact(row)


def _artifact(row: Any) -> StoredArtifact:
    return StoredArtifact(id=row["id"], region=row["region"], payload=row["payload"],
                          created_at=_utc(row["created_at"]) or datetime.now(UTC),
                          window_start=_utc(row["window_start"]), window_end=_utc(row["window_end"]),
                          content_hash=row["content_hash"], run_id=row["run_id"])


def get_artifact(engine: Engine, table_name: str, artifact_id: int) -> StoredArtifact | None:
    table = {"capacity_fingerprints": capacity_fingerprints, "dependency_graphs": dependency_graphs}[table_name]
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == artifact_id)).mappings().first()
    return None if row is None else _artifact(row)


@dataclass(frozen=True)
class SavedFingerprint:
    """What :func:`store_fingerprint` did: the row ``id`` it inserted, whether that row is now the region's
    current (latest valid) fingerprint, and the current one's id and window end."""

    id: int
    current: bool
    current_id: int | None
    current_window_end: datetime | None
    superseded: str | None = None  # why a valid row was not made current


def store_fingerprint(engine: Engine, *, region: str, fingerprint: dict[str, Any], valid: bool,
                      errors: list[str] | None = None, run_id: str | None = None,
                      window_start: datetime | None = None, window_end: datetime | None = None
                      ) -> SavedFingerprint:
    """Insert a fingerprint row; a valid one becomes current only if no valid row of the region ends later.

    Serialised per region (PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``), so two
    writers can never both see "nothing later" and the later insert with the older window win by id. A valid
    fingerprint ending before the current one is still inserted, for audit, with ``valid`` false and the reason
    in ``errors``; one ending at the same time (a retry of the same interval) becomes current, as before.
    """
    end = _utc(window_end)
    table = capacity_fingerprints

    def insert(conn: sa.Connection) -> SavedFingerprint:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_FINGERPRINT_LOCK_CLASS, sa.func.hashtext(region))))
        current = conn.execute(sa.select(table.c.id, table.c.window_end)
                               .where(table.c.region == region, table.c.valid.is_(True))
                               .order_by(table.c.id.desc()).limit(1)).first()
        current_end = _utc(current.window_end) if current is not None else None
        superseded = None
        if valid and end is not None and current_end is not None and end < current_end:
            superseded = (f"superseded: window ends {end.isoformat()}, before the current fingerprint {current.id}'s "
                          f"{current_end.isoformat()} (a late store of an older interval, e.g. a zombie worker's "
                          f"after its retry's); kept for audit, not made current")
        row = _row(region=region, payload=fingerprint, valid=valid and superseded is None,
                   errors=[*(errors or []), *([superseded] if superseded else [])], run_id=run_id,
                   window_start=window_start, window_end=window_end)
        fid = int(conn.execute(table.insert().values(**row)).inserted_primary_key[0])
        if row["valid"]:
            return SavedFingerprint(fid, True, fid, end)
        return SavedFingerprint(fid, False, None if current is None else current.id, current_end, superseded)

    # Not retried on IntegrityError: a unique-key clash cannot happen here, and a retry would insert twice.
    return run_in_write_transaction(engine, insert, retry_integrity=False)


def save_fingerprint(engine: Engine, *, region: str, fingerprint: dict[str, Any], valid: bool,
                     errors: list[str] | None = None, run_id: str | None = None,
                     window_start: datetime | None = None, window_end: datetime | None = None) -> int:
    """:func:`store_fingerprint`, returning the inserted row's id."""
    return store_fingerprint(engine, region=region, fingerprint=fingerprint, valid=valid, errors=errors,
                             run_id=run_id, window_start=window_start, window_end=window_end).id


def latest_valid_fingerprint(engine: Engine, region: str) -> StoredArtifact | None:
    return _latest_valid(engine, capacity_fingerprints, region)


def save_graph(engine: Engine, *, region: str, graph: dict[str, Any], valid: bool,
               errors: list[str] | None = None, run_id: str | None = None,
               window_start: datetime | None = None, window_end: datetime | None = None) -> int:
    return _save(engine, dependency_graphs, region=region, payload=graph, valid=valid, errors=errors,
                 run_id=run_id, window_start=window_start, window_end=window_end)


def latest_valid_graph(engine: Engine, region: str) -> StoredArtifact | None:
    return _latest_valid(engine, dependency_graphs, region)


# Blueprint versions, readiness, health, failover events/locks/audit live in their own modules; re-exported
# here so every caller can import the whole store API from one place.
from shadowing.warehouse.blueprints import (  # noqa: E402
    BlueprintVersion,
    UpsertOutcome,
    blueprint_as_of,
    blueprint_content_hash,
    blueprint_history,
    blueprint_regions,
    blueprint_version,
    current_blueprint,
    upsert_blueprint_version,
)
from shadowing.warehouse.operations import (  # noqa: E402
    AutoFailoverDecision,
    FailoverEvent,
    HealthObservation,
    ReadinessCheck,
    ReadinessReport,
    acquire_failover_lock,
    auto_failover_decisions,
    failover_lock_holder,
    finish_failover_event,
    get_failover_event,
    latest_readiness,
    list_failover_events,
    recent_health_observations,
    record_auto_failover_decision,
    record_failover_event,
    record_failover_step,
    record_health_observation,
    record_readiness,
    release_failover_lock,
    update_failover_plan,
)

__all__ = [
    "AutoFailoverDecision", "BlueprintVersion", "FailoverEvent", "HealthObservation", "ReadinessCheck",
    "ReadinessReport", "SavedFingerprint", "StoredArtifact", "UpsertOutcome", "acquire_failover_lock", "auto_failover_decisions",
    "blueprint_as_of", "blueprint_content_hash", "blueprint_history", "blueprint_regions", "blueprint_version",
    "content_hash", "current_blueprint", "failover_lock_holder", "finish_failover_event", "get_artifact",
    "get_failover_event", "latest_readiness", "latest_valid_fingerprint", "latest_valid_graph",
    "list_failover_events", "recent_health_observations", "record_auto_failover_decision",
    "record_failover_event", "record_failover_step", "record_health_observation", "record_readiness",
    "release_failover_lock", "save_fingerprint", "save_graph", "store_fingerprint", "update_failover_plan",
    "upsert_blueprint_version",
]
