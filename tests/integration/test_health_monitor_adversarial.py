"""Adversarial runs of the health monitor against the moto server: retried monitor tasks, a throttled or
refusing CloudWatch, malformed Variables (through the DAG's own steps and dag.test())."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.config import Config

from shadowing.aws.clients import client
from shadowing.errors import InputError
from shadowing.health import monitor
from shadowing.health.monitor import assess_region
from shadowing.health.policy import HealthPolicy
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.operations import (
    acquire_failover_lock,
    failover_lock_holder,
    finish_failover_event,
    record_failover_event,
    record_failover_step,
)
from shadowing.warehouse.store import auto_failover_decisions, recent_health_observations
from tests.support.health_alarm import MonitorClock, set_health_alarm

ROOT = Path(__file__).resolve().parents[2]

REGION = "us-east-1"
POLICY = HealthPolicy(failures_required=3, window=5, cooldown=timedelta(minutes=30))
T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _alarm(cloudwatch: Any, state: str) -> None:
    set_health_alarm(cloudwatch, REGION, state)


def _check(engine: Any, cloudwatch: Any, run: str, at: timedelta, **kw: Any) -> dict[str, Any]:
    """One monitor attempt of run ``run`` at T0 + ``at`` (a retry: same run, later)."""
    now = T0 + at
    return assess_region(engine, cloudwatch, REGION, policy=POLICY, auto_failover=kw.pop("auto", True), run_id=run,
                         now=now, trigger_run_id=f"sensor__{REGION}__{now:%Y%m%dT%H%M%S}", **kw)


def test_a_retried_check_counts_once(aws: str, warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    assert _check(engine, cw, "m1", timedelta(minutes=1))["action"] == "none"
    # the task is retried 5 s later (worker lost after the write): still ONE failing check, not two
    retry = _check(engine, cw, "m1", timedelta(minutes=1, seconds=5))
    assert (retry["action"], retry["healthy"]) == ("none", False)
    second = _check(engine, cw, "m2", timedelta(minutes=2))
    assert (second["action"], second["failing"], second["considered"]) == ("none", 2, 2)
    third = _check(engine, cw, "m3", timedelta(minutes=3))
    assert (third["action"], third["failing"]) == ("trigger", 3)
    assert len(recent_health_observations(engine, REGION, 10)) == 3  # the retry wrote nothing


def test_a_retry_after_a_recorded_trigger_reissues_the_same_trigger_once(aws: str, warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    for minute in (1, 2):
        _check(engine, cw, f"m{minute}", timedelta(minutes=minute))
    first = _check(engine, cw, "m3", timedelta(minutes=3))
    assert first["action"] == "trigger"
    # the attempt died after recording its trigger, before returning it: the retry must re-issue THE SAME
    # trigger (TriggerDagRunOperator skips an existing run id), not suppress it by its own cooldown (a
    # missed failover) nor mint a new run id (a second failover)
    retry = _check(engine, cw, "m3", timedelta(minutes=3, seconds=40))
    assert (retry["action"], retry["trigger_run_id"]) == ("trigger", first["trigger_run_id"])
    assert retry["detected_at"] == first["detected_at"]
    # the next run is in the cooldown; one trigger decision in the audit
    assert _check(engine, cw, "m4", timedelta(minutes=4))["action"] == "suppressed_cooldown"
    assert [d.run_id for d in auto_failover_decisions(engine, REGION, decision="trigger")] == ["m3"]


def test_a_cleared_old_trigger_is_never_reissued_behind_a_newer_one(aws: str, warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")

    def no_run(decision: Any) -> bool:  # every earlier trigger task failed: no failover run exists
        return False

    for minute in (1, 2):
        _check(engine, cw, f"m{minute}", timedelta(minutes=minute))
    first = _check(engine, cw, "m3", timedelta(minutes=3), trigger_took_effect=no_run)
    second = _check(engine, cw, "m4", timedelta(minutes=4), trigger_took_effect=no_run)
    assert (first["action"], second["action"]) == ("trigger", "trigger")
    # someone clears the old run m3 (its trigger task had failed): re-issuing its trigger now would queue a
    # second failover behind m4's
    old = _check(engine, cw, "m3", timedelta(minutes=4, seconds=30), trigger_took_effect=no_run)
    assert (old["action"], old["trigger_run_id"]) == ("suppressed_cooldown", None)
    assert f"replayed trigger {first['trigger_run_id']} not re-issued: a newer trigger superseded it (run m4" in \
        old["reason"]
    # m4 retried while a failover run is queued (its own, or a person's): nothing to re-issue either
    again = _check(engine, cw, "m4", timedelta(minutes=4, seconds=40), failover_dagrun_running=True)
    assert (again["action"], again["trigger_run_id"]) == ("suppressed_running", None)
    # m4 retried with nothing queued (its trigger task never ran): the same trigger again, as before
    retry = _check(engine, cw, "m4", timedelta(minutes=4, seconds=50))
    assert (retry["action"], retry["trigger_run_id"]) == ("trigger", second["trigger_run_id"])
    assert [d.run_id for d in auto_failover_decisions(engine, REGION, decision="trigger")] == ["m4", "m3"]


def test_an_attempt_dying_between_its_two_writes_is_completed_by_the_retry(
        aws: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_warehouse(sqlite_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    for minute in (1, 2):
        _check(engine, cw, f"m{minute}", timedelta(minutes=minute))
    real = monitor.record_auto_failover_decision

    def dies(*args: Any, **kwargs: Any) -> int:
        raise ConnectionError("warehouse connection lost")

    monkeypatch.setattr(monitor, "record_auto_failover_decision", dies)
    with pytest.raises(ConnectionError):
        _check(engine, cw, "m3", timedelta(minutes=3))
    monkeypatch.setattr(monitor, "record_auto_failover_decision", real)
    retry = _check(engine, cw, "m3", timedelta(minutes=3, seconds=30))
    assert retry["action"] == "trigger" and retry["trigger_run_id"] == f"sensor__{REGION}__20260101T120330"
    [decision] = auto_failover_decisions(engine, REGION, decision="trigger")
    assert decision.run_id == "m3" and decision.detail["trigger_run_id"] == retry["trigger_run_id"]
    assert _check(engine, cw, "m4", timedelta(minutes=4))["action"] == "suppressed_cooldown"


def test_a_throttled_cloudwatch_is_unknown_never_a_failover(aws: str, sqlite_url: str) -> None:
    from tests.support.fault_proxy import FaultProxy

    engine = open_warehouse(sqlite_url)
    _alarm(client("cloudwatch", REGION, aws), "OK")
    once = Config(retries={"max_attempts": 1, "mode": "standard"})
    with FaultProxy(aws, throttle_rate=1.0, throttle_services={"monitoring"}) as proxy:
        throttled = client("cloudwatch", REGION, proxy.url, config=once)
        results = [_check(engine, throttled, f"t{m}", timedelta(minutes=m)) for m in range(5)]
        assert proxy.stats["throttled"] >= 5
    assert [r["action"] for r in results] == ["none"] * 5
    assert [r["failing"] for r in results] == [0] * 5
    [last] = recent_health_observations(engine, REGION, 1)
    assert last.checks[0]["state"] == "THROTTLED" and last.checks[0]["healthy"] is None
    # the monitor is blind and says so: never "healthy"
    assert {r["healthy"] for r in results} == {None}
    assert last.detail.startswith("no readable signal (THROTTLED): unknown, not counted as failing")
    # the throttling left no failures behind: a real outage afterwards still needs its own 3 checks
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    assert [_check(engine, cw, f"a{m}", timedelta(minutes=10 + m))["action"] for m in range(3)] == \
        ["none", "none", "trigger"]


def test_an_unreachable_cloudwatch_still_counts_as_failing(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    dead = client("cloudwatch", REGION, "http://127.0.0.1:9",
                  config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    assert [_check(engine, dead, f"d{m}", timedelta(minutes=m))["action"] for m in range(3)] == \
        ["none", "none", "trigger"]


# ─────────────────────────────── the DAG's own steps: Variables → policy, probes, switch ───────────────────────────────

def _context(run_id: str) -> dict[str, Any]:
    ti = SimpleNamespace(get_dr_count=lambda **kw: 0)
    return {"params": {}, "run_id": run_id, "ti": ti}


@pytest.fixture
def monitor_env(aws_conn_env: str, warehouse_conn_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{REGION}=us-west-2")
    for name in ("SHADOWING_AUTO_FAILOVER", "SHADOWING_HEALTH_POLICY", "SHADOWING_HEALTH_PROBES"):
        monkeypatch.delenv(f"AIRFLOW_VAR_{name}", raising=False)
    _alarm(client("cloudwatch", REGION, aws_conn_env), "OK")
    return warehouse_conn_env


@pytest.mark.parametrize("probes", ['{"us-east-1": "https://shop.example/healthz"}', '["https://a/healthz"]',
                                    "https://a/healthz"])
def test_malformed_probes_variable_fails_the_check_naming_it_never_judges_the_region(
        monitor_env: str, monkeypatch: pytest.MonkeyPatch, probes: str) -> None:
    from shadowing.orchestration.health import assess

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_HEALTH_PROBES", probes)
    for minute in range(3):  # before: a bare string was probed letter by letter → 3 "failures" → a failover
        with pytest.raises(InputError, match="Variable shadowing_health_probes"):
            assess(REGION, _context(f"p{minute}"))
    engine = open_warehouse(monitor_env)
    assert [o for o in recent_health_observations(engine, REGION, 10) if not o.healthy] == []
    assert auto_failover_decisions(engine, REGION, decision="trigger") == []


@pytest.mark.parametrize(("policy", "message"), [
    ("3 of 5", "Variable shadowing_health_policy: not valid JSON"),
    ('{"failures_required": 6, "window": 5}', "Variable shadowing_health_policy field 'window'"),
    ('{"failures_required": 0}', "Variable shadowing_health_policy field 'failures_required'"),
    ('{"failures_required": "3"}', "Variable shadowing_health_policy field 'failures_required'"),
    ('{"cooldown_minutes": NaN}', "Variable shadowing_health_policy field 'cooldown_minutes'"),
    ('{"failures_required": 5, "windows": 10}', "Variable shadowing_health_policy field 'windows'"),
    ("[3, 5]", "Variable shadowing_health_policy: must be a JSON object"),
    ('"3/5"', "Variable shadowing_health_policy: must be a JSON object"),
])
def test_malformed_policy_variable_names_the_variable_and_field(
        monitor_env: str, monkeypatch: pytest.MonkeyPatch, policy: str, message: str) -> None:
    from shadowing.orchestration.health import assess

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_HEALTH_POLICY", policy)
    with pytest.raises(InputError) as err:
        assess(REGION, _context("p0"))
    assert str(err.value).startswith(message), str(err.value)


def test_policy_variable_and_params_merge(monitor_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowing.orchestration.health import policy_from

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_HEALTH_POLICY", '{"failures_required": 4, "window": 8}')
    assert policy_from({}) == HealthPolicy(4, 8, timedelta(minutes=30))
    assert policy_from({"failures_required": 2, "window": None, "cooldown_minutes": 0}) == \
        HealthPolicy(2, 8, timedelta(0))
    with pytest.raises(InputError, match=r"Variable shadowing_health_policy with Params \['window'\] field 'window'"):
        policy_from({"window": 3})


@pytest.mark.parametrize(("setting", "expected", "logged"), [
    ("not json", False, "not valid JSON"),
    ("null", False, None),
    ("true", False, "must be a JSON object"),
    ('"true"', False, "must be a JSON object"),
    ('{"us-east1": true}', False, "not primaries: ['us-east1']"),  # a typo: off, and said
    ('{"us-east-1": "true"}', True, None),
    ('{"us-east-1": "false"}', False, None),
    ('{"us-east-1": null}', False, None),
    ('{"us-east-1": 1}', False, None),
])
def test_the_auto_failover_switch_is_on_only_when_plainly_on(
        monitor_env: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, setting: str,
        expected: bool, logged: str | None) -> None:
    from shadowing.orchestration.health import assess

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", setting)
    with caplog.at_level(logging.ERROR, logger="shadowing.orchestration.health"):
        assess(REGION, _context("s0"))
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
                      and r.name == "shadowing.orchestration.health")
    if logged:
        assert logged in errors and "shadowing_auto_failover" in errors
    else:
        assert errors == ""
    engine = open_warehouse(monitor_env)
    switched = auto_failover_decisions(engine, REGION, decision="switch_enabled")
    assert bool(switched) is expected


# ─────────────────────────────── never two failovers for one outage ───────────────────────────────

@pytest.mark.parametrize(("mode", "outcome", "expected", "after_cooldown"), [
    ("live", "failed", "suppressed_cooldown", "trigger"),  # failed before moving traffic: the primary serves
    ("live", "succeeded", "suppressed_failed_over", "suppressed_failed_over"),  # the shadow serves
    ("drill", "succeeded", "trigger", None), ("dry_run", "succeeded", "trigger", None)])
def test_a_manual_live_failover_starts_the_cooldown(aws: str, warehouse_url: str, mode: str, outcome: str,
                                                    expected: str, after_cooldown: str | None) -> None:
    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    # a person failed the region over by hand (finished, lock released) before the monitor made up its mind
    record_failover_event(engine, failover_id="f-manual", primary_region=REGION, shadow_region="us-west-2",
                          mode=mode, trigger="manual", triggered_by="alice", started_at=T0)
    if outcome == "failed":
        record_failover_step(engine, "f-manual", "launch", started_at=T0, finished_at=T0 + timedelta(seconds=30),
                             outcome="failed", detail={"error": "InsufficientInstanceCapacity"})
    finish_failover_event(engine, "f-manual", outcome=outcome, finished_at=T0 + timedelta(minutes=1))
    _alarm(cw, "ALARM")  # the primary stays down after the failover: the monitor still judges it failed
    actions = [_check(engine, cw, f"m{m}", timedelta(minutes=m))["action"] for m in (1, 2, 3)]
    assert actions == ["none", "none", expected]
    if after_cooldown:  # once the cooldown of the manual failover is over, the monitor acts only if it failed
        assert _check(engine, cw, "m31", timedelta(minutes=30))["action"] == after_cooldown


@pytest.mark.parametrize(("holder", "outcome", "dagrun_running", "expected"), [
    ("f-crashed", "failed", False, "trigger"),  # finalize closed the event, its worker died before the release
    ("f-crashed", "running", False, "trigger"),  # its run was marked failed by hand: the event stays open
    ("f-crashed", "running", True, "suppressed_running"),  # its run may still be going
    ("fb-back", "running", False, "suppressed_running"),  # a failback's lock (a regional_failback run)
    ("f-cli", "running", False, "suppressed_running"),  # a CLI failover: no DAG run to ask about
    ("f-not-yet", None, False, "suppressed_running"),  # taken by a prepare that has not opened its event yet
])
def test_a_lock_left_by_a_failover_that_is_over_does_not_hold_back_the_next(
        aws: str, warehouse_url: str, holder: str, outcome: str | None, dagrun_running: bool, expected: str) -> None:
    """A worker killed in finalize, or a run marked failed by hand, never releases the region's lock. Counted as a
    running failover, it suppressed every later trigger of the region, for ever: the outage went unanswered."""
    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    if outcome is not None:
        record_failover_event(engine, failover_id=holder, primary_region=REGION, shadow_region="us-west-2",
                              mode="live", trigger="manual", triggered_by="alice", started_at=T0 - timedelta(days=1),
                              dag_run_id=None if holder == "f-cli" else f"manual__{holder}")
        if outcome != "running":  # it failed before moving traffic: the primary still serves
            record_failover_step(engine, holder, "launch", started_at=T0 - timedelta(days=1),
                                 finished_at=T0 - timedelta(days=1), outcome="failed")
            finish_failover_event(engine, holder, outcome=outcome, finished_at=T0 - timedelta(days=1))
    assert acquire_failover_lock(engine, REGION, holder, mode="live", now=T0 - timedelta(days=1))
    _alarm(cw, "ALARM")
    results = [_check(engine, cw, f"m{m}", timedelta(minutes=m), failover_dagrun_running=dagrun_running)
               for m in (1, 2, 3)]
    assert [r["action"] for r in results] == ["none", "none", expected]
    [decision] = auto_failover_decisions(engine, REGION)
    assert (decision.detail["stale_lock"] is not None) == (expected == "trigger")
    if expected == "trigger":
        assert f"failover lock, held by {holder}, is left over" in results[-1]["reason"]
    assert failover_lock_holder(engine, REGION) == holder  # the monitor only reads it: the failover run reclaims it


def _failover_as_recorded(engine: Any, failover_id: str, *, dag_run_id: str, started: datetime,
                          traffic_moved: bool, outcome: str) -> None:
    """The event rows regional_failover writes for a live run: prepare opens it, each step records itself,
    finalize closes it (verify failing after traffic moved: outcome failed, yet the shadow serves)."""
    record_failover_event(engine, failover_id=failover_id, primary_region=REGION, shadow_region="us-west-2",
                          mode="live", trigger="sensor", triggered_by="primary_health_monitor run m3",
                          started_at=started, detected_at=T0 + timedelta(minutes=1), dag_run_id=dag_run_id)
    at = started
    for step in ("preflight", "launch", "network", "traffic", "replication", "verify"):
        failed = step == ("traffic" if not traffic_moved else "verify") and outcome == "failed"
        record_failover_step(engine, failover_id, step, started_at=at, finished_at=at + timedelta(seconds=5),
                             outcome="failed" if failed else "succeeded")
        at += timedelta(seconds=5)
        if failed:
            break
    finish_failover_event(engine, failover_id, outcome=outcome, finished_at=at)


@pytest.mark.parametrize(("traffic_moved", "outcome"), [(True, "succeeded"), (True, "failed")])
def test_a_region_already_failed_over_is_never_failed_over_again_after_the_cooldown(
        aws: str, warehouse_url: str, traffic_moved: bool, outcome: str) -> None:
    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    actions = [_check(engine, cw, f"m{m}", timedelta(minutes=m)) for m in (1, 2, 3)]
    assert [a["action"] for a in actions] == ["none", "none", "trigger"]
    # the triggered failover ran and moved traffic to the shadow (verify may have failed after it); the
    # primary stays in ALARM: the outage is handled, now and long after the cooldown
    _failover_as_recorded(engine, "f-auto", dag_run_id=actions[-1]["trigger_run_id"],
                          started=T0 + timedelta(minutes=3, seconds=20), traffic_moved=traffic_moved,
                          outcome=outcome)
    later = [_check(engine, cw, f"m{m}", timedelta(minutes=m)) for m in (10, 40, 120)]
    assert [r["action"] for r in later] == ["suppressed_failed_over"] * 3
    assert "already failed over: failover f-auto" in later[-1]["reason"]
    assert "moved traffic to us-west-2 and was not failed back" in later[-1]["reason"]
    [trigger] = auto_failover_decisions(engine, REGION, decision="trigger")  # one failover for one outage
    assert trigger.run_id == "m3"
    suppressed = auto_failover_decisions(engine, REGION, decision="suppressed_failed_over")
    assert [(d.run_id, d.failover_id, d.detail["failed_over_by"]) for d in suppressed][0] == \
        ("m120", "f-auto", "f-auto")
    # a person fails back while the primary still alarms (a bad judgement, but theirs); once the failback
    # succeeded the shadow no longer serves: the monitor may fail over again after the failback's cooldown
    back_at = T0 + timedelta(minutes=130)
    record_failover_event(engine, failover_id="fb-1", primary_region=REGION, shadow_region="us-west-2", mode="live",
                          trigger="manual", triggered_by="alice", started_at=back_at,
                          plan={"kind": "failback", "failback_of": "f-auto"})
    record_failover_step(engine, "f-auto", "failback", started_at=back_at, detail={"failback_id": "fb-1"})
    assert _check(engine, cw, "m131", timedelta(minutes=131))["action"] == "suppressed_failed_over"  # under way
    finish_failover_event(engine, "fb-1", outcome="succeeded", finished_at=back_at + timedelta(minutes=2))
    record_failover_step(engine, "f-auto", "failback", finished_at=back_at + timedelta(minutes=2),
                         outcome="succeeded")
    assert _check(engine, cw, "m140", timedelta(minutes=140))["action"] == "suppressed_cooldown"
    assert _check(engine, cw, "m161", timedelta(minutes=161))["action"] == "trigger"


def test_a_live_failover_that_failed_before_moving_traffic_does_not_hold_the_region(
        aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    actions = [_check(engine, cw, f"m{m}", timedelta(minutes=m)) for m in (1, 2, 3)]
    _failover_as_recorded(engine, "f-auto", dag_run_id=actions[-1]["trigger_run_id"],
                          started=T0 + timedelta(minutes=3, seconds=20), traffic_moved=False, outcome="failed")
    assert _check(engine, cw, "m10", timedelta(minutes=10))["action"] == "suppressed_cooldown"
    retry = _check(engine, cw, "m34", timedelta(minutes=34))  # the primary still serves and is still down
    assert retry["action"] == "trigger"


class _DagRuns:
    """DAG runs as the monitor's task instance counts them (``ti.get_dr_count``): (dag_id, run_id) → state."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], str] = {}

    def get_dr_count(self, dag_id: str, logical_dates: Any = None, run_ids: list[str] | None = None,
                     states: list[str] | None = None) -> int:
        return sum(1 for (dag, run), state in self.state.items() if dag == dag_id
                   and (run_ids is None or run in run_ids) and (states is None or state in states))


