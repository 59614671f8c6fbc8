"""capacity_profiler as a whole under adversarial schedules and faults: dag.test() against the moto server.

The user is an SRE who trusts the region's latest *valid* fingerprint at failover time. Every test publishes its
own datapoints (a value unique per instance × metric × minute, always valid) for a few tagged instances, runs the
real DAG, and compares what the warehouse readers return with one fold of exactly the points that should be in
it: no point twice, none lost, the window never moving backwards, the Asset event only for what landed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shadowing.aws.clients import client
from tests.integration.test_capacity_extraction_adversarial import _launch, _publish

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
T = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # a whole hour
SERVICES = {"api": 2, "db": 1}
# Minute samples from the first run on (60 s bootstrap), so that counts are exact: instances × minutes.
CONF = {"bootstrap_hours": 10 / 60, "bootstrap_period_seconds": 60, "period_seconds": 60, "window_periods": 10}


# ── helpers ───────────────────────────────────────────────────────────────────────────────────────────────

def _dag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "capacity_profiler.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["capacity_profiler"]


@pytest.fixture
def warehouse(warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The DAG's warehouse connection on SQLite and on the real PostgreSQL."""
    monkeypatch.setenv("AIRFLOW_CONN_SHADOWING_WAREHOUSE",
                       json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": warehouse_url}}))
    return warehouse_url


def _world(endpoint: str, minutes: range, region: str = REGION) -> dict[str, list[str]]:
    """Tagged instances of SERVICES in ``region``, each publishing every canonical metric each minute."""
    ec2, cw = client("ec2", region, endpoint), client("cloudwatch", region, endpoint)
    ids = {svc: _launch(ec2, n, svc) for svc, n in SERVICES.items()}
    _publish(cw, [i for svc in ids.values() for i in svc], minutes, start=T)
    return ids


def _rows(url: str, region: str = REGION) -> list[dict[str, Any]]:
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.tables import capacity_fingerprints as t

    with open_warehouse(url).connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).where(t.c.region == region).order_by(t.c.id)).mappings()]


def _latest(url: str, region: str = REGION) -> Any:
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.store import latest_valid_fingerprint

    return latest_valid_fingerprint(open_warehouse(url), region)


def _reference(endpoint: str, start: datetime, end: datetime, region: str = REGION) -> dict[str, Any]:
    """One fold of [start, end) read at once: what any sequence of runs covering it must converge to."""
    from shadowing.capacity.fingerprint import ProfileParams, fold
    from shadowing.metrics.cloudwatch import extract

    cols = extract(client("cloudwatch", region, endpoint), client("ec2", region, endpoint), region=region,
                   start=start, end=end, period=60, window_periods=None)
    return fold(None, cols, window=(start.timestamp(), end.timestamp()), region=region,
                params=ProfileParams(step_seconds=60))


EXACT = ("count", "min", "max", "p50", "p90", "p95", "p99")


