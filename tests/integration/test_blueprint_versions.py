"""Blueprint versions (SCD2) and the operational records, on SQLite AND PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from shadowing.blueprint.diff import diff_blueprints
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.store import (
    ReadinessCheck,
    acquire_failover_lock,
    blueprint_as_of,
    blueprint_history,
    blueprint_version,
    current_blueprint,
    failover_lock_holder,
    finish_failover_event,
    get_failover_event,
    latest_readiness,
    list_failover_events,
    record_failover_event,
    record_failover_step,
    record_readiness,
    release_failover_lock,
    upsert_blueprint_version,
)

R = "us-east-1"


def _payload(n: int, run: str = "r") -> dict[str, Any]:
    return {"services": {"web": {"count": n}}, "provenance": {"run_id": run}}


def _upsert(engine: Any, n: int, run: str = "r", now: datetime | None = None) -> Any:
    return upsert_blueprint_version(engine, primary_region=R, shadow_region="us-west-2", payload=_payload(n, run),
                                    run_id=run, diff=diff_blueprints, now=now)


def test_scd2_new_version_only_when_content_changes(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = _upsert(engine, 1, "r1", t0)
    for i in range(100):  # identical content from later runs: no new version
        assert not _upsert(engine, 1, f"again{i}", t0 + timedelta(minutes=i + 1)).created
    second = _upsert(engine, 2, "r2", t0 + timedelta(hours=1))
    assert first.created and second.created
    history = blueprint_history(engine, R)
    assert [(v.version, v.is_current) for v in history] == [(1, False), (2, True)]
    assert history[0].valid_to == history[1].valid_from == t0 + timedelta(hours=1)
    assert history[1].valid_to is None
    assert history[1].diff_summary["services_changed"] == {"web": {"count": {"from": 1, "to": 2}}}
    assert history[0].diff_summary["first"] is True
    assert current_blueprint(engine, R).version == 2  # type: ignore[union-attr]
    assert blueprint_version(engine, R, 1).payload["services"]["web"]["count"] == 1  # type: ignore[union-attr]
    assert blueprint_as_of(engine, R, t0 + timedelta(minutes=30)).version == 1  # type: ignore[union-attr]
    assert blueprint_as_of(engine, R, t0 - timedelta(minutes=1)) is None
    assert current_blueprint(engine, "eu-west-1") is None


def test_a_crash_mid_write_leaves_no_partial_version(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    _upsert(engine, 1)
    bad = {"services": {"web": {"count": {1, 2}}}}  # a set: hashable by str(), not storable as JSON

    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises, nothing may be half-written
        upsert_blueprint_version(engine, primary_region=R, shadow_region="us-west-2", payload=bad)
    history = blueprint_history(engine, R)
    assert [(v.version, v.is_current, v.valid_to) for v in history] == [(1, True, None)]


def test_concurrent_refreshes_never_leave_two_current_versions(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def refresh(content: int) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                _upsert(engine, content)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(i % 2,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with engine.connect() as conn:
        current = conn.execute(sa.text(
            "SELECT COUNT(*) FROM blueprint_versions WHERE primary_region = :r AND is_current = :t"),
            {"r": R, "t": True}).scalar()
    assert current == 1
    versions = [v.version for v in blueprint_history(engine, R)]
    assert versions == list(range(1, len(versions) + 1))  # no gap, no duplicate
    history = blueprint_history(engine, R)
    for older, newer in zip(history, history[1:], strict=False):
        assert older.valid_to == newer.valid_from  # intervals chain without overlap


def test_the_partial_unique_index_rejects_a_second_current_row(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    _upsert(engine, 1)
    row = {"primary_region": R, "shadow_region": "us-west-2", "version": 99, "content_hash": "x", "payload": "{}",
           "valid_from": datetime.now(UTC), "is_current": True, "diff_summary": "{}", "created_at": datetime.now(UTC)}
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO blueprint_versions (primary_region, shadow_region, version, content_hash, payload, "
            "valid_from, is_current, diff_summary, created_at) VALUES (:primary_region, :shadow_region, :version, "
            ":content_hash, :payload, :valid_from, :is_current, :diff_summary, :created_at)"), row)


def test_failover_lock_is_one_per_primary_and_reentrant(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    assert acquire_failover_lock(engine, R, "f1", mode="drill")
    assert acquire_failover_lock(engine, R, "f1")  # a retried task of the same failover
    assert not acquire_failover_lock(engine, R, "f2")
    assert acquire_failover_lock(engine, "eu-west-1", "f2")
    assert failover_lock_holder(engine, R) == "f1"
    assert not release_failover_lock(engine, R, "f2")  # not the holder
    assert release_failover_lock(engine, R, "f1")
    assert failover_lock_holder(engine, R) is None
    assert acquire_failover_lock(engine, R, "f2")


def test_concurrent_lock_acquisition_has_exactly_one_winner(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def grab(fid: str) -> None:
        barrier.wait()
        if acquire_failover_lock(engine, R, fid):
            wins.append(fid)

    threads = [threading.Thread(target=grab, args=(f"f{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and failover_lock_holder(engine, R) == wins[0]


def test_failover_event_timeline_and_recovery_time(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    detected = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    start = detected + timedelta(seconds=5)
    event = record_failover_event(engine, failover_id="f1", primary_region=R, shadow_region="us-west-2",
                                  mode="live", trigger="sensor", triggered_by="primary_health_monitor",
                                  blueprint_version=3, detected_at=detected, started_at=start, plan={"tiers": 2})
    assert event.outcome == "running" and event.steps == []
    again = record_failover_event(engine, failover_id="f1", primary_region=R, shadow_region="us-west-2",
                                  mode="live", trigger="sensor")
    assert again.id == event.id and again.blueprint_version == 3  # idempotent, never reset
    record_failover_step(engine, "f1", "launch_tier_0", started_at=start)
    record_failover_step(engine, "f1", "preflight", started_at=start, finished_at=start, outcome="succeeded")
    record_failover_step(engine, "f1", "launch_tier_0", finished_at=start + timedelta(seconds=9),
                         outcome="succeeded", detail={"instances": 4})
    done = finish_failover_event(engine, "f1", outcome="succeeded", finished_at=start + timedelta(seconds=40),
                                 recovery_at=start + timedelta(seconds=25))
    assert [s["step"] for s in done.steps] == ["launch_tier_0", "preflight"]
    assert done.steps[0]["outcome"] == "succeeded" and done.steps[0]["detail"] == {"instances": 4}
    assert done.recovery_seconds == pytest.approx(30.0)
    assert get_failover_event(engine, "f1").outcome == "succeeded"  # type: ignore[union-attr]
    assert [e.failover_id for e in list_failover_events(engine, R)] == ["f1"]
    with pytest.raises(ValueError):
        record_failover_event(engine, failover_id="f2", primary_region=R, shadow_region="us-west-2",
                              mode="yolo", trigger="manual")


def test_concurrent_step_updates_are_all_kept(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    record_failover_event(engine, failover_id="f1", primary_region=R, shadow_region="us-west-2", mode="drill",
                          trigger="manual")
    threads = [threading.Thread(target=record_failover_step, args=(engine, "f1", f"step{i}"),
                                kwargs={"started_at": datetime.now(UTC), "outcome": "succeeded"}) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s["step"] for s in get_failover_event(engine, "f1").steps) == [  # type: ignore[union-attr]
        f"step{i}" for i in range(8)]


def test_readiness_report(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    record_readiness(engine, primary_region=R, run_id="r1", checks=[ReadinessCheck("freshness", "graph", True)])
    record_readiness(engine, primary_region=R, run_id="r2", blueprint_version=2, checks=[
        ReadinessCheck("freshness", "graph", True), ReadinessCheck("ami_available", "web", False, "no copy")])
    report = latest_readiness(engine, R)
    assert report is not None and report.run_id == "r2" and not report.ready
    assert [(c.check, c.subject) for c in report.failures] == [("ami_available", "web")]
    assert latest_readiness(engine, "eu-west-1") is None
