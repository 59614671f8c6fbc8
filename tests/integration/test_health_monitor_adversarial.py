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
from shadowing.warehouse.store import auto_failover_decisions, recent_health_observations
from tests.support.health_alarm import set_health_alarm

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

@pytest.mark.parametrize(("mode", "expected"), [("live", "suppressed_cooldown"), ("drill", "trigger"),
                                                ("dry_run", "trigger")])
def test_a_manual_live_failover_starts_the_cooldown(aws: str, warehouse_url: str, mode: str,
                                                    expected: str) -> None:
    from shadowing.warehouse.operations import finish_failover_event, record_failover_event

    engine = open_warehouse(warehouse_url)
    cw = client("cloudwatch", REGION, aws)
    # a person failed the region over by hand (finished, lock released) before the monitor made up its mind
    record_failover_event(engine, failover_id="f-manual", primary_region=REGION, shadow_region="us-west-2",
                          mode=mode, trigger="manual", triggered_by="alice", started_at=T0)
    finish_failover_event(engine, "f-manual", outcome="succeeded", finished_at=T0 + timedelta(minutes=1))
    _alarm(cw, "ALARM")  # the primary stays down after the failover: the monitor still judges it failed
    actions = [_check(engine, cw, f"m{m}", timedelta(minutes=m))["action"] for m in (1, 2, 3)]
    assert actions == ["none", "none", expected]
    if mode == "live":  # once the cooldown of the manual failover is over, the monitor may act again
        assert _check(engine, cw, "m31", timedelta(minutes=30))["action"] == "trigger"


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


@pytest.mark.slow
def test_a_queued_manual_failover_is_never_doubled_by_the_monitor(
        monitor_env: str, aws_conn_env: str, airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType

    def failover_runs(*states: str) -> list[DagRun]:
        with create_session() as session:
            query = session.query(DagRun).filter(DagRun.dag_id == "regional_failover")
            return query.filter(DagRun.state.in_(states)).all() if states else query.all()

    def fail_runs(run_ids: list[str]) -> None:
        with create_session() as session:
            session.query(DagRun).filter(DagRun.dag_id == "regional_failover", DagRun.run_id.in_(run_ids)) \
                .update({DagRun.state: DagRunState.FAILED}, synchronize_session=False)

    monkeypatch.setenv("AIRFLOW_VAR_SHADOWING_AUTO_FAILOVER", json.dumps({REGION: True}))
    bag = _sync_dags()
    # the metadata DB is shared by the session's tests; dag.test() never runs what they queued: end it
    fail_runs([r.run_id for r in failover_runs("queued", "running")])
    known = {r.run_id for r in failover_runs()}
    manual_id = f"manual__adversarial__{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    # a person's live failover is queued (regional_failover runs one at a time): it holds no lock yet
    trigger_dag("regional_failover", triggered_by=DagRunTriggeredByType.TEST, run_id=manual_id,
                conf={"primary_region": REGION, "mode": "live", "confirm_region": REGION})
    try:
        _alarm(client("cloudwatch", REGION, aws_conn_env), "ALARM")
        dag = bag.get_dag("primary_health_monitor")
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        runs = [dag.test(logical_date=start + timedelta(minutes=i)) for i in range(3)]
        assert [r.state for r in runs] == ["success"] * 3
        engine = open_warehouse(monitor_env)
        actions = [o.action for o in reversed(recent_health_observations(engine, REGION, 3))]
        assert actions == ["none", "none", "suppressed_running"]
        assert {r.run_id for r in failover_runs()} - known == {manual_id}  # nothing queued behind it
        # the manual run ends without failing the region over (it failed): now the monitor does
        fail_runs([manual_id])
        assert dag.test(logical_date=start + timedelta(minutes=3)).state == "success"
        [trigger] = auto_failover_decisions(engine, REGION, decision="trigger")
        assert {r.run_id for r in failover_runs()} - known == {manual_id, trigger.detail["trigger_run_id"]}
    finally:
        fail_runs([r.run_id for r in failover_runs("queued", "running") if r.run_id not in known])


# ─────────────────────────────── checks bunched together, stale, or from a clock that went back ───────────────────────────────

@pytest.mark.xfail(strict=True, reason=(
    "checks are not spaced: three manual monitor runs within 20 s count as 3 of 5. Counting at most one check "
    "per half interval (wall clock) would fix it, but test_health_monitor.py's dag.test() test relies on "
    "four runs seconds apart counting as four minutes: that test would have to freeze or step the clock"))
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