def _assert_converged(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Same window and, per service × metric, the same data: exact counts, extremes and (merged sketch)
    quantiles; moments within float rounding of a different merge order."""
    assert got["window"] == want["window"]
    assert set(got["services"]) == set(want["services"])
    for svc, w in want["services"].items():
        g = got["services"][svc]
        assert g["instances"]["distinct"] == w["instances"]["distinct"], svc
        for part in ("metrics", "aggregate"):
            assert set(g[part]) == set(w[part]), (svc, part)
            for metric, wm in w[part].items():
                gm = g[part][metric]
                for stat in EXACT:
                    assert gm[stat] == wm[stat], (svc, part, metric, stat, gm[stat], wm[stat])
                assert gm["mean"] == pytest.approx(wm["mean"], rel=1e-9), (svc, part, metric)
                assert gm["std"] == pytest.approx(wm["std"], rel=1e-6, abs=1e-9), (svc, part, metric)


def _asset_events(run_ids: list[str]) -> list[dict[str, Any]]:
    """The CAPACITY_FINGERPRINTS events the given runs published (Airflow's metadata DB), oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from shadowing.orchestration.assets import CAPACITY_FINGERPRINTS

    with create_session() as session:
        q = sa.select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(
            AssetModel.uri == CAPACITY_FINGERPRINTS.uri, AssetEvent.source_dag_id == "capacity_profiler")
        events = session.scalars(q.order_by(AssetEvent.id)).all()
        return [{"run_id": e.source_run_id, "map_index": e.source_map_index, "extra": dict(e.extra or {})}
                for e in events if e.source_run_id in run_ids]


ON_TIME = timedelta(seconds=200)  # a punctual run: a little after its interval's end plus the settle time


@pytest.fixture
def on_time_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock as the refresh sees it: ON_TIME after the running task's interval end (the tests replay
    2025; at today's clock every window would be an old interval). A test may still set its own (``_clock``)."""
    from shadowing.orchestration import capacity

    real = capacity._utcnow

    def now() -> datetime:
        from airflow.sdk import get_current_context

        try:
            ctx = get_current_context()
        except RuntimeError:  # called outside a task
            return real()
        return (ctx.get("data_interval_end") or ctx["logical_date"]) + ON_TIME

    monkeypatch.setattr(capacity, "_utcnow", now)


@pytest.fixture
def env(aws_conn_env: str, airflow_db: str, on_time_clock: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """An emptied emulator behind `aws_default`, Airflow's metadata DB, one primary region; the endpoint URL."""
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{REGION}=us-west-2")
    return aws_conn_env


def _fast_retries(dag: Any, retries: int = 2) -> None:
    """The DAG's retries, without their 30 s delay (dag.test waits for a retry to become due)."""
    task = dag.task_dict["profile_region"]
    task.retries, task.retry_delay, task.retry_exponential_backoff = retries, timedelta(0), False


def _states(run: Any) -> dict[int, tuple[str, int]]:
    """map index → (final state, tries) of the run's profile_region instances."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = run.get_task_instances(session=session)
        return {ti.map_index: (str(ti.state), ti.try_number) for ti in tis}


# ── tests ─────────────────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.slow
def test_reruns_overlapping_manual_and_out_of_order_runs_converge_to_one_fold(env: str, warehouse: str) -> None:
    """Run T; T again (a clear); a manual run off the grid (T+7:33); the scheduled T+5 after it (an older
    interval now); T+10. The readers end with exactly one fold of [T-10, T+10): no point twice, none lost;
    each run stores at most one row and the window end never goes back."""
    _world(env, range(-10, 20))
    dag = _dag()
    ends = []
    for logical in (T, T, T + timedelta(minutes=7, seconds=33), T + timedelta(minutes=5), T + timedelta(minutes=10)):
        assert dag.test(logical_date=logical, run_conf=CONF).state == "success", logical
        ends.append(_latest(warehouse).payload["window"]["end"])
    assert ends == ["2025-06-02T12:00:00Z", "2025-06-02T12:00:00Z", "2025-06-02T12:07:00Z", "2025-06-02T12:07:00Z",
                    "2025-06-02T12:10:00Z"]
    rows = _rows(warehouse)
    assert [(r["valid"], r["window_start"].minute, r["window_end"].minute) for r in rows] == \
        [(True, 50, 0), (True, 0, 7), (True, 7, 10)]  # the rerun and the older run stored nothing
    latest = _latest(warehouse)
    assert latest.id == rows[-1]["id"] and latest.payload["folds"] == 2
    _assert_converged(latest.payload, _reference(env, T - timedelta(minutes=10), T + timedelta(minutes=10)))
    assert latest.payload["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * 20


def _with_engine_hook(monkeypatch: pytest.MonkeyPatch, hook: Any) -> None:
    """Every warehouse engine the task opens gets ``hook(engine)`` applied (SQLAlchemy event listeners)."""
    from shadowing.orchestration import clients

    real = clients.warehouse_engine

    def engine(*args: Any, **kwargs: Any) -> Any:
        e = real(*args, **kwargs)
        hook(e)
        return e

    monkeypatch.setattr(clients, "warehouse_engine", engine)


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["while-inserting", "after-commit"])
def test_a_worker_crash_around_the_store_converges_on_retry(env: str, warehouse: str, crash: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The first try dies with its fingerprint computed: inside the INSERT's transaction (rolled back), or just
    after it committed. The retry stores nothing twice: one valid row, the same data as one clean run, and one
    Asset event naming the row that landed."""
    from shadowing.warehouse import store

    _world(env, range(-10, 5))
    crashed: list[str] = []
    if crash == "while-inserting":
        def arm(engine: Any) -> None:
            def boom(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                if statement.lstrip().upper().startswith("INSERT INTO CAPACITY_FINGERPRINTS") and not crashed:
                    crashed.append(statement)
                    raise RuntimeError("worker lost while storing")
            sa.event.listen(engine, "after_cursor_execute", boom)
        _with_engine_hook(monkeypatch, arm)
    else:
        real_store = store.store_fingerprint

        def store_then_die(*args: Any, **kwargs: Any) -> Any:
            saved = real_store(*args, **kwargs)
            if not crashed:
                crashed.append(str(saved.id))
                raise RuntimeError("worker lost after the commit")
            return saved
        monkeypatch.setattr(store, "store_fingerprint", store_then_die)
    dag = _dag()
    _fast_retries(dag)
    run = dag.test(logical_date=T + timedelta(minutes=5), run_conf=CONF)
    assert run.state == "success"
    assert crashed and _states(run) == {0: ("success", 2)}  # the crash happened, and a retry recovered
    rows = _rows(warehouse)
    assert len(rows) == 1 and rows[0]["valid"], rows
    _assert_converged(_latest(warehouse).payload, _reference(env, T - timedelta(minutes=5), T + timedelta(minutes=5)))
    assert [e["extra"] for e in _asset_events([run.run_id])] == [{"region": REGION, "fingerprint_id": rows[0]["id"]}]


@pytest.mark.slow
def test_a_failed_validation_keeps_the_last_valid_fingerprint_and_the_next_run_folds_from_it(
        env: str, warehouse: str) -> None:
    """One api instance's CPU agent reports 250 % for a minute: 1 of the 10 api CPU rows of T..T+5 (over the
    5 % rejected-share limit). That run fails naming service and metric, without retries, stores the invalid
    row for audit, publishes nothing; readers keep returning the bootstrap. Once good minutes dilute the bad
    one (1 of 30 rows), the next run folds [T, T+15) into the last VALID fingerprint, the 250 % minute dropped
    and reported, never into the invalid one (which would have counted T..T+5 twice)."""
    from shadowing.metrics.names import INSTANCE_DIMENSION, METRICS

    ids = _world(env, range(-10, 15))
    cpu = METRICS["cpu_utilization"]
    client("cloudwatch", REGION, env).put_metric_data(Namespace=cpu.namespace, MetricData=[{
        "MetricName": cpu.cloudwatch_name, "Dimensions": [{"Name": INSTANCE_DIMENSION, "Value": ids["api"][0]}],
        "Timestamp": T + timedelta(minutes=2, seconds=30), "Value": 250.0, "Unit": cpu.unit}])
    dag = _dag()
    _fast_retries(dag)
    good = dag.test(logical_date=T, run_conf=CONF)
    first = _latest(warehouse)
    bad = dag.test(logical_date=T + timedelta(minutes=5), run_conf=CONF)
    assert (good.state, bad.state) == ("success", "failed")
    assert _states(bad) == {0: ("failed", 1)}  # deterministic: not retried
    rows = _rows(warehouse)
    assert [r["valid"] for r in rows] == [True, False]
    assert any("api/*/cpu_utilization" in e and "rejected_share" in e for e in rows[1]["errors"]), rows[1]["errors"]
    assert rows[1]["payload"]["quality"]["rejected_rows"] == {"api": {"cpu_utilization": 1}}
    assert _latest(warehouse).id == first.id  # what a failover would read
    assert _asset_events([bad.run_id]) == []

    recovered = dag.test(logical_date=T + timedelta(minutes=15), run_conf=CONF)
    assert recovered.state == "success"
    latest = _latest(warehouse)
    assert latest.id == _rows(warehouse)[-1]["id"] != rows[1]["id"]
    assert latest.payload["folds"] == first.payload["folds"] + 1  # folded into the bootstrap
    assert latest.payload["quality"]["rejected_rows"] == {"api": {"cpu_utilization": 1}}
    want = _reference(env, T - timedelta(minutes=10), T + timedelta(minutes=15))
    _assert_converged(latest.payload, want)
    assert latest.payload["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * 25 - 1
    assert latest.payload["services"]["api"]["metrics"]["cpu_utilization"]["max"] < 100


def _failing_region(monkeypatch: pytest.MonkeyPatch, region: str, code: str, status: int) -> list[str]:
    """CloudWatch of ``region`` answers every call with the AWS error ``code`` (JSON protocol); returns the
    operations refused."""
    from botocore.awsrequest import AWSResponse

    from shadowing.orchestration import clients
    from tests.integration.test_capacity_extraction_adversarial import _Body

    refused: list[str] = []
    real = clients.aws_client

    def aws_client(service: str, name: str, *args: Any, **kwargs: Any) -> Any:
        c = real(service, name, *args, **kwargs)
        if service == "cloudwatch" and name == region:
            def deny(request: Any, event_name: str, **_: Any) -> AWSResponse:
                refused.append(event_name.rsplit(".", 1)[-1])
                body = json.dumps({"__type": code, "message": f"{code} (injected)"}).encode()
                return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.0"}, _Body(body))
            c.meta.events.register("before-send.cloudwatch", deny)
        return c

    monkeypatch.setattr(clients, "aws_client", aws_client)
    return refused


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["untagged", "aws-error"])
def test_one_failing_region_does_not_stop_the_other_from_landing(env: str, warehouse_conn_env: str, failure: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Two primaries mapped; eu-west-1 has no tagged instance (a configuration error: failed at once) or its
    CloudWatch refuses every call (retried, then failed). us-east-1's fingerprint lands all the same, and the
    Asset event is published for us-east-1 only."""
    other = "eu-west-1"
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{REGION}=us-west-2,{other}=eu-central-1")
    _world(env, range(-10, 0))
    refused: list[str] = []
    if failure == "aws-error":
        _world(env, range(-10, 0), region=other)
        refused = _failing_region(monkeypatch, other, "AccessDeniedException", 400)
    dag = _dag()
    _fast_retries(dag)
    run = dag.test(logical_date=T, run_conf=CONF)
    assert run.state == "failed"
    tries = 1 if failure == "untagged" else 3
    assert _states(run) == {0: ("success", 1), 1: ("failed", tries)}
    assert bool(refused) == (failure == "aws-error")
    assert _latest(warehouse_conn_env) is not None and _latest(warehouse_conn_env, other) is None
    assert _rows(warehouse_conn_env, other) == []
    events = _asset_events([run.run_id])
    assert [(e["map_index"], e["extra"]["region"]) for e in events] == [(0, REGION)]
    assert events[0]["extra"]["fingerprint_id"] == _latest(warehouse_conn_env).id


class _Clock:
    """The ``time`` module as botocore's endpoint sees it, with ``sleep`` only adding up the delays asked for."""

    def __init__(self, flaky: _Flaky) -> None:
        import time

        self._time, self._flaky = time, flaky

    def sleep(self, seconds: float) -> None:
        self._flaky.backoff += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._time, name)


class _Flaky:
    """About ``share`` of every CloudWatch and EC2 HTTP attempt of the task's clients answered with the service's
    real throttling error (CloudWatch: JSON ``Throttling``; EC2: XML ``RequestLimitExceeded``), seeded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, share: float, seed: int = 7) -> None:
        import random

        from shadowing.orchestration import clients

        self.random = random.Random(seed)
        self.share = share
        self.attempts = 0
        self.throttled: dict[str, int] = {}
        real = clients.aws_client

        def aws_client(service: str, region: str, *args: Any, **kwargs: Any) -> Any:
            c = real(service, region, *args, **kwargs)
            c.meta.events.register(f"before-send.{c.meta.service_model.service_id.hyphenize()}", self._send)
            return c

        monkeypatch.setattr(clients, "aws_client", aws_client)
        # botocore's backoff before each retry is added up, and the adaptive mode's pacing after a throttle is not
        # waited for: they would be nearly all of the test's time, and what is tested is the result
        self.backoff = 0.0
        monkeypatch.setattr("botocore.endpoint.time", _Clock(self))
        monkeypatch.setattr("botocore.retries.bucket.TokenBucket._sleep_amount", lambda *_: 0.0)

    def _send(self, request: Any, event_name: str, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        from tests.integration.test_capacity_extraction_adversarial import _Body

        self.attempts += 1
        if self.random.random() >= self.share:
            return None
        operation = event_name.rsplit(".", 1)[-1]
        self.throttled[operation] = self.throttled.get(operation, 0) + 1
        if ".ec2." in event_name:
            body = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
                    b"</Message></Error></Errors><RequestID>injected</RequestID></Response>")
            return AWSResponse(request.url, 503, {"Content-Type": "text/xml"}, _Body(body))
        body = json.dumps({"__type": "Throttling", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Body(body))


@pytest.mark.slow
def test_throttling_across_the_whole_run_still_folds_every_point_once(env: str, warehouse_conn_env: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """30 % of every AWS attempt of the task (DescribeInstances, ListMetrics, GetMetricData) throttled, over a
    bootstrap and a fold, each read in two windows: both runs succeed on their first try, and the
    result is exactly the unthrottled fold."""
    _world(env, range(-10, 10))
    flaky = _Flaky(monkeypatch, 0.3)
    dag = _dag()
    conf = {**CONF, "window_periods": 5}
    runs = [dag.test(logical_date=T + timedelta(minutes=m), run_conf=conf) for m in (0, 10)]
    assert [r.state for r in runs] == ["success", "success"]
    assert [_states(r) for r in runs] == [{0: ("success", 1)}] * 2  # botocore's retries absorbed it
    assert {"DescribeInstances", "GetMetricData", "ListMetrics"} <= set(flaky.throttled), flaky.throttled
    assert sum(flaky.throttled.values()) >= 0.2 * flaky.attempts and flaky.backoff > 0
    _assert_converged(_latest(warehouse_conn_env).payload,
                      _reference(env, T - timedelta(minutes=10), T + timedelta(minutes=10)))


# ── bugs found (each test failed before its fix) ──────────────────────────────────────────────────────────────

@pytest.mark.slow
def test_the_asset_event_is_published_only_for_a_fingerprint_that_landed(env: str, warehouse_conn_env: str) -> None:
    """Regression: every successful task published CAPACITY_FINGERPRINTS, also a run that stored nothing (a
    re-run, a late run of an older interval) — each of which triggered shadow_blueprints for nothing. Such a run
    is now skipped; the run that stored the fingerprint published it once."""
    _world(env, range(-10, 0))
    dag = _dag()
    first = dag.test(logical_date=T, run_conf=CONF)
    again = dag.test(logical_date=T, run_conf=CONF)  # cleared and run again
    older = dag.test(logical_date=T - timedelta(minutes=5), run_conf=CONF)  # an older interval, run late
    assert [r.state for r in (first, again, older)] == ["success"] * 3
    assert (_states(again), _states(older)) == ({0: ("skipped", 1)}, {0: ("skipped", 1)})
    (row,) = _rows(warehouse_conn_env)
    events = _asset_events([first.run_id, again.run_id, older.run_id])
    assert [(e["run_id"], e["extra"]) for e in events] == [(first.run_id, {"region": REGION, "fingerprint_id": row["id"]})]


def _clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """The wall clock as the refresh sees it (dag.test runs tasks in this process)."""
    from shadowing.orchestration import capacity

    monkeypatch.setattr(capacity, "_utcnow", lambda: at, raising=False)


@pytest.mark.slow
def test_points_ingested_after_their_run_and_future_logical_dates_are_not_lost(
        env: str, warehouse_conn_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a run read up to its logical time, so the last minute or two (still being ingested by
    CloudWatch; the demo world publishes a minute once it is over) were read empty, and when they landed the
    next fold dropped them as late: lost for ever, in every run. A run with a logical date ahead of the clock
    (a manual trigger) moved the window into the future, and everything published until then was lost.
    Runs now read only up to settle_seconds (180) before the wall clock."""
    ids = _world(env, range(-10, -1))  # at T+20 s, minute T-1 is not in CloudWatch yet
    dag = _dag()
    every = [i for svc in ids.values() for i in svc]
    cw = client("cloudwatch", REGION, env)

    def run(logical: datetime, clock: datetime) -> Any:
        _clock(monkeypatch, clock)
        return dag.test(logical_date=logical, run_conf=CONF)

    assert run(T, T + timedelta(seconds=20)).state == "success"
    _publish(cw, every, range(-1, 4), start=T)  # T-1 lands; T..T+3 are in by T+5
    assert run(T + timedelta(minutes=5), T + timedelta(minutes=5, seconds=20)).state == "success"
    # a manual run with a logical date half an hour ahead of the clock
    assert run(T + timedelta(minutes=35), T + timedelta(minutes=5, seconds=40)).state == "success"
    _publish(cw, every, range(4, 40), start=T)
    assert run(T + timedelta(minutes=40), T + timedelta(minutes=40, seconds=20)).state == "success"
    latest = _latest(warehouse_conn_env)
    window = {k: datetime.fromisoformat(v.replace("Z", "+00:00")) for k, v in latest.payload["window"].items()}
    _assert_converged(latest.payload, _reference(env, window["start"], window["end"]))  # nothing lost
    assert window["end"] <= T + timedelta(minutes=40, seconds=20) - timedelta(seconds=180)
    minutes = (window["end"] - T).total_seconds() / 60 + 10
    assert latest.payload["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * minutes


@pytest.mark.slow
def test_a_restart_after_a_long_pause_reads_like_a_bootstrap(env: str, warehouse_conn_env: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: after a pause longer than max_gap, the restart read all of max_gap at the fine period: with
    the defaults a week of minutes, 1 680 GetMetricData calls per 500 queries (60 times the bootstrap's calls
    and billed metrics; and nothing at all on AWS beyond 15 days, where 1-minute data is gone). It now reads at
    the bootstrap period, folded into the old fingerprint, and the folds go on at the fine period after it."""
    from shadowing.orchestration import clients

    hourly = {**CONF, "bootstrap_hours": 1.0, "bootstrap_period_seconds": 3600, "max_gap_hours": 2.0,
              "window_periods": 6}
    later = T + timedelta(hours=6)
    ids = _world(env, range(-60, 0))
    _publish(client("cloudwatch", REGION, env), [i for svc in ids.values() for i in svc], range(-150, 5),
             start=later)
    calls: list[str] = []
    real = clients.aws_client

    def counted(service: str, region: str, *args: Any, **kwargs: Any) -> Any:
        c = real(service, region, *args, **kwargs)
        c.meta.events.register("provide-client-params.cloudwatch.GetMetricData", lambda **_: calls.append(service))
        return c

    monkeypatch.setattr(clients, "aws_client", counted)
    dag = _dag()
    assert dag.test(logical_date=T, run_conf=hourly).state == "success"
    calls.clear()
    assert dag.test(logical_date=later + timedelta(minutes=2), run_conf=hourly).state == "success"
    restart = _latest(warehouse_conn_env)
    assert len(calls) == 1  # two hourly periods in one call (at 60 s: 20 calls of 6 minutes)
    assert restart.payload["window"] == {"start": "2025-06-02T11:00:00Z", "end": "2025-06-02T18:00:00Z"}
    assert (restart.window_start, restart.window_end) == (later - timedelta(hours=2), later)
    assert restart.payload["warnings"][0].startswith("interval: last valid fingerprint ends")
    # one hourly sample per series for the bootstrap's hour, two for the restart's
    assert restart.payload["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * 3
    assert dag.test(logical_date=later + timedelta(minutes=5), run_conf=hourly).state == "success"
    after = _latest(warehouse_conn_env)
    assert after.payload["window"]["end"] == "2025-06-02T18:05:00Z" and after.payload["folds"] == 2
    assert after.payload["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * (3 + 5)


@pytest.mark.slow
def test_a_misspelt_region_fails_at_once_and_the_other_region_lands(env: str, warehouse_conn_env: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a primary region misspelt in SHADOWING_REGION_PAIRS ('us-east1') reached AWS as an endpoint
    that does not exist (moto: HTTP 500, 'Unable to parse response'), retried by botocore and then by Airflow
    before failing with that message. It now fails at once, naming the region and the variable, without any
    AWS call; the good region lands."""
    from airflow.sdk.exceptions import AirflowFailException

    from shadowing.orchestration import clients
    from shadowing.orchestration.capacity import refresh_region

    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{REGION}=us-west-2,us-east1=us-west-1")
    _world(env, range(-10, 0))
    asked: list[str] = []
    real = clients.aws_client

    def recorded(service: str, region: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(region)
        return real(service, region, *args, **kwargs)

    monkeypatch.setattr(clients, "aws_client", recorded)
    dag = _dag()
    _fast_retries(dag)
    run = dag.test(logical_date=T, run_conf=CONF)
    assert run.state == "failed"
    assert _states(run) == {0: ("success", 1), 1: ("failed", 1)}
    assert _latest(warehouse_conn_env) is not None and set(asked) == {REGION}
    with pytest.raises(AirflowFailException, match="'us-east1' .*SHADOWING_REGION_PAIRS.* not an AWS region name"):
        refresh_region("us-east1", end=T)


@pytest.mark.slow
def test_a_silent_cloudwatch_fails_naming_region_and_age_and_the_last_valid_fingerprint_stays_current(
        env: str, warehouse_conn_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: freshness was validated against the run's own window end, so it could never fail. A run
    over a CloudWatch that had delivered nothing for 45 minutes folded nothing into the old data, moved the
    window end to now and stored it as valid and current: readiness saw a fresh fingerprint. It now fails
    (not retried) naming the region and the age, the fold is stored as invalid, the last valid one stays
    current, and once CloudWatch delivers again the next run folds everything since it: nothing lost."""
    from airflow.sdk.exceptions import AirflowFailException

    from shadowing.orchestration.capacity import refresh_region

    ids = _world(env, range(-10, 0))
    dag = _dag()
    _fast_retries(dag)
    assert dag.test(logical_date=T, run_conf=CONF).state == "success"
    first = _latest(warehouse_conn_env)
    silent = dag.test(logical_date=T + timedelta(minutes=45), run_conf=CONF)
    assert silent.state == "failed" and _states(silent) == {0: ("failed", 1)}
    rows = _rows(warehouse_conn_env)
    assert [(r["valid"], r["window_end"].minute) for r in rows] == [(True, 0), (False, 45)]
    assert any("data_lag_seconds at api/*/cpu_utilization" in e for e in rows[1]["errors"]), rows[1]["errors"]
    assert _latest(warehouse_conn_env).id == first.id and _asset_events([silent.run_id]) == []
    # the task's reason (the same refresh, called as the task calls it, at the same clock)
    from shadowing.orchestration import capacity

    on_time = capacity._utcnow
    _clock(monkeypatch, T + timedelta(minutes=45) + ON_TIME)
    with pytest.raises(AirflowFailException, match=(
            r"^us-east-1: stale capacity fingerprint: no sample after 2025-06-02T11:59:00Z: its data ends 45 min "
            r"before its window end 2025-06-02T12:45:00Z \(bound 30 min\), CloudWatch delivered nothing new.*"
            rf"fingerprint {first.id} stays current\)$")):
        refresh_region(REGION, end=T + timedelta(minutes=45), period=60, window_periods=10,
                       max_window_age=timedelta(hours=2))
    monkeypatch.setattr(capacity, "_utcnow", on_time)
    _publish(client("cloudwatch", REGION, env), [i for svc in ids.values() for i in svc], range(0, 50), start=T)
    resumed = dag.test(logical_date=T + timedelta(minutes=50), run_conf=CONF)
    assert resumed.state == "success"
    latest = _latest(warehouse_conn_env)
    assert latest.payload["folds"] == first.payload["folds"] + 1  # into the last valid one, not the stale one
    _assert_converged(latest.payload, _reference(env, T - timedelta(minutes=10), T + timedelta(minutes=50)))


@pytest.mark.slow
def test_a_run_of_an_old_interval_fails_window_freshness_at_the_wall_clock(
        env: str, warehouse_conn_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the window's age was measured from its own end. A run starting three hours after its
    interval (a manual run of an old logical date, a long queue) now fails naming the age, and the next run
    reads on from the last valid fingerprint; the bound is the DAG's Param max_window_age_seconds."""
    _world(env, range(-10, 10))
    dag = _dag()
    _fast_retries(dag)
    assert dag.test(logical_date=T, run_conf=CONF).state == "success"
    first = _latest(warehouse_conn_env)
    _clock(monkeypatch, T + timedelta(hours=3))
    late = dag.test(logical_date=T + timedelta(minutes=5), run_conf=CONF)
    assert late.state == "failed" and _states(late) == {0: ("failed", 1)}
    rows = _rows(warehouse_conn_env)
    assert [r["valid"] for r in rows] == [True, False]
    assert any("window_age_seconds at api/*/cpu_utilization" in e for e in rows[1]["errors"]), rows[1]["errors"]
    assert _latest(warehouse_conn_env).id == first.id
    allowed = dag.test(logical_date=T + timedelta(minutes=5), run_conf={**CONF, "max_window_age_seconds": 4 * 3600})
    assert allowed.state == "success"
    assert _latest(warehouse_conn_env).payload["window"]["end"] == "2025-06-02T12:05:00Z"


@pytest.mark.slow
def test_a_period_change_between_runs_reads_whole_periods_on_the_new_grid(
        env: str, warehouse_conn_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: folds ended at 12:07 at 60 s; with period_seconds 300 the next run asked CloudWatch for
    300 s periods from 12:07, which on AWS cover up to 12:12 past the fold's end at 12:15 → 12:10 straddles,
    and the next fold reads the overlap again. Now 12:07 → 12:15 is read at 60 s (said in the warnings), the
    folds after it at 300 s from 12:15: every GetMetricData call asks for whole periods on its period's grid,
    and no minute is lost or read twice."""
    from shadowing.orchestration import clients

    _world(env, range(-10, 25))
    asked: list[tuple[datetime, datetime, int]] = []
    real = clients.aws_client

    def recorded(service: str, region: str, *args: Any, **kwargs: Any) -> Any:
        c = real(service, region, *args, **kwargs)

        def record(params: dict[str, Any], **_: Any) -> None:
            periods = {q["MetricStat"]["Period"] for q in params["MetricDataQueries"] if "MetricStat" in q}
            asked.extend((params["StartTime"], params["EndTime"], p) for p in periods)
        c.meta.events.register("provide-client-params.cloudwatch.GetMetricData", record)
        return c

    monkeypatch.setattr(clients, "aws_client", recorded)
    dag = _dag()
    assert dag.test(logical_date=T + timedelta(minutes=7), run_conf=CONF).state == "success"
    assert _latest(warehouse_conn_env).payload["window"]["end"] == "2025-06-02T12:07:00Z"
    five = {**CONF, "period_seconds": 300}
    assert dag.test(logical_date=T + timedelta(minutes=16), run_conf=five).state == "success"
    bridged = _latest(warehouse_conn_env)
    assert bridged.payload["window"]["end"] == "2025-06-02T12:15:00Z"
    assert "off the 300 s period's grid" in bridged.payload["warnings"][0], bridged.payload["warnings"]
    assert dag.test(logical_date=T + timedelta(minutes=21), run_conf=five).state == "success"
    latest = _latest(warehouse_conn_env)
    assert latest.payload["window"]["end"] == "2025-06-02T12:20:00Z"
    misaligned = [(s.isoformat(), e.isoformat(), p) for s, e, p in asked
                  if s.timestamp() % p or e.timestamp() % p]
    assert asked and not misaligned, misaligned
    assert {p for *_, p in asked} == {60, 300}
    # per api instance: the bootstrap's 10 minutes and the bridge's 8 at 60 s, then one 5-minute period
    assert latest.payload["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * (10 + 8 + 1)


@pytest.mark.slow
def test_a_zombie_storing_after_its_retry_never_makes_its_older_window_current(env: str, warehouse: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a worker lost track of (a zombie) read the bootstrap as its previous fingerprint, then
    stalled; its retry folded up to 12:10 and stored; the zombie then stored its fold up to 12:05, the newer
    row, so "latest valid" went back to 12:05. Its row is now kept as superseded, the retry's stays current,
    and the zombie reports that nothing landed (so it would publish no Asset event)."""
    from shadowing.orchestration.capacity import refresh_region
    from shadowing.warehouse import store

    _world(env, range(-10, 10))
    dag = _dag()
    assert dag.test(logical_date=T, run_conf=CONF).state == "success"
    bootstrap = _latest(warehouse)
    assert dag.test(logical_date=T + timedelta(minutes=10), run_conf=CONF).state == "success"
    retry = _latest(warehouse)
    real = store.latest_valid_fingerprint
    monkeypatch.setattr(store, "latest_valid_fingerprint", lambda *_: bootstrap)  # what the zombie had read
    zombie = refresh_region(REGION, end=T + timedelta(minutes=5), run_id="zombie", period=60, window_periods=10)
    assert (zombie["landed"], zombie["id"]) == (False, retry.id) and "superseded" in zombie["note"]
    monkeypatch.setattr(store, "latest_valid_fingerprint", real)
    rows = _rows(warehouse)
    assert [(r["valid"], r["window_end"].minute) for r in rows] == [(True, 0), (True, 10), (False, 5)]
    assert _latest(warehouse).id == retry.id


@pytest.mark.parametrize("conf", [{"period_seconds": 45}, {"period_seconds": 7}, {"bootstrap_period_seconds": 90},
                                  {"bootstrap_period_seconds": 30}])
def test_periods_cloudwatch_would_refuse_are_refused_when_the_run_is_triggered(
        env: str, warehouse_conn_env: str, conf: dict[str, int]) -> None:
    """Regression: any period ≥ 1 s was accepted. CloudWatch refuses a Period that is not 1, 5, 10, 20, 30 or a
    multiple of 60 (moto answers nothing), so every run failed its three tries on AWS; and it returns nothing at
    a sub-minute period for data older than 3 hours, which every bootstrap reads. The Params refuse both when
    the run is triggered, naming the parameter."""
    from airflow.sdk.definitions.param import ParamValidationError

    dag = _dag()
    with pytest.raises(ParamValidationError, match=next(iter(conf))):
        dag.test(logical_date=T, run_conf={**CONF, **conf})


def test_the_schedule_comes_from_the_environment_and_a_bad_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A custom schedule is used; a blank one means the default; a malformed one fails the DAG's import naming
    SHADOWING_CAPACITY_SCHEDULE and the value (regression: croniter's bare 'Exactly 5, 6 or 7 columns has to be
    specified for iterator expression', also for a blank value)."""
    from airflow.dag_processing.dagbag import DagBag

    def parse(value: str) -> tuple[Any, dict[str, str]]:
        monkeypatch.setenv("SHADOWING_CAPACITY_SCHEDULE", value)
        bag = DagBag(dag_folder=str(ROOT / "dags" / "capacity_profiler.py"))
        return bag.dags.get("capacity_profiler"), {Path(k).name: v for k, v in bag.import_errors.items()}

    dag, errors = parse("*/15 * * * *")
    assert not errors and dag.timetable.expression == "*/15 * * * *"
    dag, errors = parse("  ")
    assert not errors and dag.timetable.expression == "*/5 * * * *"
    for bad in ("every 5 minutes", "*/5 * * *"):
        dag, errors = parse(bad)
        assert dag is None and "SHADOWING_CAPACITY_SCHEDULE" in errors["capacity_profiler.py"], errors
        assert repr(bad) in errors["capacity_profiler.py"]


def test_parsing_the_dag_adds_no_heavy_module_to_what_airflow_itself_loads() -> None:
    """The DAG file adds nothing heavy to what `airflow.sdk` and an Asset definition already load (Airflow
    brings sqlalchemy and, through the Amazon provider's Asset handlers, boto3): checked in a fresh
    interpreter. (tests/dags checks pandas/numpy/GX/networkx for every DAG; this one the rest.)"""
    import subprocess
    import sys

    probe = (
        "import json, runpy, sys; from airflow.sdk import Asset, dag, task, Param, get_current_context; "
        "Asset('shadowing://probe/x', group='probe'); before = set(sys.modules); "
        "runpy.run_path(sys.argv[1]); "
        "added = set(sys.modules) - before; "
        "print(json.dumps(sorted(added)))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(ROOT / "dags" / "capacity_profiler.py")],
                         capture_output=True, text=True, check=True, timeout=120)
    added = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = {"pandas", "numpy", "great_expectations", "boto3", "botocore", "sqlalchemy", "pyarrow", "networkx",
             "duckdb", "psycopg2", "alembic", "msgspec", "ddsketch", "scipy"}
    assert not {m.split(".")[0] for m in added} & heavy, sorted(added)
    assert {m for m in added if m.startswith("shadowing")} <= {
        "shadowing", "shadowing.orchestration", "shadowing.orchestration.assets",
        "shadowing.orchestration.capacity", "shadowing.orchestration.defaults", "shadowing.settings",
        "shadowing.aws", "shadowing.errors"}, sorted(added)
