"""The warehouse: SQLAlchemy 2 tables managed by Alembic migrations, SQLite by default, PostgreSQL in production.

``open_warehouse(url)`` returns an engine whose schema is at the latest migration (applied idempotently).
"""

from __future__ import annotations

from shadowing.warehouse.engine import open_warehouse

__all__ = ["open_warehouse"]
