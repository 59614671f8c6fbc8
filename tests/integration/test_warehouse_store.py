from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from shadowing.warehouse import open_warehouse
from shadowing.warehouse.codec import utc as codec_utc
from shadowing.warehouse.store import (
    latest_valid_fingerprint,
    latest_valid_graph,
    save_fingerprint,
    save_graph,
)


def test_migrations_are_idempotent_and_create_tables(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    from shadowing.warehouse.engine import migrate

    migrate(engine)  # second run is a no-op
    names = set(sa.inspect(engine).get_table_names())
    assert {"capacity_fingerprints", "dependency_graphs", "alembic_version"} <= names


def test_invalid_artifact_never_replaces_the_last_valid_one(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    good = save_fingerprint(engine, region="us-east-1", fingerprint={"services": {"a": 1}}, valid=True,
                            window_start=start, window_end=end, run_id="r1")
    save_fingerprint(engine, region="us-east-1", fingerprint={"services": {"a": -1}}, valid=False,
                     errors=["a/cpu: p50 > p90"], run_id="r2")
    latest = latest_valid_fingerprint(engine, "us-east-1")
    assert latest is not None and latest.id == good
    assert latest.payload == {"services": {"a": 1}}
    assert latest.window_start == start and latest.run_id == "r1"
    assert latest_valid_fingerprint(engine, "eu-west-1") is None


def test_graphs_are_per_region(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    save_graph(engine, region="us-east-1", graph={"nodes": [1]}, valid=True)
    second = save_graph(engine, region="us-east-1", graph={"nodes": [1, 2]}, valid=True)
    save_graph(engine, region="eu-west-1", graph={"nodes": []}, valid=True)
    latest = latest_valid_graph(engine, "us-east-1")
    assert latest is not None and latest.id == second and latest.payload == {"nodes": [1, 2]}


def test_concurrent_first_migrations_of_one_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Several processes opening a new warehouse at once (DAG tasks, the UI) must not race on the schema."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = "import sys; from shadowing.warehouse import open_warehouse; open_warehouse(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    engine = open_warehouse(url)
    assert {"capacity_fingerprints", "blueprint_versions"} <= set(sa.inspect(engine).get_table_names())


def _rows(engine: sa.Engine, region: str) -> list[Any]:
    from shadowing.warehouse.tables import capacity_fingerprints as t

    with engine.connect() as conn:
        return list(conn.execute(sa.select(t.c.id, t.c.valid, t.c.window_end, t.c.errors, t.c.run_id)
                                 .where(t.c.region == region).order_by(t.c.id)))


def test_a_zombie_storing_an_older_window_after_its_retry_never_becomes_latest_valid(warehouse_url: str) -> None:
    """Regression: the retry of a run stored [12:00, 12:10); its zombie first try, which had read less
    ([12:00, 12:05)), stored after it and, being the newer row, became "latest valid" (the next fold read from
    12:05, every reader saw the older window). The late row is kept for audit, as superseded; a store of the
    same window end (a retry of the same interval) still becomes current."""
    engine = open_warehouse(warehouse_url)
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    t5, t10 = t0 + timedelta(minutes=5), t0 + timedelta(minutes=10)
    retry = save_fingerprint(engine, region="us-east-1", fingerprint={"window": "12:00-12:10"}, valid=True,
                             window_start=t0, window_end=t10, run_id="r1")
    zombie = save_fingerprint(engine, region="us-east-1", fingerprint={"window": "12:00-12:05"}, valid=True,
                              window_start=t0, window_end=t5, run_id="r1")
    latest = latest_valid_fingerprint(engine, "us-east-1")
    assert latest is not None and latest.id == retry and latest.window_end == t10
    rows = {r.id: r for r in _rows(engine, "us-east-1")}
    assert set(rows) == {retry, zombie}  # nothing lost
    assert not rows[zombie].valid and codec_utc(rows[zombie].window_end) == t5
    assert any(e.startswith("superseded: window ends 2026-01-01T12:05:00+00:00, before the current fingerprint "
                            f"{retry}'s 2026-01-01T12:10:00+00:00") for e in rows[zombie].errors), rows[zombie].errors
    # the same interval stored again (a clean retry) and a later one become current; other regions are apart
    again = save_fingerprint(engine, region="us-east-1", fingerprint={"window": "12:00-12:10 again"}, valid=True,
                             window_start=t0, window_end=t10, run_id="r2")
    assert latest_valid_fingerprint(engine, "us-east-1").id == again  # type: ignore[union-attr]
    other = save_fingerprint(engine, region="eu-west-1", fingerprint={}, valid=True, window_start=t0, window_end=t5)
    assert latest_valid_fingerprint(engine, "eu-west-1").id == other  # type: ignore[union-attr]
    # an invalid row is stored as it was; the outcome says what is current
    from shadowing.warehouse.store import store_fingerprint

    bad = store_fingerprint(engine, region="us-east-1", fingerprint={}, valid=False, errors=["x"], window_end=t10)
    assert (bad.current, bad.current_id, bad.current_window_end, bad.superseded) == (False, again, t10, None)
    late = store_fingerprint(engine, region="us-east-1", fingerprint={}, valid=True, window_end=t5)
    assert (late.current, late.current_id) == (False, again) and late.superseded
    newer = store_fingerprint(engine, region="us-east-1", fingerprint={}, valid=True, window_end=t10 + timedelta(1))
    assert (newer.current, newer.current_id) == (True, newer.id)


def test_concurrent_stores_keep_the_newest_window_latest(warehouse_url: str) -> None:
    """Workers storing overlapping windows at the same moment (threads released together, ends shuffled): the
    valid rows, in id order, never go back in window end, so the latest valid row is the newest window."""
    import random
    import threading

    engine = open_warehouse(warehouse_url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ends = [t0 + timedelta(minutes=m) for m in range(24)]
    random.Random(3).shuffle(ends)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker(mine: list[datetime]) -> None:
        try:
            start.wait()
            for end in mine:
                save_fingerprint(engine, region="us-east-1", fingerprint={"end": end.isoformat()}, valid=True,
                                 window_start=t0, window_end=end)
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(ends[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    rows = _rows(engine, "us-east-1")
    assert len(rows) == len(ends)
    valid_ends = [codec_utc(r.window_end) for r in rows if r.valid]
    assert valid_ends == sorted(valid_ends), valid_ends
    latest = latest_valid_fingerprint(engine, "us-east-1")
    assert latest is not None and latest.window_end == max(ends)
