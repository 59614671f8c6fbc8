"""Table objects for queries (the schema itself is owned by the Alembic migrations)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _artifact(name: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True)),
        sa.Column("window_end", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.String(250)),
        sa.Column("valid", sa.Boolean, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )


capacity_fingerprints = _artifact("capacity_fingerprints")
dependency_graphs = _artifact("dependency_graphs")

_TS = sa.DateTime(timezone=True)

blueprint_versions = sa.Table(
    "blueprint_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("primary_region", sa.String(64), nullable=False),
    sa.Column("shadow_region", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("valid_from", _TS, nullable=False),
    sa.Column("valid_to", _TS),
    sa.Column("is_current", sa.Boolean, nullable=False),
    sa.Column("fingerprint_id", sa.Integer),
    sa.Column("graph_id", sa.Integer),
    sa.Column("run_id", sa.String(250)),
    sa.Column("primary_inventory_hash", sa.String(64)),
    sa.Column("diff_summary", sa.JSON, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
)

readiness_results = sa.Table(
    "readiness_results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("primary_region", sa.String(64), nullable=False),
    sa.Column("shadow_region", sa.String(64)),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("checked_at", _TS, nullable=False),
    sa.Column("blueprint_version", sa.Integer),
    sa.Column("check_name", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(250), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

health_observations = sa.Table(
    "health_observations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("primary_region", sa.String(64), nullable=False),
    sa.Column("observed_at", _TS, nullable=False),
    sa.Column("run_id", sa.String(250)),
    sa.Column("healthy", sa.Boolean, nullable=False),
    sa.Column("checks", sa.JSON, nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

failover_events = sa.Table(
    "failover_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("failover_id", sa.String(250), nullable=False, unique=True),
    sa.Column("dag_run_id", sa.String(250)),
    sa.Column("primary_region", sa.String(64), nullable=False),
    sa.Column("shadow_region", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("triggered_by", sa.String(250)),
    sa.Column("blueprint_version", sa.Integer),
    sa.Column("blueprint_id", sa.Integer),
    sa.Column("steps", sa.JSON, nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("detected_at", _TS),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("finished_at", _TS),
    sa.Column("recovery_seconds", sa.Float),
    sa.Column("plan", sa.JSON),
    sa.Column("updated_at", _TS, nullable=False),
)

failover_locks = sa.Table(
    "failover_locks", metadata,
    sa.Column("primary_region", sa.String(64), primary_key=True),
    sa.Column("failover_id", sa.String(250), nullable=False),
    sa.Column("mode", sa.String(16)),
    sa.Column("acquired_at", _TS, nullable=False),
)

auto_failover_audit = sa.Table(
    "auto_failover_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("primary_region", sa.String(64), nullable=False),
    sa.Column("decided_at", _TS, nullable=False),
    sa.Column("decision", sa.String(40), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("auto_failover", sa.Boolean, nullable=False),
    sa.Column("failover_id", sa.String(250)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("detail", sa.JSON, nullable=False),
)
