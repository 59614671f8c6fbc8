"""N-of-M judgement, cooldown and the auto-failover switch (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowing.errors import InputError
from shadowing.health.checks import overall_healthy, probe_checks
from shadowing.health.policy import HealthPolicy, auto_failover_enabled, decide, judge

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = HealthPolicy(failures_required=3, window=5, cooldown=timedelta(minutes=30))


def test_a_single_failing_check_never_fails_a_region() -> None:
    assert not judge([False], POLICY).failed
    assert not judge([False, True, True, True, True], POLICY).failed
    assert not judge([True, False, True, False, True], POLICY).failed


def test_three_of_five_fails_and_older_checks_fall_out_of_the_window() -> None:
    assert judge([False, False, False], POLICY).failed
    assert judge([False, True, False, True, False], POLICY).failed
    assert not judge([False, False, True, True, True, False, False], POLICY).failed  # 2 of the last 5


@given(st.lists(st.booleans(), max_size=20), st.integers(1, 6), st.integers(0, 6))
def test_judge_counts_exactly_the_last_m(history: list[bool], n: int, extra: int) -> None:
    policy = HealthPolicy(failures_required=n, window=n + extra)
    verdict = judge(history, policy)
    assert verdict.failing == history[: n + extra].count(False)
    assert verdict.failed == (verdict.failing >= n)


def test_decisions() -> None:
    failed = judge([False] * 5, POLICY)
    ok = judge([True] * 5, POLICY)
    kw = {"now": NOW, "policy": POLICY}
    assert decide(ok, auto_failover=True, failover_running=False, last_action_at=None, **kw).action == "none"
    assert decide(failed, auto_failover=True, failover_running=False, last_action_at=None, **kw).action == "trigger"
    assert decide(failed, auto_failover=False, failover_running=False, last_action_at=None, **kw).action == "alert"
    assert decide(failed, auto_failover=True, failover_running=True, last_action_at=None,
                  **kw).action == "suppressed_running"
    assert decide(failed, auto_failover=True, failover_running=False, last_action_at=NOW - timedelta(minutes=10),
                  **kw).action == "suppressed_cooldown"
    assert decide(failed, auto_failover=True, failover_running=False, last_action_at=NOW - timedelta(minutes=31),
                  **kw).action == "trigger"


def test_policy_from_mapping_and_bad_values_name_the_field() -> None:
    policy = HealthPolicy.from_mapping({"failures_required": 2, "window": 4, "cooldown_minutes": 5})
    assert (policy.failures_required, policy.window, policy.cooldown) == (2, 4, timedelta(minutes=5))
    assert HealthPolicy.from_mapping(None) == HealthPolicy()
    for bad, field in [({"failures_required": 0}, "failures_required"), ({"window": 1}, "window"),
                       ({"cooldown_minutes": "soon"}, "cooldown_minutes"), ({"failures_required": True},
                                                                          "failures_required")]:
        with pytest.raises(InputError) as err:
            HealthPolicy.from_mapping(bad)
        assert err.value.field == field


@pytest.mark.parametrize(("setting", "expected"), [
    ({"us-east-1": True}, True), ({"us-east-1": "on"}, True), ({"us-east-1": False}, False), ({}, False),
    (None, False), ("true", False), ({"eu-west-1": True}, False)])
def test_auto_failover_is_off_unless_switched_on_for_the_region(setting: object, expected: bool) -> None:
    assert auto_failover_enabled(setting, "us-east-1") is expected


def test_overall_health_from_checks() -> None:
    alarm_ok = {"kind": "alarm", "healthy": True}
    alarm_bad = {"kind": "alarm", "healthy": False}
    unknown = {"kind": "alarm", "healthy": None}
    probe_bad = {"kind": "probe", "healthy": False}
    probe_ok = {"kind": "probe", "healthy": True}
    assert overall_healthy([alarm_ok])
    assert not overall_healthy([alarm_bad])
    assert overall_healthy([unknown])  # missing data alone never fails a region
    assert overall_healthy([alarm_ok, probe_bad, probe_ok])  # one of two probes: not a majority
    assert not overall_healthy([alarm_ok, probe_bad, probe_bad, probe_ok])


def test_probe_checks_with_an_injected_opener() -> None:
    class Response:
        status = 503

        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def opener(url: str, timeout: float) -> Response:
        if "down" in url:
            raise OSError("connection refused")
        return Response()

    checks = probe_checks(["http://up/health", "http://down/health"], opener=opener)
    assert [(c["healthy"], c["state"]) for c in checks] == [(False, "503"), (False, "ERROR")]
