"""The health monitor against the moto server's CloudWatch alarms, and primary_health_monitor via dag.test()."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shadowing.aws.clients import client
from shadowing.health.monitor import assess_region
from shadowing.health.policy import HealthPolicy
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.store import (
    acquire_failover_lock,
    auto_failover_decisions,
    recent_health_observations,
    release_failover_lock,
)
from tests.support.health_alarm import MonitorClock, set_health_alarm

ROOT = Path(__file__).resolve().parents[2]

REGION = "us-east-1"
POLICY = HealthPolicy(failures_required=3, window=5, cooldown=timedelta(minutes=30))


def _alarm(cloudwatch, state: str) -> None:  # type: ignore[no-untyped-def]
    set_health_alarm(cloudwatch, REGION, state)


def test_n_of_m_with_cooldown_and_lock(aws: str, warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    t = datetime(2026, 1, 1, 12, tzinfo=UTC)

    def run(minute: int, auto: bool = True) -> dict:
        return assess_region(engine, cw, REGION, policy=POLICY, auto_failover=auto, run_id=f"m{minute}",
                             now=t + timedelta(minutes=minute), trigger_run_id=f"sensor-{minute}")

    _alarm(cw, "OK")
    assert run(0)["action"] == "none"
    _alarm(cw, "ALARM")  # one failing check, then healthy again: nothing
    assert run(1)["action"] == "none"
    _alarm(cw, "OK")
    assert [run(m)["action"] for m in (2, 3, 4, 5, 6)] == ["none"] * 5
    _alarm(cw, "ALARM")  # a real outage: judged failed on the third failing check
    first, second, third = run(7), run(8), run(9)
    assert (first["action"], second["action"]) == ("none", "none")
    assert third["action"] == "trigger" and third["trigger_run_id"] == "sensor-9"
    assert third["detected_at"] == (t + timedelta(minutes=7)).isoformat()
    assert run(10)["action"] == "suppressed_cooldown"  # no flapping
    acquire_failover_lock(engine, REGION, "f-1")
    assert run(45)["action"] == "suppressed_running"  # past the cooldown, but a failover holds the lock
    release_failover_lock(engine, REGION, "f-1")
    assert run(46)["action"] == "trigger"
    observations = recent_health_observations(engine, REGION, 100)
    assert len(observations) == 13 and observations[0].checks[0]["state"] == "ALARM"
    triggers = auto_failover_decisions(engine, REGION, decision="trigger")
    assert [d.detail["trigger_run_id"] for d in triggers] == ["sensor-46", "sensor-9"]


def test_auto_failover_off_alerts_instead(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    actions = [assess_region(engine, cw, REGION, policy=POLICY, auto_failover=False,
                             now=t + timedelta(minutes=m))["action"] for m in range(4)]
    assert actions == ["none", "none", "alert", "suppressed_cooldown"]


def test_missing_alarm_is_unknown_not_a_failure(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    cw = client("cloudwatch", REGION, aws)
    out = [assess_region(engine, cw, REGION, policy=POLICY, auto_failover=True)["action"] for _ in range(4)]
    assert out == ["none"] * 4
    assert recent_health_observations(engine, REGION, 1)[0].checks[0]["state"] == "MISSING"


@pytest.mark.slow
def test_monitor_dag_triggers_failover_within_three_runs_after_chaos(
        aws_conn_env: str, warehouse_conn_env: str, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowing.world.live import chaos
    from shadowing.world.seeding import seed_world
    from shadowing.world.state import WorldClients

    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{REGION}=us-west-2")
    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    world = WorldClients.connect(aws_conn_env)
    seed_world(world, seed=0, history_days=0.01, flow_minutes=1)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    with create_session() as session:  # the trigger needs regional_failover in the metadata DB
        if session.get(DagBundleModel, "dags-folder") is None:
            session.add(DagBundleModel(name="dags-folder"))
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
    dag = bag.get_dag("primary_health_monitor")
    engine = open_warehouse(warehouse_conn_env)
    start = datetime.now(UTC).replace(microsecond=0)
    clock = MonitorClock(monkeypatch, start)
    from airflow.models.dagrun import DagRun

    with create_session() as session:  # the metadata DB is shared by the session's tests
        known = {r.run_id for r in session.query(DagRun).filter(DagRun.dag_id == "regional_failover")}

    def run(i: int):  # type: ignore[no-untyped-def]
        # the scheduler's cadence: one check a minute, in logical date and in the monitor's wall clock
        return dag.test(logical_date=clock.at(start + timedelta(minutes=i)))

    assert run(0).state == "success"  # healthy world
    chaos(world, fail=True)
    states = [run(i) for i in (1, 2, 3)]
    assert all(r.state == "success" for r in states)
    actions = [o.action for o in reversed(recent_health_observations(engine, REGION, 4))]
    assert actions == ["none", "none", "none", "trigger"]
    [decision] = auto_failover_decisions(engine, REGION, decision="trigger")
    with create_session() as session:
        # only the runs this test's monitor triggered count
        runs = [r for r in session.query(DagRun).filter(DagRun.dag_id == "regional_failover")
                if r.run_id not in known]
        assert [r.run_id for r in runs] == [decision.detail["trigger_run_id"]]
        assert runs[0].conf["primary_region"] == REGION and runs[0].conf["trigger"] == "sensor"
        assert runs[0].conf["mode"] == "live" and runs[0].conf["detected_at"]
        assert runs[0].conf["monitor_run_id"] == decision.run_id  # the failover will name who triggered it
    # the switch (on through AIRFLOW_VAR_, which Airflow's event log never sees) was audited once, on the first run
    [switch] = auto_failover_decisions(engine, REGION, decision="switch_enabled")
    assert switch.auto_failover and switch.detail["changed_by"].startswith(
        "unknown (observed by primary_health_monitor run ")
    assert "airflow_api" in switch.detail["lookup_error"]
    assert auto_failover_decisions(engine, REGION, decision="switch_disabled") == []
    assert run(4).state == "success"
    assert recent_health_observations(engine, REGION, 1)[0].action in {"suppressed_running",
                                                                       "suppressed_cooldown"}
