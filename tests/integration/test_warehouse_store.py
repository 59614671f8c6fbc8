from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from shadowing.warehouse import open_warehouse
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
