"""Credentials live only in Airflow connections (or a secrets backend): never in code, logs, XCom, warehouse
rows, rendered templates or the UI's JSON.

The end-to-end test runs the demo flow with recognisable fake credentials (the AWS pair conftest sets, and a
recognisable warehouse password in the warehouse connection): the world seeded, the four refresh DAGs and a
dry-run failover through dag.test(); then greps every place an operator or another tenant could read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
AWS_KEY_ID = "AKIASHADOWINGTESTKEY"
AWS_SECRET = "shadowing-test-secret-do-not-leak"
WAREHOUSE_PASSWORD = "shadowing-warehouse-pw-do-not-leak"
SECRETS = (AWS_KEY_ID, AWS_SECRET, WAREHOUSE_PASSWORD)
PRIMARY, SHADOW = "us-east-1", "us-west-2"

# Recognisable fakes that may appear in the repository (tests and the emulator-only demo defaults).
ALLOWED_KEY_IDS = {"AKIASHADOWINGTESTKEY", "AKIAIOSFODNN7EXAMPLE"}
AWS_KEY_SHAPE = re.compile(rb"(?<![A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE" + rb" KEY-----")


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


# ─────────────────────────────────────────── repository scan ───────────────────────────────────────────

def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_no_aws_keys_or_private_keys_are_committed() -> None:
    found = []
    for path in _tracked_files():
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        data = path.read_bytes()
        for match in AWS_KEY_SHAPE.finditer(data):
            if match.group().decode() not in ALLOWED_KEY_IDS:
                found.append(f"{path.relative_to(ROOT)}: AWS access key id {match.group().decode()}")
        if PRIVATE_KEY.search(data):
            found.append(f"{path.relative_to(ROOT)}: private key block")
    assert not found, "credentials committed:\n" + "\n".join(found)


def test_the_repository_scan_recognises_what_it_looks_for() -> None:
    # assembled at run time so that this file does not itself hold what the scan looks for
    assert AWS_KEY_SHAPE.search(b"key=" + b"AKIA" + b"ABCDEFGHIJKLMNOP" + b";")
    assert not AWS_KEY_SHAPE.search(b"AKIASHORT")
    assert PRIVATE_KEY.search(b"-----BEGIN RSA " + b"PRIVATE KEY-----\nMII")


# ─────────────────────────────────────────── end-to-end flow ───────────────────────────────────────────

@pytest.fixture
def warehouse_with_password(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The warehouse connection carries a recognisable password (in the URL when PostgreSQL is available —
    trust auth accepts it — else in the connection's password field next to the SQLite URL)."""
    url = sqlite_url
    pg = os.environ.get("SHADOWING_TEST_POSTGRES_URL")
    if pg:
        name = f"t_secrets_{os.getpid()}"
        admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(pg).set(database=name, password=WAREHOUSE_PASSWORD).render_as_string(
            hide_password=False)
    monkeypatch.setenv("AIRFLOW_CONN_SHADOWING_WAREHOUSE", json.dumps({
        "conn_type": "generic", "login": "shadowing", "password": WAREHOUSE_PASSWORD,
        "extra": {"sqlalchemy_url": url}}))
    yield url
    if pg:
        with admin.connect() as conn:
            conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _dag(name: str):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{name}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(name)


def _table_texts(engine: sa.Engine, *, skip: set[str] = frozenset()) -> Iterator[tuple[str, str]]:  # type: ignore[assignment]
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            if table.name in skip:
                continue
            for row in conn.execute(sa.select(table)):
                yield table.name, " ".join(
                    v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v) for v in row)


@pytest.mark.slow
def test_credentials_never_leave_the_connections(aws_conn_env: str, warehouse_with_password: str, airflow_db: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from shadowing.ui.web import create_app
    from shadowing.warehouse import open_warehouse
    from shadowing.world.seeding import seed_world
    from shadowing.world.state import WorldClients

    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{PRIMARY}={SHADOW}")
    caplog.set_level("INFO")  # what a deployment logs (botocore DEBUG prints signed request headers)
    seed_world(WorldClients.connect(aws_conn_env), seed=0, history_days=0.02, secondary_history_days=0.01,
               flow_minutes=2)
    now = datetime.now(UTC).replace(microsecond=0)
    states = {}
    # a short history: profile it at the world's 5-minute resolution (params the DAG does not declare are dropped)
    for name, conf in (("capacity_profiler", {"bootstrap_hours": 1.0, "bootstrap_period_seconds": 300}),
                       ("dependency_mapper", {}),
                       ("shadow_blueprints", {}), ("primary_health_monitor", {}),
                       ("regional_failover", {"primary_region": PRIMARY, "mode": "dry_run",
                                              "reason": "secret-leak test"})):
        dag = _dag(name)
        run = dag.test(logical_date=now + timedelta(seconds=len(states)),
                       run_conf={k: v for k, v in conf.items() if k in dag.params})
        states[name] = run.state
    # the flow must really have run, or the grep below proves nothing
    assert states["capacity_profiler"] == "success" and states["shadow_blueprints"] == "success", states
    assert states["regional_failover"] == "success", states

    leaks: list[str] = []
    captured = capfd.readouterr()
    leaks += [f"captured stdout: {s}" for s in _leaks(captured.out)]
    leaks += [f"captured stderr: {s}" for s in _leaks(captured.err)]
    leaks += [f"log record {r.name}: {s}" for r in caplog.records for s in _leaks(r.getMessage())]

    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    log_files = [p for p in logs.rglob("*") if p.is_file()] if logs.exists() else []
    for path in log_files:
        leaks += [f"task log {path.relative_to(logs)}: {s}" for s in _leaks(path.read_text(errors="replace"))]

    airflow = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    xcom_rows = 0
    # everything in the metadata DB, XCom and rendered templates included; `connection` is where they belong
    for table, text in _table_texts(airflow, skip={"connection"}):
        xcom_rows += table == "xcom"
        leaks += [f"airflow table {table}: {s}" for s in _leaks(text)]
    airflow.dispose()
    assert xcom_rows > 0, "no XCom rows: the DAG runs left nothing to check"

    engine = open_warehouse(warehouse_with_password)
    warehouse_rows = 0
    for table, text in _table_texts(engine):
        warehouse_rows += 1
        leaks += [f"warehouse table {table}: {s}" for s in _leaks(text)]
    assert warehouse_rows > 0

    ui = TestClient(create_app(lambda: engine, region_pairs=lambda: {PRIMARY: SHADOW}))
    for url in ("/", "/api/regions", f"/api/regions/{PRIMARY}"):
        response = ui.get(url)
        assert response.status_code == 200, (url, response.status_code)
        leaks += [f"UI {url}: {s}" for s in _leaks(response.text)]
    assert not leaks, "credentials leaked:\n" + "\n".join(sorted(set(leaks)))
