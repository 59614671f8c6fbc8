"""A self-contained, offline HTML page of the latest artefact validations, read from the warehouse.

Every refresh stores its artefact with ``valid`` and the validation ``errors`` (the Great Expectations
results of the capacity and dependency checks), valid or not, so this page shows what was validated, what
failed and which artefact stayed current. It is the Data Docs fallback when no GX site was built.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shadowing.warehouse.tables import capacity_fingerprints, dependency_graphs

RUNS_PER_ARTIFACT = 10

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2933;background:#f7f9fb}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:8px}
th,td{border:1px solid #d9e2ec;padding:5px 8px;text-align:left;vertical-align:top}th{background:#eef2f6}
.ok{color:#0b7a3e;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#627d98}
ul{margin:0;padding-left:18px}code{font-size:12px}
"""


def _fmt(value: datetime | None) -> str:
    if value is None:
        return "—"
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def render_validation_docs(engine: Engine, region_pairs: Mapping[str, str] | None = None,
                           now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    esc = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Shadowing validations</title>"
             f"<style>{_CSS}</style></head><body><h1>Validation results of the refresh artefacts</h1>"
             f"<p class='muted'>Generated {esc(_fmt(now))} from the warehouse. A failed validation never replaces "
             f"the last valid artefact: the row marked <em>current</em> is what blueprints are built from.</p>"]
    with engine.connect() as conn:
        regions = sorted(set(region_pairs or {}) | set(conn.execute(
            sa.union(sa.select(capacity_fingerprints.c.region), sa.select(dependency_graphs.c.region))).scalars()))
        if not regions:
            parts.append("<p>No artefact has been stored yet.</p>")
        for region in regions:
            parts.append(f"<h2 id='{esc(region)}'>{esc(region)}</h2>")
            for label, table in (("Capacity fingerprints", capacity_fingerprints),
                                 ("Dependency graphs", dependency_graphs)):
                rows = conn.execute(sa.select(table.c.id, table.c.created_at, table.c.valid, table.c.errors,
                                              table.c.run_id, table.c.content_hash)
                                    .where(table.c.region == region).order_by(table.c.id.desc())
                                    .limit(RUNS_PER_ARTIFACT)).mappings().all()
                current = conn.execute(sa.select(sa.func.max(table.c.id)).where(
                    table.c.region == region, table.c.valid.is_(True))).scalar()
                parts.append(f"<h3>{esc(label)}</h3>")
                if not rows:
                    parts.append("<p class='muted'>none stored</p>")
                    continue
                parts.append("<table><tr><th>id</th><th>stored</th><th>result</th><th>run</th>"
                             "<th>failed expectations</th></tr>")
                for row in rows:
                    errors = [str(e) for e in (row["errors"] or [])]
                    result = ("<span class='ok'>passed</span>" if row["valid"] else "<span class='bad'>failed</span>")
                    if row["id"] == current:
                        result += " <span class='muted'>(current)</span>"
                    err_html = ("<ul>" + "".join(f"<li><code>{esc(e)}</code></li>" for e in errors[:30]) + "</ul>"
                                if errors else "<span class='muted'>—</span>")
                    parts.append(f"<tr><td>{row['id']}</td><td>{esc(_fmt(row['created_at']))}</td><td>{result}</td>"
                                 f"<td><code>{esc(str(row['run_id'] or '—'))}</code></td><td>{err_html}</td></tr>")
                parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
