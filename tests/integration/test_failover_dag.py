"""dag.test() of regional_failover (dry_run, drill, live) and regional_failback against the moto server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shadowing.aws import tags as T
from shadowing.aws.clients import client
from tests.support.shadow_world import PRIMARY, RECORD, SHADOW, build_shadow_world, store_blueprint

DAGS = Path(__file__).resolve().parents[2] / "dags"
pytestmark = pytest.mark.slow


def _dag(name: str):  # type: ignore[no-untyped-def]
    import runpy

    return runpy.run_path(str(DAGS / f"{name}.py"))[name]()


def _instances(endpoint: str, **tag_filters: str) -> list[dict]:
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tag_filters.items()]
    filters.append({"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]})
    pages = client("ec2", SHADOW, endpoint).get_paginator("describe_instances").paginate(Filters=filters)
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def _records(endpoint: str, zone: str) -> list[dict]:
    sets = client("route53", PRIMARY, endpoint).list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [r for r in sets if r["Name"] == RECORD]


@pytest.fixture
def world(aws_conn_env: str, warehouse_conn_env: str, airflow_db: str):  # type: ignore[no-untyped-def]
    from shadowing.warehouse import open_warehouse

    world = build_shadow_world(aws_conn_env, services=5, instances_per_service=2)
    engine = open_warehouse(warehouse_conn_env)
    store_blueprint(engine, world)
    return world, engine


def _events(engine):  # type: ignore[no-untyped-def]
    from shadowing.warehouse.operations import list_failover_events

    return list_failover_events(engine, PRIMARY)


def test_dry_run_changes_nothing_and_records_the_plan(world) -> None:  # type: ignore[no-untyped-def]
    w, engine = world
    before = _records(w.endpoint, w.hosted_zone_id)
    run = _dag("regional_failover").test(run_conf={"primary_region": PRIMARY, "mode": "dry_run"})
    assert run.state == "success"
    assert _instances(w.endpoint) == []
    assert _records(w.endpoint, w.hosted_zone_id) == before
    (event,) = _events(engine)
    assert event.mode == "dry_run" and event.outcome == "succeeded"
    assert event.plan["instances_expected"] == w.expected_instances
    assert [t["tier"] for t in event.plan["tiers"]] == [0, 1, 2]
    steps = {s["step"]: s["outcome"] for s in event.steps}
    assert steps["prepare"] == steps["preflight"] == "succeeded" and steps["launch"] == "skipped"


def test_drill_failure_still_tears_down_and_fails_the_run(world) -> None:  # type: ignore[no-untyped-def]
    w, engine = world
    before = _records(w.endpoint, w.hosted_zone_id)
    # Break verification after launch and network really ran: the drill must still be torn down.
    from shadowing.failover import steps

    original = steps.verify_failover

    def broken(env, state):  # type: ignore[no-untyped-def]
        raise RuntimeError("verification sabotaged by the test")

    steps.verify_failover = broken
    try:
        run = _dag("regional_failover").test(run_conf={"primary_region": PRIMARY, "mode": "drill"})
    finally:
        steps.verify_failover = original
    assert run.state == "failed"  # the watcher fails the run although the teardown succeeded
    (event,) = _events(engine)
    assert event.mode == "drill" and event.outcome == "failed" and "verify" in event.error
    steps = {s["step"]: s for s in event.steps}
    assert steps["launch"]["detail"]["instances"] == w.expected_instances
    assert steps["traffic"]["outcome"] == "skipped"
    assert steps["teardown"]["detail"]["terminated"] == w.expected_instances
    assert _instances(w.endpoint, **{T.FAILOVER_ID: event.failover_id}) == []
    assert _records(w.endpoint, w.hosted_zone_id) == before  # production DNS untouched


def test_live_failover_then_failback(world) -> None:  # type: ignore[no-untyped-def]
    from shadowing.warehouse.operations import failover_lock_holder, record_health_observation

    w, engine = world
    # Detected 20 minutes ago; the primary recovered 15 minutes ago (health after the outage is what counts).
    detected = (datetime.now(UTC) - timedelta(seconds=1200)).isoformat()
    run = _dag("regional_failover").test(run_conf={
        "primary_region": PRIMARY, "mode": "live", "trigger": "sensor", "detected_at": detected})
    assert run.state == "success"
    (event,) = _events(engine)
    assert event.outcome == "succeeded" and event.recovery_seconds >= 1200
    launched = _instances(w.endpoint, **{T.FAILOVER_ID: event.failover_id})
    assert len(launched) == w.expected_instances
    assert {T.from_aws(i["Tags"])[T.MODE] for i in launched} == {"live"}
    records = _records(w.endpoint, w.hosted_zone_id)
    assert records and all(r["ResourceRecords"][0]["Value"] == w.shadow_lb_dns for r in records)
    assert failover_lock_holder(engine, PRIMARY) is None

    # The primary has been healthy long enough: fail back.
    now = datetime.now(UTC)
    conf = {"primary_region": PRIMARY, "confirm_region": PRIMARY, "hold_seconds": 600}
    # … and runs once it has.
    record_health_observation(engine, primary_region=PRIMARY, healthy=True, checks=[], verdict="healthy",
                              action="none", detail="", observed_at=now - timedelta(seconds=900))
    assert _dag("regional_failback").test(run_conf=conf).state == "success"
    assert _instances(w.endpoint, **{T.FAILOVER_ID: event.failover_id}) == []
    primary = [r for r in _records(w.endpoint, w.hosted_zone_id) if r.get("Failover") == "PRIMARY"]
    assert primary[0]["ResourceRecords"][0]["Value"] == w.primary_target
    assert failover_lock_holder(engine, PRIMARY) is None
    # The failback is its own event row, linked both ways.
    from shadowing.warehouse.operations import get_failover_event

    (failback,) = [e for e in _events(engine) if e.failover_id.startswith("fb-")]
    assert failback.outcome == "succeeded" and failback.plan["failback_of"] == event.failover_id
    assert [s["step"] for s in failback.steps] == ["health", "traffic", "replication", "capacity"]
    assert failback.recovery_seconds is not None
    original = get_failover_event(engine, event.failover_id)
    assert original is not None and original.outcome == "succeeded"
    link = next(s for s in original.steps if s["step"] == "failback")
    assert link["detail"]["failback_id"] == failback.failover_id and link["outcome"] == "succeeded"


