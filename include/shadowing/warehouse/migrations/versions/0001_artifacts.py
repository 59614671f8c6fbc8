"""Capacity fingerprints and dependency graphs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _artifact_table(name: str) -> None:
    op.create_table(
        name,
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
    op.create_index(f"ix_{name}_region_valid_id", name, ["region", "valid", "id"])


def upgrade() -> None:
    _artifact_table("capacity_fingerprints")
    _artifact_table("dependency_graphs")


def downgrade() -> None:
    op.drop_table("dependency_graphs")
    op.drop_table("capacity_fingerprints")
