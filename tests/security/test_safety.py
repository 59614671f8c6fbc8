"""Auth and safety: the demo's Airflow needs a login, a manual LIVE failover needs the region typed, and every
auto-failover decision and every failover is audited in the warehouse with who or what triggered it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shadowing.errors import InputError
from shadowing.failover.steps import FailoverRequest, validate_request

ROOT = Path(__file__).resolve().parents[2]
PRIMARY = "us-east-1"
READ_ONLY = re.compile(r"^[a-z0-9-]+:(Describe|List|Get)[A-Za-z]*$")


# ───────────────────────────────────────────── login ─────────────────────────────────────────────

def test_demo_airflow_requires_a_generated_password(tmp_path: Path) -> None:
    from shadowing.devstack import Stack, _admin_password, airflow_env

    stacks = [Stack(state=tmp_path / name, airflow_port=18080, aws_port=15000) for name in ("a", "b")]
    for stack in stacks:
        stack.state.mkdir()
    env = airflow_env(stacks[0])
    assert env.get("AIRFLOW__CORE__AUTH_MANAGER", "SimpleAuthManager").endswith("SimpleAuthManager")
    assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False").lower() != "true"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].endswith(":admin")
    first, second = (_admin_password(s) for s in stacks)
    assert first != second and len(first) >= 12  # generated per stack, never a shipped default
    assert _admin_password(stacks[0]) == first  # stable for the stack's lifetime
    assert (stacks[0].state / "passwords.json").stat().st_mode & 0o077 == 0  # readable by the owner only


def test_unauthenticated_rest_calls_are_rejected(airflow_db: str) -> None:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    for path in ("/api/v2/dags", "/api/v2/connections", "/api/v2/variables"):
        assert client.get(path).status_code == 401, path
    trigger = client.post("/api/v2/dags/regional_failover/dagRuns",
                          json={"logical_date": None, "conf": {"primary_region": PRIMARY, "mode": "live"}})
    assert trigger.status_code == 401
    assert client.get("/api/v2/dags", headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 403)


# ───────────────────────────────────────── typed confirmation ─────────────────────────────────────────

@pytest.mark.parametrize("typed", ["", "  ", "us-west-2", "US-EAST-1", "yes"])
def test_manual_live_failover_needs_the_region_typed(typed: str) -> None:
    request = FailoverRequest(primary_region=PRIMARY, mode="live", confirm_region=typed, trigger="manual")
    with pytest.raises(InputError, match="confirm_region"):
        validate_request(request, [PRIMARY])


def test_confirmation_is_not_needed_where_nothing_live_happens_or_the_sensor_decided() -> None:
    validate_request(FailoverRequest(primary_region=PRIMARY, mode="live", confirm_region=PRIMARY), [PRIMARY])
    validate_request(FailoverRequest(primary_region=PRIMARY, mode="drill"), [PRIMARY])
    validate_request(FailoverRequest(primary_region=PRIMARY, mode="dry_run"), [PRIMARY])
    validate_request(FailoverRequest(primary_region=PRIMARY, mode="live", trigger="sensor"), [PRIMARY])


def test_trigger_form_asks_for_the_confirmation() -> None:
    from shadowing.orchestration.failover import failback_params, failover_params

    for params in (failover_params(), failback_params()):
        confirm = params["confirm_region"]
        assert confirm.value == "" and "region" in (confirm.description or "").lower()


@pytest.mark.slow
def test_unconfirmed_live_run_fails_before_any_mutating_call(aws_conn_env: str, warehouse_conn_env: str,
                                                             airflow_db: str, request: pytest.FixtureRequest) -> None:
    import runpy

    from shadowing.aws import tags as T
    from shadowing.aws.clients import client
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.operations import failover_lock_holder, list_failover_events
    from tests.support.aws_recorder import RECORDER
    from tests.support.shadow_world import SHADOW, build_shadow_world, store_blueprint

    world = build_shadow_world(aws_conn_env, services=4, instances_per_service=1)
    engine = open_warehouse(warehouse_conn_env)
    store_blueprint(engine, world)
    dag = runpy.run_path(str(ROOT / "dags" / "regional_failover.py"))["regional_failover"]()
    run = dag.test(run_conf={"primary_region": PRIMARY, "mode": "live", "trigger": "manual",
                             "confirm_region": "us-west-2"})
    assert run.state == "failed"
    mine = request.node.nodeid
    failover_calls = {a for a, tests in RECORDER.calls.get("failover", {}).items() if mine in tests}
    writes = sorted(a for a in failover_calls if not READ_ONLY.match(a))
    assert not writes, f"an unconfirmed live failover made mutating AWS calls: {writes}"
    ec2 = client("ec2", SHADOW, aws_conn_env)
    launched = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": [T.FAILOVER_ID]}])["Reservations"]
    assert launched == []
    assert failover_lock_holder(engine, PRIMARY) is None  # no lock left behind
    assert all(e.outcome != "succeeded" for e in list_failover_events(engine, PRIMARY))


# ─────────────────────────────────────────────── audit ───────────────────────────────────────────────

def test_every_auto_failover_decision_is_audited_with_the_switch_state(sqlite_url: str) -> None:
    from shadowing.health.monitor import assess_region
    from shadowing.health.policy import HealthPolicy
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.operations import auto_failover_decisions

    engine = open_warehouse(sqlite_url)
    policy = HealthPolicy(failures_required=2, window=3, cooldown=timedelta(minutes=30))
    failing = [{"kind": "alarm", "name": "shadowing-region-health-us-east-1", "healthy": False, "state": "ALARM",
                "detail": "threshold crossed"}]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    results = []
    for minute, auto in enumerate([False, False, True, True]):
        results.append(assess_region(engine, None, PRIMARY, policy=policy, auto_failover=auto, checks=failing,
                                     run_id=f"scheduled__{minute}", now=start + timedelta(minutes=minute),
                                     trigger_run_id=f"sensor__{minute}"))
    decisions = list(reversed(auto_failover_decisions(engine, PRIMARY)))
    assert [d.auto_failover for d in decisions] == [False, True, True]  # every decision once judged failed
    assert [d.run_id for d in decisions] == ["scheduled__1", "scheduled__2", "scheduled__3"]  # what decided
    assert all(d.reason for d in decisions)
    assert decisions[1].decision == "trigger" and decisions[1].detail["trigger_run_id"] == "sensor__2"
    assert decisions[2].decision != "trigger"  # cooldown: audited, not re-triggered
    assert [r["action"] for r in results][2] == "trigger"


@pytest.mark.slow
def test_every_failover_is_audited_with_its_trigger(aws_conn_env: str, warehouse_conn_env: str,
                                                   airflow_db: str) -> None:
    import runpy

    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.operations import list_failover_events
    from tests.support.shadow_world import build_shadow_world, store_blueprint

    world = build_shadow_world(aws_conn_env, services=4, instances_per_service=1)
    engine = open_warehouse(warehouse_conn_env)
    store_blueprint(engine, world)
    dag = runpy.run_path(str(ROOT / "dags" / "regional_failover.py"))["regional_failover"]()
    assert dag.test(run_conf={"primary_region": PRIMARY, "mode": "dry_run", "reason": "audit test"}).state \
        == "success"
    (event,) = list_failover_events(engine, PRIMARY)
    assert event.trigger == "manual" and event.mode == "dry_run" and event.dag_run_id
    assert event.triggered_by == "dag_test"  # Airflow's triggering user (the UI/API user; dag.test() names itself)
    assert event.outcome == "succeeded" and event.started_at is not None
