"""Storing and reading the artefacts the refresh DAGs produce (fingerprints, graphs).

Every artefact row is stored, valid or not, so a failed validation is auditable; readers only ever see the latest
*valid* one, so a bad refresh never replaces a good artefact. Old rows are pruned by
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


def _save(engine: Engine, table: sa.Table, *, region: str, payload: dict[str, Any], valid: bool,
          errors: list[str] | None, run_id: str | None, window_start: datetime | None,
          window_end: datetime | None) -> int:
    row = {
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


def save_fingerprint(engine: Engine, *, region: str, fingerprint: dict[str, Any], valid: bool,
                     errors: list[str] | None = None, run_id: str | None = None,
                     window_start: datetime | None = None, window_end: datetime | None = None) -> int:
    return _save(engine, capacity_fingerprints, region=region, payload=fingerprint, valid=valid, errors=errors,
                 run_id=run_id, window_start=window_start, window_end=window_end)


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
    "ReadinessReport", "StoredArtifact", "UpsertOutcome", "acquire_failover_lock", "auto_failover_decisions",
    "blueprint_as_of", "blueprint_content_hash", "blueprint_history", "blueprint_regions", "blueprint_version",
    "content_hash", "current_blueprint", "failover_lock_holder", "finish_failover_event", "get_artifact",
    "get_failover_event", "latest_readiness", "latest_valid_fingerprint", "latest_valid_graph",
    "list_failover_events", "recent_health_observations", "record_auto_failover_decision",
    "record_failover_event", "record_failover_step", "record_health_observation", "record_readiness",
    "release_failover_lock", "save_fingerprint", "save_graph", "update_failover_plan",
    "upsert_blueprint_version",
]
