"""Adversarial failover / failback: the worst-day paths an SRE runs, against the moto server and real databases.

Each test pins one defect found by attacking the orchestrator (stale locks, a failback that trusts health
from before the outage, a failback of something that was never failed over, a leaked failback lock, a cleared
step running beside another failover) or one attack that held up (hostile Params, dry runs that touch nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shadowing.aws import tags as T
from shadowing.aws.clients import client
from shadowing.errors import InputError
from shadowing.failover import failback as fb
from shadowing.failover import steps
from shadowing.failover.clients import FailoverClients
from shadowing.failover.identity import failover_id
from shadowing.failover.runner import run_failover
from shadowing.failover.steps import FailoverEnv, FailoverLocked, FailoverRequest
from shadowing.warehouse import open_warehouse
from shadowing.warehouse import operations as ops
from tests.support.shadow_world import (
    PRIMARY,
    RECORD,
    SHADOW,
    ShadowWorld,
    build_shadow_world,
    store_blueprint,
)

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _instances(endpoint: str, **tag_filters: str) -> list[dict[str, Any]]:
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tag_filters.items()]
    filters.append({"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]})
    pages = client("ec2", SHADOW, endpoint).get_paginator("describe_instances").paginate(Filters=filters)
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def _records(world: ShadowWorld) -> list[dict[str, Any]]:
    sets = client("route53", PRIMARY, world.endpoint).list_resource_record_sets(
        HostedZoneId=world.hosted_zone_id)["ResourceRecordSets"]
    return [r for r in sets if r["Name"] == RECORD]


def _world(endpoint: str, url: str) -> tuple[ShadowWorld, FailoverEnv]:
    world = build_shadow_world(endpoint, services=4, instances_per_service=1)
    engine = open_warehouse(url)
    store_blueprint(engine, world)
    return world, FailoverEnv(clients=FailoverClients.for_endpoint(endpoint), engine=engine, launch_timeout=60)


@pytest.fixture
def small(aws: str, sqlite_url: str) -> tuple[ShadowWorld, FailoverEnv]:
    return _world(aws, sqlite_url)


@pytest.fixture
def small_any_db(aws: str, warehouse_url: str) -> tuple[ShadowWorld, FailoverEnv]:
    """The lock and event bookkeeping on both warehouses (SQLite and PostgreSQL)."""
    return _world(aws, warehouse_url)


def _live(env: FailoverEnv, run_id: str, **extra: Any) -> dict[str, Any]:
    request = FailoverRequest(primary_region=PRIMARY, mode="live", confirm_region=PRIMARY, **extra)
    return run_failover(env, request, run_id=run_id, allowed_primaries=[PRIMARY])


def _open_failback(env: FailoverEnv, fid: str, run_id: str) -> steps.FailoverState:
    from shadowing.failover.identity import failback_id

    state = fb.state_of(fb.select_failover(env, PRIMARY, fid))
    event_id = failback_id("regional_failback", run_id)
    assert ops.acquire_failover_lock(env.engine, PRIMARY, event_id, mode="live")  # as select_failover does
    state.extra = {"lock_id": event_id}
    return fb.open_failback(env, state, event_id=event_id, dag_run_id=run_id)


def _full_failback(env: FailoverEnv, state: steps.FailoverState, now: datetime | None = None) -> dict[str, Any]:
    fb.check_primary_health(env, state, 600, now=now)
    fb.restore_traffic(env, state)
    fb.reverse_replication(env, state)
    fb.remove_launched_capacity(env, state)
    summary = fb.finish_failback(env, state)
    assert ops.release_failover_lock(env.engine, PRIMARY, state.extra["lock_id"])
    return summary


# ─────────────────────────────── failback health: only after the outage counts ───────────────────────────────

def test_failback_does_not_count_health_from_before_the_outage(small) -> None:  # type: ignore[no-untyped-def]
    """A primary healthy two hours ago, a failover for an outage detected an hour ago, one healthy check now:
    the primary has NOT been healthy for 10 minutes since the outage, so the failback must wait."""
    world, env = small
    now = datetime.now(UTC)
    ops.record_health_observation(env.engine, primary_region=PRIMARY, healthy=True, checks=[], verdict="healthy",
                                  action="none", observed_at=now - timedelta(hours=2))
    result = _live(env, "outage", detected_at=(now - timedelta(hours=1)).isoformat())
    ops.record_health_observation(env.engine, primary_region=PRIMARY, healthy=True, checks=[], verdict="healthy",
                                  action="none", observed_at=now)
    state = _open_failback(env, result["failover_id"], "fb-early")
    with pytest.raises(fb.PrimaryNotHealthy, match="since the failover"):
        fb.check_primary_health(env, state, 600, now=now + timedelta(seconds=1))
    # That failed failback closes failed; refusing finished failbacks must not refuse running it again.
    assert fb.finish_failback(env, state)["outcome"] == "failed"
    assert fb.select_failover(env, PRIMARY, None).failover_id == result["failover_id"]
    assert fb.select_failover(env, PRIMARY, result["failover_id"]).failover_id == result["failover_id"]
    # Held once the streak after the outage is long enough.
    later = now + timedelta(minutes=11)
    ops.record_health_observation(env.engine, primary_region=PRIMARY, healthy=True, checks=[], verdict="healthy",
                                  action="none", observed_at=later)
    assert fb.check_primary_health(env, state, 600, now=later)["held"]


# ─────────────────────────────── failback: nothing (left) to fail back ───────────────────────────────

def test_failback_refuses_what_was_never_failed_over_or_already_failed_back(small) -> None:  # type: ignore[no-untyped-def]
    world, env = small
    # A dry run and a drill moved no traffic: there is nothing to fail back.
    dry = run_failover(env, FailoverRequest(primary_region=PRIMARY, mode="dry_run"), run_id="dry",
                       allowed_primaries=[PRIMARY])
    with pytest.raises(InputError, match="has no succeeded live failover"):
        fb.select_failover(env, PRIMARY, None)
    with pytest.raises(InputError, match="dry_run failover that moved no traffic") as info:
        fb.select_failover(env, PRIMARY, dry["failover_id"])
    assert info.value.field == "failover_id"

    result = _live(env, "live-1")
    fid = result["failover_id"]
    now = datetime.now(UTC)
    ops.record_health_observation(env.engine, primary_region=PRIMARY, healthy=True, checks=[], verdict="healthy",
                                  action="none", observed_at=now + timedelta(seconds=1))
    state = _open_failback(env, fid, "fb-1")
    assert _full_failback(env, state, now=now + timedelta(minutes=11))["outcome"] == "succeeded"
    records_home = _records(world)
    # A second failback (default selection, or naming the failover) finds nothing left to do and says so,
    # instead of reversing replication again and re-linking the failover to a new failback.
    with pytest.raises(InputError, match="has no succeeded live failover"):
        fb.select_failover(env, PRIMARY, None)
    with pytest.raises(InputError, match=f"{fid} was already failed back by fb-"):
        fb.select_failover(env, PRIMARY, fid)
    assert _records(world) == records_home
    link = next(s for s in ops.get_failover_event(env.engine, fid).steps if s["step"] == "failback")
    assert link["detail"]["failback_id"] == state.extra["event_id"]


# ─────────────────────────────── the lock a crashed run leaves behind ───────────────────────────────

def _crashed_holder(env: FailoverEnv, holder: str, *, closed: bool) -> None:
    """What a run killed before its finalize released the lock leaves: the lock row and an event."""
    ops.record_failover_event(env.engine, failover_id=holder, primary_region=PRIMARY, shadow_region=SHADOW,
                              mode="live", trigger="manual", dag_run_id=f"run-of-{holder}")
    assert ops.acquire_failover_lock(env.engine, PRIMARY, holder, mode="live")
    if closed:  # finalize closed the event, then the worker died before releasing the lock
        ops.finish_failover_event(env.engine, holder, outcome="failed", error="worker lost")


def _drill(env: FailoverEnv, run_id: str, **kwargs: Any) -> dict[str, Any]:
    return run_failover(env, FailoverRequest(primary_region=PRIMARY, mode="drill"), run_id=run_id,
                        allowed_primaries=[PRIMARY], **kwargs)


def test_lock_of_a_closed_failover_is_reclaimed(small_any_db) -> None:  # type: ignore[no-untyped-def]
    world, env = small_any_db
    _crashed_holder(env, "fo-crashed", closed=True)
    result = _drill(env, "after-crash")
    assert result["results"]["finalize"]["outcome"] == "succeeded"
    assert ops.failover_lock_holder(env.engine, PRIMARY) is None
    assert _instances(world.endpoint, **{T.FAILOVER_ID: result["failover_id"]}) == []  # torn down


def test_lock_of_a_running_failover_is_only_reclaimed_once_its_run_is_over(small) -> None:  # type: ignore[no-untyped-def]
    world, env = small
    _crashed_holder(env, "fo-running", closed=False)
    request = FailoverRequest(primary_region=PRIMARY, mode="drill")
    fid = failover_id("regional_failover", "second")
    # Running (or unknown to Airflow, e.g. a CLI run): the lock holds.
    for answer in (None, "running"):
        with pytest.raises(FailoverLocked, match="fo-running of us-east-1 is in progress"):
            steps.prepare(env, request, failover_id=fid, dag_run_id="second", allowed_primaries=[PRIMARY],
                          run_ended=lambda event, a=answer: a if a != "running" else None)
    assert ops.failover_lock_holder(env.engine, PRIMARY) == "fo-running"
    asked: list[str] = []

    def ended(event: ops.FailoverEvent) -> str | None:
        asked.append(event.failover_id)
        return "failed"

    state = steps.prepare(env, request, failover_id=fid, dag_run_id="second", allowed_primaries=[PRIMARY],
                          run_ended=ended)
    assert asked == ["fo-running"] and state.locked
    assert ops.failover_lock_holder(env.engine, PRIMARY) == fid
    assert steps.finalize(env, state)["lock_released"]
    # A holder without an event is a concurrent prepare between taking the lock and opening its event.
    assert ops.acquire_failover_lock(env.engine, PRIMARY, "fo-just-starting", mode="live")
    with pytest.raises(FailoverLocked):
        _drill(env, "blocked")
    assert ops.release_failover_lock(env.engine, PRIMARY, "fo-just-starting")
    # A failback lock as older versions named it (<failover id>/failback), its failback long finished.
    done = _drill(env, "old-failover")["failover_id"]
    ops.record_failover_step(env.engine, done, "failback", started_at=datetime.now(UTC),
                             finished_at=datetime.now(UTC), outcome="failed")
    assert ops.acquire_failover_lock(env.engine, PRIMARY, f"{done}/failback", mode="live")
    assert _drill(env, "after-old-failback")["results"]["finalize"]["outcome"] == "succeeded"


# ─────────────────────────────── the same, through Airflow (dag.test) ───────────────────────────────

def _dag(name: str):  # type: ignore[no-untyped-def]
    import runpy

    return runpy.run_path(str(DAGS / f"{name}.py"))[name]()


@pytest.fixture
def airflow_world(aws_conn_env: str, warehouse_conn_env: str, airflow_db: str):  # type: ignore[no-untyped-def]
    world = build_shadow_world(aws_conn_env, services=4, instances_per_service=1)
    engine = open_warehouse(warehouse_conn_env)
    store_blueprint(engine, world)
    return world, FailoverEnv(clients=FailoverClients.for_endpoint(aws_conn_env), engine=engine)


@pytest.mark.slow
def test_failed_failback_selection_leaves_no_lock(airflow_world) -> None:  # type: ignore[no-untyped-def]
    """Naming a failback (not a failover) is refused; the lock the failback took must not stay behind."""
    world, env = airflow_world
    ops.record_failover_event(env.engine, failover_id="fb-0123456789abcdef", primary_region=PRIMARY,
                              shadow_region=SHADOW, mode="live", trigger="manual",
                              plan={"kind": "failback", "failback_of": "fo-x"})
    ops.finish_failover_event(env.engine, "fb-0123456789abcdef", outcome="succeeded")
    run = _dag("regional_failback").test(run_conf={"primary_region": PRIMARY, "confirm_region": PRIMARY,
                                                   "failover_id": "fb-0123456789abcdef"})
    assert run.state == "failed"  # not "success" because the finalize leaf ran
    assert ops.failover_lock_holder(env.engine, PRIMARY) is None
    # Bad input is not retried: a retry fails the same way, only later.
    assert _tries(run) == {"select_failover": 1, "finalize": 1, "watcher": 1}


def _tries(run: Any) -> dict[str, int]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance.task_id, TaskInstance.try_number).filter(
            TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id,
            TaskInstance.try_number > 0).all()
    return dict(rows)


@pytest.mark.slow
def test_lock_of_a_dead_dag_run_is_reclaimed_by_the_next_run(airflow_world) -> None:  # type: ignore[no-untyped-def]
    """A run that died before its finalize released the lock (here: finalize itself crashes) leaves the lock
    and a 'running' event; Airflow knows that run is over, so the next failover reclaims the lock."""
    world, env = airflow_world
    original = steps.finalize

    def crash(env: FailoverEnv, state: steps.FailoverState) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("worker lost in finalize")  # no retry: the run ends with the lock held

    steps.finalize = crash
    try:
        first = _dag("regional_failover").test(run_conf={"primary_region": PRIMARY, "mode": "drill"})
    finally:
        steps.finalize = original
    assert first.state == "failed"
    (dead,) = ops.list_failover_events(env.engine, PRIMARY)
    assert dead.outcome == "running" and ops.failover_lock_holder(env.engine, PRIMARY) == dead.failover_id
    second = _dag("regional_failover").test(run_conf={"primary_region": PRIMARY, "mode": "drill"})
    assert second.state == "success"
    assert ops.failover_lock_holder(env.engine, PRIMARY) is None
    latest = ops.list_failover_events(env.engine, PRIMARY)[0]
    assert latest.failover_id != dead.failover_id and latest.outcome == "succeeded"


# ─────────────────────────────── a second live failover of a failed-over region ───────────────────────────────

def test_second_live_failover_refused_and_failover_failback_exclude_each_other(small) -> None:  # type: ignore[no-untyped-def]
    world, env = small
    first = _live(env, "first")["failover_id"]
    launched = len(_instances(world.endpoint))
    with pytest.raises(InputError, match=f"already failed over: live failover {first}") as info:
        _live(env, "second")
    assert info.value.field == "mode"
    assert len(_instances(world.endpoint)) == launched  # no second shadow beside the first
    assert ops.failover_lock_holder(env.engine, PRIMARY) is None
    # The same failover re-run (a cleared run) is not a second one; a drill never moves traffic: allowed.
    again = steps.prepare(env, FailoverRequest(primary_region=PRIMARY, mode="live", confirm_region=PRIMARY),
                          failover_id=first, dag_run_id="first", allowed_primaries=[PRIMARY])
    steps.finalize(env, again)
    assert _drill(env, "drill-while-failed-over")["results"]["finalize"]["outcome"] == "succeeded"
    # A failback runs (holds the lock under its own id): no failover meanwhile; traffic is not home yet.
    state = _open_failback(env, first, "fb")
    fb_id = state.extra["lock_id"]
    with pytest.raises(FailoverLocked, match=f"failover {fb_id} of us-east-1 is in progress"):
        _drill(env, "drill-during-failback")
    with pytest.raises(InputError, match="already failed over"):
        _live(env, "live-during-failback")
    # And a failover holding the lock keeps a failback out (its steps re-check the lock too).
    ops.release_failover_lock(env.engine, PRIMARY, fb_id)
    drill = steps.prepare(env, FailoverRequest(primary_region=PRIMARY, mode="drill"),
                          failover_id=failover_id("regional_failover", "drill-y"), dag_run_id="drill-y",
                          allowed_primaries=[PRIMARY])
    with pytest.raises(FailoverLocked, match=drill.failover_id):
        steps.take_lock(env, PRIMARY, fb_id, mode="live")
    with pytest.raises(FailoverLocked):
        fb.restore_traffic(env, state)
    assert [r for r in _records(world) if r.get("Failover") == "PRIMARY"][0]["ResourceRecords"][0]["Value"] \
        == world.shadow_lb_dns
    steps.finalize(env, drill)
    # Once failed back, a new live failover may run.
    steps.take_lock(env, PRIMARY, fb_id, mode="live")
    now = datetime.now(UTC)
    ops.record_health_observation(env.engine, primary_region=PRIMARY, healthy=True, checks=[], verdict="healthy",
                                  action="none", observed_at=now + timedelta(seconds=1))
    assert _full_failback(env, state, now=now + timedelta(minutes=11))["outcome"] == "succeeded"
    assert _live(env, "third")["results"]["finalize"]["outcome"] == "succeeded"


# ─────────────────────────────── a task cleared after its run released the lock ───────────────────────────────

def test_cleared_step_of_a_finished_failover_does_not_act_beside_another(small) -> None:  # type: ignore[no-untyped-def]
    world, env = small
    old = _drill(env, "old-drill")
    old_state = steps.FailoverState.from_dict(old["state"])
    assert ops.failover_lock_holder(env.engine, PRIMARY) is None
    # A live failover of the region is now in progress (holds the lock) …
    new_state = steps.prepare(env, FailoverRequest(primary_region=PRIMARY, mode="live", confirm_region=PRIMARY),
                              failover_id=failover_id("regional_failover", "new"), dag_run_id="new",
                              allowed_primaries=[PRIMARY])
    # … when someone clears the old drill's launch and network: they must not act beside it.
    with pytest.raises(FailoverLocked, match=f"{new_state.failover_id} of us-east-1 is in progress"):
        steps.launch(env, old_state)
    with pytest.raises(FailoverLocked):
        steps.configure_network(env, old_state)
    assert _instances(world.endpoint, **{T.FAILOVER_ID: old_state.failover_id}) == []
    assert ops.failover_lock_holder(env.engine, PRIMARY) == new_state.failover_id
    steps.finalize(env, new_state)
    # Free again: the cleared task re-takes the lock and its (cleared) finalize releases it.
    assert steps.launch(env, old_state)["instances"] == world.expected_instances
    assert ops.failover_lock_holder(env.engine, PRIMARY) == old_state.failover_id
    steps.teardown_drill(env, old_state)
    assert steps.finalize(env, old_state)["lock_released"]


# ─────────────────────────────── Route 53: an alias record goes home as it was ───────────────────────────────

PRIMARY_ELB_ZONE = "Z35SXDOTRQ7X7K"  # us-east-1 load balancers' canonical hosted zone


def _alias_world(aws: str, sqlite_url: str) -> tuple[ShadowWorld, FailoverEnv]:
    """The shop's record as an A alias to the primary's load balancer (how real ALBs are fronted)."""
    world = build_shadow_world(aws, services=4, instances_per_service=1)
    route53 = client("route53", PRIMARY, aws)
    old = _records(world)
    route53.change_resource_record_sets(HostedZoneId=world.hosted_zone_id, ChangeBatch={"Changes": [
        *({"Action": "DELETE", "ResourceRecordSet": r} for r in old),
        *({"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "A", "SetIdentifier": sid, "Failover": role,
            "AliasTarget": {"HostedZoneId": PRIMARY_ELB_ZONE, "DNSName": world.primary_target,
                            "EvaluateTargetHealth": True}}}
          for role, sid in (("PRIMARY", "shop-primary"), ("SECONDARY", "shop-secondary")))]})
    world.blueprint["traffic"]["records"][0]["type"] = "A"
    engine = open_warehouse(sqlite_url)
    store_blueprint(engine, world)
    return world, FailoverEnv(clients=FailoverClients.for_endpoint(aws), engine=engine, launch_timeout=60)


def test_failback_restores_an_alias_record_with_its_own_hosted_zone(aws: str, sqlite_url: str) -> None:
    world, env = _alias_world(aws, sqlite_url)
    before = {r["SetIdentifier"]: r for r in _records(world)}
    result = _live(env, "alias")
    moved = {r["SetIdentifier"]: r for r in _records(world)}
    assert moved["shop-primary"]["AliasTarget"]["DNSName"].rstrip(".") == world.shadow_lb_dns.rstrip(".")
    assert moved["shop-primary"]["AliasTarget"]["HostedZoneId"] != PRIMARY_ELB_ZONE  # the shadow ALB's zone
    # The traffic step is retried after it moved the records (its recorded "replaced" sets now show the shadow).
    retried = steps.FailoverState.from_dict(result["state"])
    steps.redirect_traffic(env, retried)
    steps.finalize(env, retried)  # cleared with its downstream: finalize runs (and releases the lock) again
    now = datetime.now(UTC)
    ops.record_health_observation(env.engine, primary_region=PRIMARY, healthy=True, checks=[], verdict="healthy",
                                  action="none", observed_at=now + timedelta(seconds=1))
    state = _open_failback(env, result["failover_id"], "fb-alias")
    assert _full_failback(env, state, now=now + timedelta(minutes=11))["outcome"] == "succeeded"
    home = {r["SetIdentifier"]: r for r in _records(world)}
    # PRIMARY exactly as before the failover: the primary's target in the primary ALB's zone, health evaluated.
    assert home["shop-primary"]["AliasTarget"] == before["shop-primary"]["AliasTarget"]
    assert home["shop-secondary"]["AliasTarget"]["DNSName"].rstrip(".") == world.shadow_lb_dns.rstrip(".")


# ─────────────────────────────── held up: a dry run changes nothing ───────────────────────────────

READ_ONLY = ("Describe", "Get", "List")


def test_dry_run_makes_no_mutating_call(small, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    """Every AWS action the dry run performed (recorded by tests/support/aws_recorder.py) reads, except the
    RunInstances DryRun probes, which create nothing; no lock is taken."""
    from tests.support.aws_recorder import RECORDER

    world, env = small
    # First what bypasses the trigger form (the CLI, a stale conf): the core names the field; nothing is
    # locked or recorded.
    bad = [(dict(primary_region="eu-west-9"), "primary_region"), (dict(mode="LIVE"), "mode"),
           (dict(mode="live", confirm_region="us-east-1 "[:-2]), "confirm_region"),
           (dict(blueprint_version=999), "blueprint_version"), (dict(shadow_region="eu-west-1"), "shadow_region"),
           (dict(detected_at="yesterday"), "detected_at"), (dict(detected_at="2999-01-01T00:00:00Z"), "detected_at"),
           (dict(capacity_percent=0), "capacity_percent"),
           (dict(trigger="cron"), "trigger")]
    for fields, field in bad:
        bad_request = FailoverRequest(**{"primary_region": PRIMARY, **fields})
        with pytest.raises(InputError) as info:
            steps.prepare(env, bad_request, failover_id="fo-bad", dag_run_id="bad", allowed_primaries=[PRIMARY])
        assert info.value.field == field, (fields, info.value)
    assert ops.list_failover_events(env.engine) == [] and ops.failover_lock_holder(env.engine, PRIMARY) is None
    records = _records(world)
    result = run_failover(env, FailoverRequest(primary_region=PRIMARY, mode="dry_run", reason="Ünïcødé ✓ 故障"),
                          run_id="dry ✓", allowed_primaries=[PRIMARY])
    assert result["results"]["finalize"]["outcome"] == "succeeded"
    used = {action for action, tests in RECORDER.calls["failover"].items() if request.node.nodeid in tests}
    if not used:
        pytest.skip("the AWS action recorder is not installed in this session")
    mutating = {a for a in used if not a.split(":", 1)[1].startswith(READ_ONLY)}
    # CreateTags: the recorder's IAM view of RunInstances' TagSpecifications (DryRun: nothing is created).
    assert mutating == {"ec2:RunInstances", "ec2:CreateTags"}, sorted(used)
    assert _instances(world.endpoint) == [] and _records(world) == records
    (event,) = ops.list_failover_events(env.engine, PRIMARY)
    assert event.mode == "dry_run" and "Ünïcødé ✓ 故障" in str(event.steps)
    assert ops.failover_lock_holder(env.engine, PRIMARY) is None


# ─────────────────────────────── the CLI runner: a failed teardown still finalizes ───────────────────────────────

def test_failed_drill_teardown_still_closes_the_event_and_releases_the_lock(  # type: ignore[no-untyped-def]
        small, monkeypatch: pytest.MonkeyPatch) -> None:
    """(Found with every AWS call throttled: the teardown gave up and the runner skipped finalize, leaving the
    event 'running' and the lock held, so every later failover of the region was refused.)"""
    from shadowing.failover import launcher

    world, env = small

    def throttled(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("teardown throttled to death")

    monkeypatch.setattr(launcher, "terminate_launched", throttled)
    with pytest.raises(RuntimeError, match="teardown throttled to death"):
        _drill(env, "teardown-fails")
    (event,) = ops.list_failover_events(env.engine, PRIMARY)
    # Not "succeeded": the drill's instances were left running.
    assert event.outcome == "failed" and "step teardown failed" in event.error
    assert ops.failover_lock_holder(env.engine, PRIMARY) is None


# ─────────────────────────────── held up: hostile Params ───────────────────────────────

@pytest.mark.parametrize("conf", [
    {"primary_region": "us-east1"},                       # a typo
    {"primary_region": "us‐east‐1"},                      # Unicode hyphens
    {"mode": "LIVE"}, {"mode": "live; drop table"},       # modes outside the enum
    {"capacity_percent": 0}, {"capacity_percent": 201}, {"capacity_percent": "100"},
    {"blueprint_version": 0}, {"trigger": "cron"},
])
def test_trigger_form_rejects_hostile_params(conf: dict[str, Any]) -> None:
    """Rejected by the Params schema before a run exists (what the trigger form and the REST API enforce)."""
    from airflow.sdk.definitions.param import ParamsDict

    from shadowing.orchestration.failover import failover_params

    params = ParamsDict(failover_params())
    good = {"primary_region": PRIMARY, "mode": "dry_run"}
    params.update(good)
    params.validate()
    for key, value in conf.items():
        with pytest.raises(Exception, match=key):  # ParamValidationError names the param
            params[key] = value


@pytest.mark.slow
def test_failover_of_a_missing_blueprint_version_fails_at_once(airflow_world) -> None:  # type: ignore[no-untyped-def]
    world, env = airflow_world
    run = _dag("regional_failover").test(run_conf={"primary_region": PRIMARY, "mode": "drill",
                                                   "blueprint_version": 999})
    assert run.state == "failed"
    tries = _tries(run)
    assert tries["prepare"] == 1 and tries["finalize"] == 1, tries  # no retry can make version 999 appear
    assert ops.list_failover_events(env.engine) == [] and ops.failover_lock_holder(env.engine, PRIMARY) is None
