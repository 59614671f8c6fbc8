"""Retention of the artefact tables (``capacity_fingerprints``, ``dependency_graphs``).

The capacity profiler stores a fingerprint every 5 minutes per region and every row is kept for audit; a
500-instance region's fingerprint is ~3.7 MB, so an unpruned table grows by ~1 GB a day per region. Pruning
deletes old rows but never what anything still stands on. Kept, whatever their age:

* each region's latest row and latest *valid* row (by id, as the store's readers order them): what the DAGs
  fold into and build blueprints from;
* every row a blueprint version names as its source (``fingerprint_id`` / ``graph_id``), so blueprint history
  stays auditable down to the artefacts it was built from;
* with ``keep_daily``, each region's last valid row of every UTC day: a long history at one row a day.

Every row created within ``keep_days`` is kept; the rest is deleted, in batches, each batch its own
transaction, so a crash leaves a consistent table and a re-run finishes the job (pruning is idempotent).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shadowing.errors import InputError
from shadowing.warehouse.codec import utc
from shadowing.warehouse.tables import blueprint_versions, capacity_fingerprints, dependency_graphs

ARTIFACT_TABLES: dict[str, tuple[sa.Table, sa.Column[Any]]] = {
    "capacity_fingerprints": (capacity_fingerprints, blueprint_versions.c.fingerprint_id),
    "dependency_graphs": (dependency_graphs, blueprint_versions.c.graph_id),
}


@dataclass(frozen=True)
class RetentionPolicy:
    keep_days: float = 7.0  # every row younger than this is kept
    keep_daily: bool = True  # older rows: keep each region's last valid row of every UTC day

    def __post_init__(self) -> None:
        if not (isinstance(self.keep_days, int | float) and math.isfinite(self.keep_days) and self.keep_days > 0):
            raise InputError(f"must be a positive number of days, got {self.keep_days!r}", field="keep_days")


@dataclass(frozen=True)
class PruneResult:
    table: str
    older: int  # rows created before the cut-off
    deleted: int  # deleted (or, in a dry run, that would be)
    kept_latest: int  # old rows kept as a region's latest or latest valid row
    kept_referenced: int  # old rows kept because a blueprint version names them
    kept_daily: int  # old rows kept as a region's last valid row of a day
    cutoff: str
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune_artifacts(engine: Engine, policy: RetentionPolicy, *, now: datetime | None = None,
                    tables: tuple[str, ...] = tuple(ARTIFACT_TABLES), dry_run: bool = False,
                    batch_size: int = 500) -> list[PruneResult]:
    """Delete the artefact rows ``policy`` does not keep, table by table (see the module docstring)."""
    unknown = [t for t in tables if t not in ARTIFACT_TABLES]
    if unknown:
        raise InputError(f"unknown artefact table(s) {', '.join(unknown)}; known: {', '.join(ARTIFACT_TABLES)}",
                         field="tables")
    now = utc(now) or datetime.now(UTC)
    cutoff = now - timedelta(days=policy.keep_days)
    return [_prune_table(engine, name, policy, cutoff, dry_run=dry_run, batch_size=batch_size) for name in tables]


def _prune_table(engine: Engine, name: str, policy: RetentionPolicy, cutoff: datetime, *, dry_run: bool,
                 batch_size: int) -> PruneResult:
    table, reference = ARTIFACT_TABLES[name]
    with engine.connect() as conn:
        # light columns only: the payloads are what is being pruned, never loaded
        old = conn.execute(sa.select(table.c.id, table.c.region, table.c.created_at, table.c.valid)
                           .where(table.c.created_at < cutoff)).all()
        if not old:
            return PruneResult(name, 0, 0, 0, 0, 0, cutoff.isoformat(), dry_run)
        latest = set(conn.execute(sa.select(sa.func.max(table.c.id)).group_by(table.c.region)).scalars())
        latest |= set(conn.execute(sa.select(sa.func.max(table.c.id)).where(table.c.valid.is_(True))
                                   .group_by(table.c.region)).scalars())
        referenced = set(conn.execute(sa.select(reference).where(reference.is_not(None)).distinct()).scalars())
    daily: dict[tuple[str, Any], int] = {}
    if policy.keep_daily:
        for row in old:
            if row.valid:
                day = (row.region, (utc(row.created_at) or cutoff).date())
                daily[day] = max(daily.get(day, row.id), row.id)
    kept_daily_ids = set(daily.values())
    kept_latest = kept_referenced = kept_daily = 0
    doomed: list[int] = []
    for row in old:
        if row.id in latest:
            kept_latest += 1
        elif row.id in referenced:
            kept_referenced += 1
        elif row.id in kept_daily_ids:
            kept_daily += 1
        else:
            doomed.append(row.id)
    if not dry_run:
        doomed.sort()
        for start in range(0, len(doomed), batch_size):
            with engine.begin() as conn:
                conn.execute(table.delete().where(table.c.id.in_(doomed[start:start + batch_size])))
    return PruneResult(name, len(old), len(doomed), kept_latest, kept_referenced, kept_daily, cutoff.isoformat(),
                       dry_run)