def test_a_failed_trigger_starts_no_cooldown_but_a_queued_failover_still_suppresses(
        monitor_env: str, aws_conn_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowing.orchestration.health import assess

    FAILOVER_DAG_ID, MONITOR_DAG_ID = "regional_failover", "primary_health_monitor"  # noqa: N806
    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    _alarm(client("cloudwatch", REGION, aws_conn_env), "ALARM")
    engine = open_warehouse(monitor_env)
    runs = _DagRuns()
    clock = MonitorClock(monkeypatch, T0)

    def check(run_id: str, after: timedelta = timedelta(minutes=1)) -> dict[str, Any]:
        """One monitor run ``after`` the previous one: assess (its run is running meanwhile)."""
        clock.step(after)
        runs.state[(MONITOR_DAG_ID, run_id)] = "running"
        return assess(REGION, {"params": {}, "run_id": run_id, "ti": runs})

    assert [check(f"m{m}")["action"] for m in (1, 2)] == ["none", "none"]
    runs.state.update({(MONITOR_DAG_ID, "m1"): "success", (MONITOR_DAG_ID, "m2"): "success"})
    first = check("m3")
    assert first["action"] == "trigger"
    # the trigger task is still retrying (its monitor run has not finished): the trigger may yet take
    # effect, so a check meanwhile (a manual run, 40 s later) is in its cooldown — never a second trigger
    assert check("manual-1", timedelta(seconds=40))["action"] == "suppressed_cooldown"
    runs.state[(MONITOR_DAG_ID, "manual-1")] = "success"
    # the trigger task failed for good (the API refused it): no regional_failover run, monitor run failed
    runs.state[(MONITOR_DAG_ID, "m3")] = "failed"
    second = check("m4")
    assert second["action"] == "trigger", second["reason"]  # before: suppressed_cooldown for 30 minutes
    assert second["trigger_run_id"] != first["trigger_run_id"]
    assert first["trigger_run_id"] in second["reason"] and "created no failover run" in second["reason"]
    [decision, _] = auto_failover_decisions(engine, REGION, decision="trigger")
    assert decision.detail["triggers_without_run"] == [first["trigger_run_id"]]
    # this trigger created its run, queued behind nothing yet: the next check must not double it
    runs.state.update({(MONITOR_DAG_ID, "m4"): "success", (FAILOVER_DAG_ID, second["trigger_run_id"]): "queued"})
    assert check("m5")["action"] == "suppressed_running"
    runs.state[(MONITOR_DAG_ID, "m5")] = "success"
    # the failover run ended (failed in preflight, no traffic moved): its trigger took effect, so the cooldown
    # counts from it
    runs.state[(FAILOVER_DAG_ID, second["trigger_run_id"])] = "failed"
    third = check("m6")
    assert third["action"] == "suppressed_cooldown", third["reason"]


def _sync_dags() -> Any:
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    with create_session() as session:
        if session.get(DagBundleModel, "dags-folder") is None:
            session.add(DagBundleModel(name="dags-folder"))
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
    return bag


def _failover_runs(*states: str) -> list[Any]:
    """regional_failover's DAG runs in the (session-shared) metadata DB, optionally only in ``states``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(DagRun).filter(DagRun.dag_id == "regional_failover")
        return query.filter(DagRun.state.in_(states)).all() if states else query.all()


def _fail_runs(run_ids: list[str]) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == "regional_failover", DagRun.run_id.in_(run_ids)) \
            .update({DagRun.state: DagRunState.FAILED}, synchronize_session=False)


@pytest.mark.slow
def test_a_queued_manual_failover_is_never_doubled_by_the_monitor(
        monitor_env: str, aws_conn_env: str, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    bag = _sync_dags()
    # the metadata DB is shared by the session's tests; dag.test() never runs what they queued: end it
    _fail_runs([r.run_id for r in _failover_runs("queued", "running")])
    known = {r.run_id for r in _failover_runs()}
    manual_id = f"manual__adversarial__{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    # a person's live failover is queued (regional_failover runs one at a time): it holds no lock yet
    trigger_dag("regional_failover", triggered_by=DagRunTriggeredByType.TEST, run_id=manual_id,
                conf={"primary_region": REGION, "mode": "live", "confirm_region": REGION})
    try:
        _alarm(client("cloudwatch", REGION, aws_conn_env), "ALARM")
        dag = bag.get_dag("primary_health_monitor")
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        clock = MonitorClock(monkeypatch, datetime.now(UTC))
        runs = []
        for i in range(3):  # a minute apart, as the scheduler runs them
            clock.step()
            runs.append(dag.test(logical_date=start + timedelta(minutes=i)))
        assert [r.state for r in runs] == ["success"] * 3
        engine = open_warehouse(monitor_env)
        actions = [o.action for o in reversed(recent_health_observations(engine, REGION, 3))]
        assert actions == ["none", "none", "suppressed_running"]
        assert {r.run_id for r in _failover_runs()} - known == {manual_id}  # nothing queued behind it
        # the manual run ends without failing the region over (it failed): now the monitor does
        _fail_runs([manual_id])
        clock.step()
        assert dag.test(logical_date=start + timedelta(minutes=3)).state == "success"
        [trigger] = auto_failover_decisions(engine, REGION, decision="trigger")
        assert {r.run_id for r in _failover_runs()} - known == {manual_id, trigger.detail["trigger_run_id"]}
    finally:
        _fail_runs([r.run_id for r in _failover_runs("queued", "running") if r.run_id not in known])


@pytest.mark.slow
def test_a_failed_trigger_task_does_not_hold_back_the_failover(
        monitor_env: str, aws_conn_env: str, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.api_fastapi.execution_api.routes import dag_runs as execution_api
    from fastapi import HTTPException

    def refused(**kwargs: Any) -> None:  # what the API answers while regional_failover fails to import
        raise HTTPException(400, detail={"reason": "import_errors", "message": "Dag 'regional_failover' has import "
                                                                               "errors and cannot be triggered"})

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    bag = _sync_dags()
    _fail_runs([r.run_id for r in _failover_runs("queued", "running")])  # other tests' leftovers (shared DB)
    known = {r.run_id for r in _failover_runs()}
    try:
        _alarm(client("cloudwatch", REGION, aws_conn_env), "ALARM")
        dag = bag.get_dag("primary_health_monitor")
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
        clock = MonitorClock(monkeypatch, datetime.now(UTC))

        def run(i: int) -> Any:
            clock.step()
            return dag.test(logical_date=start + timedelta(minutes=i))

        with monkeypatch.context() as broken:
            broken.setattr(execution_api, "trigger_dag", refused)
            states = [run(i).state for i in range(3)]
        assert states == ["success", "success", "failed"]  # the trigger task failed: no failover run
        assert {r.run_id for r in _failover_runs()} - known == set()
        # the API accepts triggers again a minute later: the outage gets its failover now, not 30 minutes later
        assert run(3).state == "success"
        engine = open_warehouse(monitor_env)
        actions = [o.action for o in reversed(recent_health_observations(engine, REGION, 4))]
        assert actions == ["none", "none", "trigger", "trigger"]
        retried, refused_trigger = auto_failover_decisions(engine, REGION, decision="trigger")
        assert retried.detail["triggers_without_run"] == [refused_trigger.detail["trigger_run_id"]]
        assert {r.run_id for r in _failover_runs()} - known == {retried.detail["trigger_run_id"]}
        # that run is queued: the next check never doubles it
        assert run(4).state == "success"
        assert recent_health_observations(engine, REGION, 1)[0].action == "suppressed_running"
    finally:
        _fail_runs([r.run_id for r in _failover_runs("queued", "running") if r.run_id not in known])


# ─────────────────────────────── checks bunched together, stale, or from a clock that went back ───────────────────────────────

def test_monitor_runs_bunched_together_are_one_check(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    # someone triggers the monitor three times in 20 s to "see again": a 20-second blip is not 3 of 5 minutes
    bunched = [_check(engine, cw, f"manual{i}", timedelta(seconds=10 * i)) for i in range(3)]
    assert [r["action"] for r in bunched] == ["none"] * 3 and bunched[-1]["failing"] == 1
    spaced = [_check(engine, cw, f"m{m}", timedelta(minutes=m)) for m in (1, 2)]
    assert [r["action"] for r in spaced] == ["none", "trigger"] and spaced[-1]["failing"] == 3


def test_stale_failures_from_before_a_pause_do_not_count(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    assert [_check(engine, cw, f"m{m}", timedelta(minutes=m))["action"] for m in (0, 1)] == ["none", "none"]
    # the monitor was paused for three hours; the first check after it must not join yesterday's two
    later = [_check(engine, cw, f"r{m}", timedelta(hours=3, minutes=m), max_check_age=timedelta(minutes=10))
             for m in (0, 1, 2)]
    assert [r["action"] for r in later] == ["none", "none", "trigger"]
    assert later[0]["failing"] == 1 and later[-1]["detected_at"] == (T0 + timedelta(hours=3)).isoformat()


def test_a_clock_that_went_back_never_adds_up_future_checks(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    cw = client("cloudwatch", REGION, aws)
    _alarm(cw, "ALARM")
    for m in (0, 1):
        _check(engine, cw, f"m{m}", timedelta(minutes=m))
    # the host's clock is stepped back an hour: the two "future" checks are not counted with this one
    back = _check(engine, cw, "m2", timedelta(minutes=2) - timedelta(hours=1))
    assert (back["action"], back["failing"]) == ("none", 1)


def test_the_dag_path_judges_on_fresh_checks_only(monitor_env: str, aws_conn_env: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowing.orchestration.health import assess, max_check_age
    from shadowing.warehouse.operations import record_health_observation

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    engine = open_warehouse(monitor_env)
    assert max_check_age(POLICY) == timedelta(minutes=10)
    _alarm(client("cloudwatch", REGION, aws_conn_env), "ALARM")
    paused_at = datetime.now(UTC) - timedelta(hours=3)
    for m in (0, 1):  # what the monitor left before it was paused three hours ago
        record_health_observation(engine, primary_region=REGION, healthy=False, checks=[], verdict="degraded",
                                  action="none", run_id=f"old{m}", observed_at=paused_at + timedelta(minutes=m))
    result = assess(REGION, _context("fresh0"))
    assert (result["action"], result["failing"], result["considered"]) == ("none", 1, 1)
