"""Alembic environment: the connection is handed in by shadowing.warehouse.engine.migrate()."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shadowing.warehouse.open_warehouse(url)")

context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
