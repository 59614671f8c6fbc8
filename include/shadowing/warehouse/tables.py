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
