"""The documented history queries in include/sql/, on SQLite AND PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shadowing.blueprint.diff import diff_blueprints
from shadowing.errors import InputError
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.queries import query_names, run_query
from shadowing.warehouse.store import (
    ReadinessCheck,
    finish_failover_event,
    record_failover_event,
    record_readiness,
    upsert_blueprint_version,
)

R = "us-east-1"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(warehouse_url: str):  # type: ignore[no-untyped-def]
    engine = open_warehouse(warehouse_url)
    for i, count in enumerate((2, 2, 3, 5)):  # v1, (same), v2, v3
        upsert_blueprint_version(engine, primary_region=R, shadow_region="us-west-2",
                                 payload={"services": {"web": {"count": count}}}, run_id=f"run{i}",
                                 diff=diff_blueprints, now=T0 + timedelta(hours=i))
    upsert_blueprint_version(engine, primary_region="eu-west-1", shadow_region="eu-central-1",
                             payload={"services": {}}, now=T0)
    record_readiness(engine, primary_region=R, run_id="run0", checked_at=T0,
                     checks=[ReadinessCheck("freshness", "graph", True), ReadinessCheck("sizing", "web", False, "x")])
    record_readiness(engine, primary_region=R, run_id="run1", checked_at=T0 + timedelta(hours=1),
                     checks=[ReadinessCheck("freshness", "graph", True), ReadinessCheck("sizing", "web", True)])
    for fid, mode, detected, seconds in (("f1", "drill", T0, 42.0), ("f2", "live", T0 + timedelta(hours=5), 20.0),
                                         ("f3", "live", T0 + timedelta(hours=6), 30.0)):
        record_failover_event(engine, failover_id=fid, primary_region=R, shadow_region="us-west-2", mode=mode,
                              trigger="sensor" if mode == "live" else "manual", detected_at=detected,
                              started_at=detected + timedelta(seconds=1))
        finish_failover_event(engine, fid, outcome="succeeded", finished_at=detected + timedelta(seconds=60),
                              recovery_at=detected + timedelta(seconds=seconds))
    record_failover_event(engine, failover_id="f4", primary_region="eu-west-1", shadow_region="eu-central-1",
                          mode="drill", trigger="manual", started_at=T0)
    finish_failover_event(engine, "f4", outcome="failed", finished_at=T0 + timedelta(seconds=5), error="boom")
    return engine


def test_every_query_file_is_covered() -> None:
    assert query_names() == sorted([
        "blueprint_history", "blueprint_diff", "blueprint_as_of", "readiness_over_time", "readiness_failures",
        "failover_recovery_times", "failover_recovery_summary"])


def test_blueprint_history(engine) -> None:  # type: ignore[no-untyped-def]
    rows = run_query(engine, "blueprint_history", region=R)
    assert [(r["version"], r["is_current"]) for r in rows] == [(1, False), (2, False), (3, True)]
    assert rows[0]["valid_from"] == T0 and rows[0]["valid_to"] == T0 + timedelta(hours=2)
    assert rows[2]["valid_to"] is None and rows[2]["run_id"] == "run3"
    assert rows[1]["diff_summary"]["services_changed"] == {"web": {"count": {"from": 2, "to": 3}}}


def test_blueprint_diff(engine) -> None:  # type: ignore[no-untyped-def]
    rows = run_query(engine, "blueprint_diff", region=R, from_version=1, to_version=3)
    assert [r["version"] for r in rows] == [2, 3]
    assert [r["diff_summary"]["services_changed"]["web"]["count"] for r in rows] == [
        {"from": 2, "to": 3}, {"from": 3, "to": 5}]
    assert rows[0]["from_hash"] != rows[0]["to_hash"]
    assert run_query(engine, "blueprint_diff", region=R, from_version=3, to_version=3) == []


def test_blueprint_as_of(engine) -> None:  # type: ignore[no-untyped-def]
    def at(delta: timedelta) -> list[int]:
        return [r["version"] for r in run_query(engine, "blueprint_as_of", region=R, at=T0 + delta)]

    assert at(-timedelta(seconds=1)) == []
    assert at(timedelta(0)) == [1]
    assert at(timedelta(hours=1, minutes=59)) == [1]  # the identical refresh at +1 h made no version
    assert at(timedelta(hours=2)) == [2]
    assert at(timedelta(days=30)) == [3]
    assert run_query(engine, "blueprint_as_of", region=R, at=T0)[0]["payload"] == {"services": {"web": {"count": 2}}}


def test_readiness(engine) -> None:  # type: ignore[no-untyped-def]
    rows = run_query(engine, "readiness_over_time", region=R)
    assert [(r["run_id"], r["checks"], r["failures"], r["ready"]) for r in rows] == [
        ("run0", 2, 1, 0), ("run1", 2, 0, 1)]
    failed = run_query(engine, "readiness_failures", region=R, run_id="run0")
    assert [(r["check_name"], r["subject"]) for r in failed] == [("sizing", "web")]


def test_failover_recovery(engine) -> None:  # type: ignore[no-untyped-def]
    rows = run_query(engine, "failover_recovery_times", region=R)
    assert [(r["failover_id"], r["recovery_seconds"]) for r in rows] == [("f3", 30.0), ("f2", 20.0),
                                                                         ("f1", 42.0)]
    assert len(run_query(engine, "failover_recovery_times", region=None)) == 4
    summary = {(r["primary_region"], r["mode"]): r for r in run_query(engine, "failover_recovery_summary")}
    live = summary[(R, "live")]
    assert (live["failovers"], live["succeeded"]) == (2, 2)
    assert float(live["mean_recovery_seconds"]) == pytest.approx(25.0)
    assert float(live["max_recovery_seconds"]) == pytest.approx(30.0)
    failed = summary[("eu-west-1", "drill")]
    assert (failed["succeeded"], failed["mean_recovery_seconds"]) == (0, None)


def test_unknown_query_is_an_input_error(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError):
        run_query(engine, "drop_everything")
