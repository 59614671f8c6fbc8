"""capacity_profiler end to end: dag.test() against the seeded world on moto and a SQLite warehouse.

Run 1 bootstraps a valid fingerprint of every service of the world (with sizing); run 2 sees a service whose
CPU reads 250 %: the task fails naming the service and metric, the invalid fingerprint is kept for audit and
the first one stays current.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from shadowing.world.app import build_app
from shadowing.world.seeding import inventory_from_aws, metric_datums, put_metric_datums, seed_world
from shadowing.world.state import WorldClients, load_state
from tests.integration.test_capacity_dag_adversarial import on_time_clock  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
BROKEN = "web"


def _dag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "capacity_profiler.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("capacity_profiler")


@pytest.mark.slow
def test_dag_fingerprints_the_world_and_keeps_it_on_bad_data(
        aws_conn_env: str, warehouse_conn_env: str, airflow_db: str, on_time_clock: None,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{REGION}=us-west-2")
    world = WorldClients.connect(aws_conn_env)
    seed_world(world, seed=1, history_days=0.05, secondary_history_days=0.05, flow_minutes=6, now=NOW)
    state = load_state(world.ssm)
    assert state is not None
    app = build_app(state.services, state.seed, state.instances_per_service)
    dag = _dag()
    # the bootstrap reads its hour at one 3600 s period; the folds read minutes, 3 periods per call
    conf = {"bootstrap_hours": 1.0, "period_seconds": 60, "bootstrap_period_seconds": 3600, "window_periods": 3}

    run = dag.test(logical_date=NOW, run_conf=conf)
    assert run.state == "success", run.state

    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.store import latest_valid_fingerprint
    from shadowing.warehouse.tables import capacity_fingerprints

    engine = open_warehouse(warehouse_conn_env)
    first = latest_valid_fingerprint(engine, REGION)
    assert first is not None
    fp = first.payload
    assert fp["region"] == REGION
    assert fp["window"] == {"start": "2025-06-02T11:00:00Z", "end": "2025-06-02T12:00:00Z"}
    assert fp["params"]["step_seconds"] == 3600  # one hourly sample per series (the world's 5-minute points averaged)
    assert all(s["metrics"]["cpu_utilization"]["count"] == s["instances"]["distinct"] for s in fp["services"].values())
    world_services = {s.name: s.instances for s in app.compute_services()}
    assert set(fp["services"]) == set(world_services)
    for name, s in fp["services"].items():
        assert s["sizing"]["instances"] >= 1, name
        assert s["sizing"]["rule"]["metric"] == "cpu_utilization"
        assert set(s["metrics"]) >= {"cpu_utilization", "memory_utilization", "network_in_bytes"}
        assert s["aggregate"]["cpu_utilization"]["count"] > 0
        assert len(s["metrics"]["cpu_utilization"]["hour_of_week_peak"]) == 168
        # all instances that reported in the hour, the replaced one included
        assert s["instances"]["distinct"] >= world_services[name], name
    terminated = [i["InstanceId"] for r in world.ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["terminated"]}])["Reservations"] for i in r["Instances"]]
    assert terminated and set(terminated) <= set(fp["services"]["recommendation"]["instances"]["by_id"])
    assert not fp["quality"]["rejected_rows"]

    # the next five minutes: the world keeps publishing (1-minute resolution), and web's CPU agent breaks
    inventory = inventory_from_aws(world, state, app)
    put_metric_datums(world.cloudwatch, metric_datums(app, inventory, NOW, NOW + timedelta(minutes=5), 60,
                                                      state.seed))
    broken = [i for i in discover(world) if i[1] == BROKEN]
    world.cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": iid}],
         "Timestamp": NOW + timedelta(minutes=m, seconds=30), "Value": 250.0, "Unit": "Percent"}
        for iid, _ in broken for m in range(5)])

    run = dag.test(logical_date=NOW + timedelta(minutes=5), run_conf=conf)
    assert run.state == "failed", run.state
    current = latest_valid_fingerprint(engine, REGION)
    assert current is not None and current.id == first.id  # the previous valid fingerprint stays current
    with engine.connect() as conn:
        rows = conn.execute(sa.select(capacity_fingerprints).order_by(capacity_fingerprints.c.id)).mappings().all()
    assert [r["valid"] for r in rows] == [True, False]
    errors = " ".join(rows[1]["errors"])
    assert f"{BROKEN}/*/cpu_utilization" in errors and "rejected_share" in errors, errors
    assert rows[1]["payload"]["quality"]["rejected_rows"] == {BROKEN: {"cpu_utilization": 5 * len(broken)}}


def discover(world: WorldClients) -> list[tuple[str, str]]:
    from shadowing.metrics.cloudwatch import discover_instances

    return sorted(discover_instances(world.ec2).items())
