"""Artefact retention on SQLite and PostgreSQL: what is deleted, what is always kept, dry runs, the CLI, the DAG."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from shadowing.errors import InputError
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.retention import RetentionPolicy, prune_artifacts
from shadowing.warehouse.store import latest_valid_fingerprint, latest_valid_graph
from shadowing.warehouse.tables import blueprint_versions, capacity_fingerprints, dependency_graphs

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def _row(engine: sa.Engine, table: sa.Table, region: str, age: timedelta, *, valid: bool = True) -> int:
    with engine.begin() as conn:
        created = NOW - age
        return int(conn.execute(table.insert().values(
            region=region, created_at=created, window_start=created - timedelta(minutes=5), window_end=created,
            run_id=f"r{age}", valid=valid, errors=[] if valid else ["bad"], content_hash="h" * 64,
            payload={"region": region, "age_hours": age.total_seconds() / 3600})).inserted_primary_key[0])


def _blueprint_citing(engine: sa.Engine, *, fingerprint_id: int | None, graph_id: int | None) -> None:
    with engine.begin() as conn:
        conn.execute(blueprint_versions.insert().values(
            primary_region="us-east-1", shadow_region="us-west-2", version=1, content_hash="b" * 64,
            payload={}, valid_from=NOW - timedelta(days=30), valid_to=None, is_current=True,
            fingerprint_id=fingerprint_id, graph_id=graph_id, run_id="bp", primary_inventory_hash=None,
            diff_summary={}, created_at=NOW - timedelta(days=30)))


def _ids(engine: sa.Engine, table: sa.Table) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(table.c.id)).scalars())


def _world(engine: sa.Engine) -> dict[str, int]:
    """Two regions' fingerprints over three weeks, a few graphs, one blueprint citing an old fingerprint."""
    h, d = timedelta(hours=1), timedelta(days=1)
    ids = {
        # us-east-1, day NOW-20 (three runs; the last of the day is invalid)
        "e20a": _row(engine, capacity_fingerprints, "us-east-1", 20 * d + 3 * h),
        "e20b": _row(engine, capacity_fingerprints, "us-east-1", 20 * d + 2 * h),
        "e20bad": _row(engine, capacity_fingerprints, "us-east-1", 20 * d + 1 * h, valid=False),
        # day NOW-10: two runs, the earlier one cited by a blueprint
        "e10cited": _row(engine, capacity_fingerprints, "us-east-1", 10 * d + 5 * h),
        "e10b": _row(engine, capacity_fingerprints, "us-east-1", 10 * d + 4 * h),
        # young: kept by a 7-day window
        "e3": _row(engine, capacity_fingerprints, "us-east-1", 3 * d),
        "e1": _row(engine, capacity_fingerprints, "us-east-1", 1 * d),
        "e0bad": _row(engine, capacity_fingerprints, "us-east-1", h, valid=False),
        # eu-west-1 stopped reporting three weeks ago: its latest rows are all old, the very last invalid
        "w21": _row(engine, capacity_fingerprints, "eu-west-1", 21 * d + 2 * h),
        "w21latest_valid": _row(engine, capacity_fingerprints, "eu-west-1", 21 * d + h),
        "w21latest": _row(engine, capacity_fingerprints, "eu-west-1", 21 * d, valid=False),
        # graphs: one old, one cited, one young
        "g30": _row(engine, dependency_graphs, "us-east-1", 30 * d + h),
        "g30cited": _row(engine, dependency_graphs, "us-east-1", 30 * d),
        "g2": _row(engine, dependency_graphs, "us-east-1", 2 * d),
    }
    _blueprint_citing(engine, fingerprint_id=ids["e10cited"], graph_id=ids["g30cited"])
    return ids


