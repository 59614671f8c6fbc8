"""Shared test fixtures: a real moto server over HTTP, a real PostgreSQL, an isolated Airflow home.

Environment is set at import time, before anything imports Airflow or boto3, so that every test sees the same
isolated AIRFLOW_HOME and fake AWS credentials (recognisable on purpose: the secret-leak test greps for them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="shadowing-tests-"))
os.environ.setdefault("AIRFLOW_HOME", str(_SESSION_DIR / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_SESSION_DIR / 'airflow.db'}")
os.environ["AWS_ACCESS_KEY_ID"] = "AKIASHADOWINGTESTKEY"
os.environ["AWS_SECRET_ACCESS_KEY"] = "shadowing-test-secret-do-not-leak"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ["SHADOWING_STATE_DIR"] = str(_SESSION_DIR / "state")
sys.path.insert(0, str(ROOT / "include"))

pytest_plugins = ["tests.support.aws_recorder"]  # records AWS actions vs include/iam (issue 8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto server (the AWS emulator) on loopback, started for the test session."""
    preset = os.environ.get("SHADOWING_TEST_AWS_ENDPOINT")
    if preset:
        yield preset
        return
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    log = open(_SESSION_DIR / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/data.json")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def aws(moto_endpoint: str) -> str:
    """A moto server reset to an empty account for this test; yields its endpoint URL."""
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=30).close()
    return moto_endpoint


@pytest.fixture
def aws_conn_env(aws: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Airflow's `aws_default` connection pointed at the emulator through the environment."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws",
        "login": os.environ["AWS_ACCESS_KEY_ID"],
        "password": os.environ["AWS_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": aws, "region_name": "us-east-1"},
    }))
    return aws


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of the real PostgreSQL server (CI starts it and exports SHADOWING_TEST_POSTGRES_URL)."""
    url = os.environ.get("SHADOWING_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("SHADOWING_TEST_POSTGRES_URL is not set: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL: set SHADOWING_TEST_POSTGRES_URL (make test starts one)")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each warehouse test runs on the embedded SQLite file and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Airflow's metadata database migrated once for the session (needed by dag.test())."""
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, env=os.environ.copy())
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture
def warehouse_conn_env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Airflow's `shadowing_warehouse` connection pointed at a fresh SQLite warehouse."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_SHADOWING_WAREHOUSE",
                       json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": sqlite_url}}))
    return sqlite_url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
