"""Storing and reading the artefacts the refresh DAGs produce (fingerprints, graphs).

Every artefact row is kept, valid or not, so a failed validation is auditable; readers only ever see the latest
*valid* one, so a bad refresh never replaces a good artefact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

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


def content_hash(payload: Any) -> str:
    """Stable hash of a JSON-able payload (key order independent)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
