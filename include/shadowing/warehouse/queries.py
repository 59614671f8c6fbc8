"""The documented history queries in ``include/sql/``: plain SQL, the same text on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shadowing.errors import InputError
from shadowing.warehouse.codec import utc

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_JSON_COLUMNS = {"diff_summary", "payload", "steps", "plan", "checks"}
_TIME_COLUMNS = {"valid_from", "valid_to", "checked_at", "detected_at", "started_at", "finished_at"}


def query_names() -> list[str]:
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def load_query(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise InputError(f"no such query; known: {', '.join(query_names())}", source=str(SQL_DIR), field=name)
    return path.read_text()


def run_query(engine: Engine, name: str, **params: Any) -> list[dict[str, Any]]:
    """Rows as dicts; datetimes bound as UTC DateTime (stored format on SQLite), JSON columns decoded."""
    statement = sa.text(load_query(name))
    binds = []
    for key, value in params.items():
        if isinstance(value, datetime):
            binds.append(sa.bindparam(key, value=utc(value), type_=sa.DateTime(timezone=True)))
    if binds:
        statement = statement.bindparams(*binds)
    with engine.connect() as conn:
        rows = conn.execute(statement, {k: v for k, v in params.items() if not isinstance(v, datetime)})
        return [_decode(dict(r)) for r in rows.mappings()]


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key, value in row.items():
        if key in _JSON_COLUMNS and isinstance(value, str):
            row[key] = json.loads(value)
        elif key in _TIME_COLUMNS and isinstance(value, str):  # SQLite hands back text through text()
            row[key] = utc(datetime.fromisoformat(value))
        elif key in _TIME_COLUMNS and isinstance(value, datetime):
            row[key] = utc(value)
        elif key in {"is_current", "passed"} and value is not None:
            row[key] = bool(value)
    return row
