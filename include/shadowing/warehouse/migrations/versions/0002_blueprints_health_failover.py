"""Blueprint versions (SCD2), readiness results, health observations, failover events, locks and audit.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "blueprint_versions",
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
        sa.UniqueConstraint("primary_region", "version", name="uq_blueprint_versions_region_version"),
    )
    # At most one current version per primary region, enforced by the database on both dialects.
    op.create_index("uq_blueprint_versions_one_current", "blueprint_versions", ["primary_region"], unique=True,
                    sqlite_where=sa.text("is_current = 1"), postgresql_where=sa.text("is_current"))
    op.create_index("ix_blueprint_versions_region_valid_from", "blueprint_versions",
                    ["primary_region", "valid_from"])

    op.create_table(
        "readiness_results",
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
    op.create_index("ix_readiness_results_region_checked", "readiness_results", ["primary_region", "checked_at"])
    op.create_index("ix_readiness_results_run", "readiness_results", ["run_id"])

    op.create_table(
        "health_observations",
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
    op.create_index("ix_health_observations_region_observed", "health_observations",
                    ["primary_region", "observed_at"])

    op.create_table(
        "failover_events",
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
        sa.CheckConstraint("mode IN ('dry_run', 'drill', 'live')", name="ck_failover_events_mode"),
        sa.CheckConstraint("\"trigger\" IN ('manual', 'sensor')", name="ck_failover_events_trigger"),
    )
    op.create_index("ix_failover_events_region_started", "failover_events", ["primary_region", "started_at"])

    op.create_table(
        "failover_locks",
        sa.Column("primary_region", sa.String(64), primary_key=True),
        sa.Column("failover_id", sa.String(250), nullable=False),
        sa.Column("mode", sa.String(16)),
        sa.Column("acquired_at", _TS, nullable=False),
    )

    op.create_table(
        "auto_failover_audit",
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
    op.create_index("ix_auto_failover_audit_region_decided", "auto_failover_audit", ["primary_region", "decided_at"])


def downgrade() -> None:
    for name in ("auto_failover_audit", "failover_locks", "failover_events", "health_observations",
                 "readiness_results", "blueprint_versions"):
        op.drop_table(name)