def test_prune_keeps_the_young_the_latest_the_cited_and_one_a_day(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    ids = _world(engine)
    before = latest_valid_fingerprint(engine, "eu-west-1")

    dry = prune_artifacts(engine, RetentionPolicy(keep_days=7), now=NOW, dry_run=True)
    assert _ids(engine, capacity_fingerprints) | _ids(engine, dependency_graphs) == set(ids.values())
    results = prune_artifacts(engine, RetentionPolicy(keep_days=7), now=NOW)
    assert [r.as_dict() | {"dry_run": True} for r in results] == [r.as_dict() for r in dry]  # same counts

    fp, graphs = results
    assert (fp.table, fp.older, fp.deleted) == ("capacity_fingerprints", 8, 3)
    assert (fp.kept_latest, fp.kept_referenced, fp.kept_daily) == (2, 1, 2)
    assert _ids(engine, capacity_fingerprints) == {ids[k] for k in (
        "e20b",  # last valid row of its day (the invalid one after it goes)
        "e10cited", "e10b",  # cited by a blueprint; last valid of its day
        "e3", "e1", "e0bad",  # younger than 7 days
        "w21latest_valid", "w21latest")}  # eu-west-1's latest valid and latest rows, however old
    # the cited graph is also its day's last valid one: the day is represented, the other graph of it goes
    assert (graphs.older, graphs.deleted, graphs.kept_referenced, graphs.kept_daily) == (2, 1, 1, 0)
    # the whole cited row survives, payload and all; the region that went quiet keeps its current artefact
    after = latest_valid_fingerprint(engine, "eu-west-1")
    assert after is not None and before is not None and after.id == before.id == ids["w21latest_valid"]
    assert after.payload == before.payload
    assert latest_valid_graph(engine, "us-east-1") is not None

    again = prune_artifacts(engine, RetentionPolicy(keep_days=7), now=NOW)  # idempotent
    assert [r.deleted for r in again] == [0, 0]


def test_prune_without_daily_history_and_in_small_batches(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    ids = _world(engine)
    fp, graphs = prune_artifacts(engine, RetentionPolicy(keep_days=7, keep_daily=False), now=NOW, batch_size=2)
    assert (fp.deleted, fp.kept_daily, graphs.deleted, graphs.kept_daily) == (5, 0, 1, 0)
    assert _ids(engine, capacity_fingerprints) == {ids[k] for k in (
        "e10cited", "e3", "e1", "e0bad", "w21latest_valid", "w21latest")}
    assert _ids(engine, dependency_graphs) == {ids["g30cited"], ids["g2"]}
    # a shorter window reaches younger rows too, never a region's latest ones nor a cited one
    (fp,) = prune_artifacts(engine, RetentionPolicy(keep_days=0.01, keep_daily=False), now=NOW,
                            tables=("capacity_fingerprints",))
    assert fp.deleted == 1
    assert _ids(engine, capacity_fingerprints) == {ids[k] for k in (
        "e10cited", "e1", "e0bad", "w21latest_valid", "w21latest")}


def test_prune_refuses_bad_policies_naming_the_field() -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="keep_days"):
            RetentionPolicy(keep_days=bad)
    with pytest.raises(InputError, match="tables.*blueprints"):
        prune_artifacts(sa.create_engine("sqlite://"), RetentionPolicy(), tables=("blueprints",))


def test_cli_prunes_and_reports_json(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from shadowing.cli import main

    engine = open_warehouse(sqlite_url)
    old = _row(engine, capacity_fingerprints, "us-east-1", timedelta(days=400))
    _row(engine, capacity_fingerprints, "us-east-1", timedelta(days=400) - timedelta(minutes=5))
    assert main(["warehouse", "prune", "--warehouse-url", sqlite_url, "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the day's last valid row is also the region's latest: only the other one is deletable
    assert [(r["table"], r["older"], r["deleted"], r["kept_latest"], r["dry_run"]) for r in report] == [
        ("capacity_fingerprints", 2, 1, 1, True), ("dependency_graphs", 0, 0, 0, True)]
    assert _ids(engine, capacity_fingerprints) == {old, old + 1}  # a dry run deletes nothing
    assert main(["warehouse", "prune", "--warehouse-url", sqlite_url, "--no-daily",
                 "--table", "capacity_fingerprints"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["table"], r["deleted"]) for r in report] == [("capacity_fingerprints", 1)]
    assert _ids(engine, capacity_fingerprints) == {old + 1}  # the latest stays
    assert main(["warehouse", "prune", "--warehouse-url", sqlite_url, "--keep-days", "-3"]) == 2
    assert "keep_days" in capsys.readouterr().err


@pytest.mark.slow
def test_dag_prunes_the_warehouse(warehouse_conn_env: str, airflow_db: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    engine = open_warehouse(warehouse_conn_env)
    now = datetime.now(UTC)
    old_day = (now - timedelta(days=9)).replace(hour=10, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:  # three rows of one day nine days ago, then one young row
        for label, created in (("old 10:00", old_day), ("old 10:05", old_day + timedelta(minutes=5)),
                               ("old 10:10", old_day + timedelta(minutes=10)),
                               ("young", now - timedelta(minutes=5))):
            conn.execute(capacity_fingerprints.insert().values(
                region="us-east-1", created_at=created, valid=True, errors=[], content_hash="h" * 64,
                payload={"label": label}))
    bag = DagBag(dag_folder=str(ROOT / "dags" / "warehouse_retention.py"))
    assert not bag.import_errors, bag.import_errors
    run = bag.get_dag("warehouse_retention").test(run_conf={"keep_days": 7.0})
    assert run.state == "success", run.state
    with engine.connect() as conn:
        left = sorted(p["label"] for p in conn.execute(sa.select(capacity_fingerprints.c.payload)).scalars())
    assert left == ["old 10:10", "young"]  # the old day's last valid row, the young row
