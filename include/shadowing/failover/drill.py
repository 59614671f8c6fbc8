"""``make drill``: on a fresh emulated world, run the refresh DAGs and then a drill failover, headless.

Everything lives in a temporary folder: a moto server on a free loopback port (unless one is given), Airflow's
metadata DB (SQLite, migrated by ``airflow db migrate``), the warehouse (SQLite) and the state dir. The world is
seeded (the world's CLI), then ``capacity_profiler``, ``dependency_mapper`` and ``shadow_blueprints`` run through
``dag.test()`` (fresh fingerprint, graph, blueprint and readiness report), then ``regional_failover`` in mode
``drill`` through ``dag.test()`` (launch, network, verify, teardown, finalize). The summary is counted from the
emulator's own state, never from the plan: every instance the drill's failover id ever tagged (terminated ones
included, so a duplicate created and removed still counts), and what still runs after the teardown.

Airflow reads its configuration when first imported, so :func:`drill_summary` sets the environment before it
imports anything of Airflow (the CLI imports nothing of it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shadowing.errors import EmulatorUnavailable, ShadowingError

log = logging.getLogger(__name__)
REFRESH_DAGS = ("capacity_profiler", "dependency_mapper", "shadow_blueprints")
# The capacity profiler's first run reads this much history (the seeded world has more): enough for sane
# sizing, small enough for a quick drill.
CAPACITY_CONF = {"bootstrap_hours": 24.0, "bootstrap_period_seconds": 3600, "period_seconds": 60,
                 "window_periods": 6}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def emulator(endpoint_url: str | None) -> Iterator[str]:
    # The emulator accepts any credentials; recognisably fake ones when none are configured.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIASHADOWINGDRILL")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "shadowing-drill-secret")
    if endpoint_url:
        yield endpoint_url
        return
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).close()
                break
            except OSError as exc:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise EmulatorUnavailable(f"moto server on port {port} did not start") from exc
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def seed(endpoint: str, services: int | None, instances_per_service: int | None) -> None:
    argv = [sys.executable, "-m", "shadowing", "world", "seed", "--endpoint-url", endpoint]
    if services:
        argv += ["--services", str(services)]
    if instances_per_service:
        argv += ["--instances-per-service", str(instances_per_service)]
    done = subprocess.run(argv, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise ShadowingError(f"world seed failed: {(done.stderr or done.stdout).strip()[-400:]}")


def airflow_environment(tmp: Path, endpoint: str, warehouse_url: str, primary: str, shadow: str) -> dict[str, str]:
    """An isolated Airflow (metadata DB in ``tmp``) whose connections point at the emulator and the warehouse."""
    from shadowing.settings import PROJECT_ROOT

    return {
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": os.environ["AWS_ACCESS_KEY_ID"],
                                                "password": os.environ["AWS_SECRET_ACCESS_KEY"],
                                                "extra": {"endpoint_url": endpoint, "region_name": primary}}),
        "AIRFLOW_CONN_SHADOWING_WAREHOUSE": json.dumps({"conn_type": "generic",
                                                        "extra": {"sqlalchemy_url": warehouse_url}}),
        "SHADOWING_REGION_PAIRS": f"{primary}={shadow}",
        "SHADOWING_STATE_DIR": str(tmp / "state"),
        "AWS_DEFAULT_REGION": primary,
    }


def migrate_airflow_db(env: dict[str, str]) -> None:
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True,
                          text=True, env={**os.environ, **env})
    if done.returncode != 0:
        raise ShadowingError(f"airflow db migrate failed: {(done.stderr or done.stdout).strip()[-400:]}")


def load_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from shadowing.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{dag_id}.py"))
    if bag.import_errors:
        raise ShadowingError(f"{dag_id}: {bag.import_errors}")
    return bag.get_dag(dag_id)


def run_dag(dag_id: str, **kwargs: Any) -> Any:
    t0 = time.perf_counter()
    run = load_dag(dag_id).test(**kwargs)
    log.info("%s: %s in %.1fs", dag_id, run.state, time.perf_counter() - t0)
    if run.state != "success":
        raise ShadowingError(f"{dag_id} run {run.run_id} ended {run.state} (see the log above)")
    return run


def count_launched(ec2: Any, failover_id: str) -> tuple[Counter[str], int]:
    """(instances per service the failover ever created, how many of them are still not terminated)."""
    from shadowing.failover.launcher import census

    everything = census(ec2, failover_id, states=None)
    created = Counter(service for service, _state in everything.values())
    alive = sum(1 for _service, state in everything.values() if state not in ("terminated", "shutting-down"))
    return created, alive


def drill_summary(*, endpoint_url: str | None = None, warehouse_url: str | None = None,
                  primary_region: str | None = None, services: int | None = None,
                  instances_per_service: int | None = None) -> dict[str, Any]:
    from shadowing.settings import region_pairs

    pairs = region_pairs()
    primary = primary_region or next(iter(pairs))
    if primary not in pairs:
        raise ShadowingError(f"{primary} is not a configured primary region ({', '.join(pairs)})")
    shadow = pairs[primary]
    with tempfile.TemporaryDirectory(prefix="shadowing-drill-") as folder, emulator(endpoint_url) as endpoint:
        tmp = Path(folder)
        warehouse = warehouse_url or f"sqlite:///{tmp / 'warehouse.db'}"
        env = airflow_environment(tmp, endpoint, warehouse, primary, shadow)
        os.environ.update(env)  # before anything imports Airflow
        migrate_airflow_db(env)
        seed(endpoint, services, instances_per_service)
        return _drill(endpoint, warehouse, primary, shadow)


def _drill(endpoint: str, warehouse_url: str, primary: str, shadow: str) -> dict[str, Any]:
    from shadowing.aws.clients import client
    from shadowing.failover.identity import failover_id
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.operations import get_failover_event, latest_readiness

    now = datetime.now(UTC).replace(microsecond=0)
    run_dag("capacity_profiler", logical_date=now, run_conf=CAPACITY_CONF)
    run_dag("dependency_mapper", logical_date=now + timedelta(minutes=1))  # interval: the hour before
    run_dag("shadow_blueprints")
    engine = open_warehouse(warehouse_url)
    readiness = latest_readiness(engine, primary)
    run = run_dag("regional_failover", run_conf={"primary_region": primary, "mode": "drill",
                                                 "reason": "make drill"})
    fid = failover_id("regional_failover", run.run_id)
    event = get_failover_event(engine, fid)
    if event is None:
        raise ShadowingError(f"the drill {fid} recorded no failover event")
    plan = event.plan or {}
    expected = {s["service"]: int(s["count"]) for t in plan.get("tiers", []) for g in t["groups"]
                for s in g["services"]}
    created, alive = count_launched(client("ec2", shadow, endpoint), fid)
    duplicates = sum(max(0, created.get(k, 0) - v) for k, v in expected.items()) + \
        sum(v for k, v in created.items() if k not in expected)
    return {
        "services": len(expected), "instances_expected": sum(expected.values()),
        "instances_launched": sum(created.values()), "duplicates": duplicates,
        "missing": sum(max(0, v - created.get(k, 0)) for k, v in expected.items()),
        "steps": {s["step"]: round(float((s.get("detail") or {}).get("seconds") or 0.0), 2) for s in event.steps
                  if s.get("outcome") not in (None, "skipped")},
        "recovery_seconds": None if event.recovery_seconds is None else round(event.recovery_seconds, 2),
        "outcome": event.outcome, "still_running_after_teardown": alive,
        "blueprint_version": event.blueprint_version,
        "readiness": None if readiness is None else ("ready" if readiness.ready else
                                                     [f"{c.check} {c.subject}" for c in readiness.failures]),
        "failover_id": fid,
    }
