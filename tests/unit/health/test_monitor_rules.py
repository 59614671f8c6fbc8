"""The monitor's pure rules: which failover holds a region (its shadow serves), how checks are spaced in time,
and which suppression wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shadowing.health.monitor import _spaced, active_failover
from shadowing.health.policy import HealthPolicy, decide, judge
from shadowing.warehouse.operations import FailoverEvent, HealthObservation

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = HealthPolicy(failures_required=3, window=5, cooldown=timedelta(minutes=30))


def _event(failover_id: str, *, mode: str = "live", outcome: str = "succeeded", steps: dict[str, str] | None = None,
           minute: int = 0, plan: dict[str, Any] | None = None) -> FailoverEvent:
    return FailoverEvent(
        id=minute, failover_id=failover_id, dag_run_id=None, primary_region="us-east-1", shadow_region="us-west-2",
        mode=mode, trigger="sensor", triggered_by=None, blueprint_version=1, blueprint_id=1,
        steps=[{"step": s, "outcome": o} for s, o in (steps or {}).items()], outcome=outcome, error=None,
        detected_at=None, started_at=T0 + timedelta(minutes=minute), finished_at=None, recovery_seconds=None,
        plan=plan)


@pytest.mark.parametrize(("events", "serving"), [
    ([], None),
    ([_event("f1")], "f1"),  # a completed live failover
    ([_event("f1", outcome="failed", steps={"traffic": "succeeded", "verify": "failed"})], "f1"),  # traffic moved
    ([_event("f1", outcome="running", steps={"traffic": "succeeded"})], "f1"),  # never finalized (worker lost)
    ([_event("f1", outcome="failed", steps={"launch": "failed"})], None),  # failed before moving traffic
    ([_event("f1", outcome="aborted")], None),
    ([_event("f1", mode="drill")], None),
    ([_event("f1", mode="dry_run")], None),
    ([_event("f1", steps={"traffic": "succeeded", "failback": "succeeded"})], None),  # failed back
    ([_event("f1", steps={"traffic": "succeeded", "failback": "failed"})], "f1"),  # failback failed: still serving
    ([_event("fb-1", minute=9, plan={"kind": "failback", "failback_of": "f1"}), _event("f1")], None),
    ([_event("fb-1", minute=9, outcome="failed", plan={"kind": "failback", "failback_of": "f1"}), _event("f1")], "f1"),
    ([_event("fb-1", minute=9, plan={"kind": "failback", "failback_of": "f1"})], None),  # a failback is no failover
    ([_event("f2", minute=60, mode="drill"), _event("f1")], "f1"),  # a later drill changes nothing
])
def test_which_failover_holds_the_region(events: list[FailoverEvent], serving: str | None) -> None:
    found = active_failover(events)
    assert (found.failover_id if found else None) == serving


def _obs(seconds: float, healthy: bool = False) -> HealthObservation:
    return HealthObservation(int(seconds * 10), "us-east-1", T0 + timedelta(seconds=seconds), healthy, [], "degraded",
                             "none", "", f"r{seconds}")


def test_checks_closer_than_half_the_interval_are_one() -> None:
    half = timedelta(seconds=30)
    # newest first: the current check at 120 s, manual runs at 105 s and 95 s bunched with it; 60 s and 50 s
    # are one check (the newer counts), 0 s another
    stored = [_obs(s) for s in (105, 95, 60, 50, 0)]
    assert [o.observed_at for o in _spaced(stored, T0 + timedelta(seconds=120), half)] == \
        [T0 + timedelta(seconds=s) for s in (60, 0)]
    # scheduled runs a minute apart, each started up to 29 s late, all count (the closest pair: 31 s apart)
    jittered = [_obs(s) for s in (120, 60 + 29, 0)]
    assert len(_spaced(jittered, T0 + timedelta(seconds=180 + 15), half)) == 3
    assert _spaced([_obs(0)], T0, half) == []  # the same instant as the current check


def test_a_running_failover_wins_over_a_finished_one_and_both_over_the_cooldown() -> None:
    failed = judge([False] * 5, POLICY)
    kw: dict[str, Any] = {"now": T0, "policy": POLICY, "last_action_at": T0 - timedelta(minutes=5)}
    assert decide(failed, auto_failover=True, failover_running=True, failed_over="f1 …", **kw).action == \
        "suppressed_running"
    held = decide(failed, auto_failover=True, failover_running=False, failed_over="failover f1 moved traffic", **kw)
    assert (held.action, held.reason.endswith("already failed over: failover f1 moved traffic")) == \
        ("suppressed_failed_over", True)
    # long after the cooldown, and with auto-failover off (no alert: the outage is handled)
    late = {**kw, "last_action_at": T0 - timedelta(days=1)}
    for auto in (True, False):
        assert decide(failed, auto_failover=auto, failover_running=False, failed_over="f1", **late).action == \
            "suppressed_failed_over"
    assert decide(failed, auto_failover=True, failover_running=False, failed_over=None, **kw).action == \
        "suppressed_cooldown"
    ok = judge([True] * 5, POLICY)
    assert decide(ok, auto_failover=True, failover_running=False, failed_over="f1", **kw).action == "none"
