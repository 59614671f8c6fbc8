"""Adversarial cases of the N-of-M judgement, the cooldown, the policy/probe settings and the alarm signal
(pure: a real botocore client with botocore's own Stubber for the API answers moto cannot give)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from shadowing.aws.clients import client
from shadowing.errors import InputError
from shadowing.health.checks import alarm_checks, overall_healthy, probe_urls
from shadowing.health.policy import HealthPolicy, decide, judge

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = HealthPolicy(failures_required=3, window=5, cooldown=timedelta(minutes=30))


def _simulate(signal: list[bool], *, auto: bool = True, policy: HealthPolicy = POLICY) -> list[str]:
    """One check a minute through judge + decide, as the monitor feeds them (newest first)."""
    history: list[bool] = []
    last_action: datetime | None = None
    actions = []
    for minute, healthy in enumerate(signal):
        now = NOW + timedelta(minutes=minute)
        history.insert(0, healthy)
        decision = decide(judge(history, policy), auto_failover=auto, failover_running=False,
                          last_action_at=last_action, now=now, policy=policy)
        if decision.action in ("trigger", "alert"):
            last_action = now
        actions.append(decision.action)
    return actions


def test_a_flapping_signal_triggers_at_most_once_per_cooldown() -> None:
    # fail/ok alternating for two hours: 3 of 5 failing whenever the newest check fails (that IS the policy),
    # but the cooldown lets at most one trigger through every 30 minutes
    actions = _simulate([minute % 2 == 1 for minute in range(120)])
    triggers = [m for m, a in enumerate(actions) if a == "trigger"]
    assert triggers == [4, 34, 64, 94]
    # and a signal failing only 2 of every 5 never fails the region, however long it lasts
    assert set(_simulate([minute % 5 not in (0, 1) for minute in range(200)])) == {"none"}


def test_exactly_n_at_the_window_edge_and_the_first_minutes_after_deploy() -> None:
    # newest first: the three failures are the OLDEST three of the window → still 3 of 5
    assert judge([True, True, False, False, False], POLICY).failed
    assert not judge([True, True, True, False, False, False], POLICY).failed  # one slid out
    # fewer than M checks so far: N failures fail, fewer never do (no padding either way)
    assert [judge([False] * k, POLICY).failed for k in range(5)] == [False, False, False, True, True]
    assert judge([False] * 3, POLICY).considered == 3
    assert not judge([], POLICY).failed


def test_cooldown_boundary_and_a_clock_going_backwards() -> None:
    failed = judge([False] * 5, POLICY)

    def action(last: datetime, now: datetime = NOW) -> str:
        return decide(failed, auto_failover=True, failover_running=False, last_action_at=last, now=now,
                      policy=POLICY).action

    assert action(NOW - timedelta(minutes=30)) == "trigger"  # exactly the cooldown: once per 30 min
    assert action(NOW - timedelta(minutes=30) + timedelta(microseconds=1)) == "suppressed_cooldown"
    # the clock went back an hour after a trigger: never a second trigger, suppressed and says why
    back = decide(failed, auto_failover=True, failover_running=False, last_action_at=NOW,
                  now=NOW - timedelta(hours=1), policy=POLICY)
    assert back.action == "suppressed_cooldown" and "s left" in back.reason
    # zero cooldown is allowed (explicitly configured) and then only the running failover stops a repeat
    zero = HealthPolicy(failures_required=3, window=5, cooldown=timedelta(0))
    assert decide(failed, auto_failover=True, failover_running=False, last_action_at=NOW, now=NOW,
                  policy=zero).action == "trigger"
    assert decide(failed, auto_failover=True, failover_running=True, last_action_at=None, now=NOW,
                  policy=zero).action == "suppressed_running"


@pytest.mark.parametrize(("data", "field"), [
    ({"failures_required": 6, "window": 5}, "window"),
    ({"failures_required": 0}, "failures_required"),
    ({"failures_required": -3, "window": 5}, "failures_required"),
    ({"failures_required": 3.0}, "failures_required"),
    ({"failures_required": "3"}, "failures_required"),
    ({"window": -1}, "window"),
    ({"window": 4.5}, "window"),
    ({"cooldown_minutes": -1}, "cooldown_minutes"),
    ({"cooldown_minutes": float("nan")}, "cooldown_minutes"),  # json.loads accepts NaN
    ({"cooldown_minutes": float("inf")}, "cooldown_minutes"),
    ({"cooldown_minutes": 1e300}, "cooldown_minutes"),  # finite, but no timedelta holds it
    ({"cooldown_minutes": True}, "cooldown_minutes"),
    ({"cooldown_minutes": None}, "cooldown_minutes"),
    ({"failure_required": 5, "window": 10}, "failure_required"),  # a typo must not mean "the defaults"
])
def test_malformed_policy_names_the_source_and_field(data: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        HealthPolicy.from_mapping(data, source="Variable shadowing_health_policy")
    assert err.value.field == field
    assert str(err.value).startswith(f"Variable shadowing_health_policy field {field!r}: "), str(err.value)


@pytest.mark.parametrize("data", [[3, 5], "3 of 5", 3, True])
def test_a_policy_that_is_not_an_object_is_refused(data: object) -> None:
    with pytest.raises(InputError, match="Variable shadowing_health_policy: must be a JSON object"):
        HealthPolicy.from_mapping(data, source="Variable shadowing_health_policy")  # type: ignore[arg-type]


def test_probe_settings_are_validated_not_iterated_character_by_character() -> None:
    assert probe_urls({"us-east-1": ["https://a/healthz", "http://b/"]}, "us-east-1") == ["https://a/healthz",
                                                                                        "http://b/"]
    assert probe_urls(None, "us-east-1") == [] and probe_urls({"eu-west-1": ["https://a"]}, "us-east-1") == []
    for setting, field in [({"us-east-1": "https://a/healthz"}, "us-east-1"), ({"us-east-1": ["a.example"]},
                                                                               "us-east-1"),
                           ({"us-east-1": [3]}, "us-east-1"), (["https://a/healthz"], None), ("https://a", None)]:
        with pytest.raises(InputError) as err:
            probe_urls(setting, "us-east-1")
        assert err.value.field == field and "Variable shadowing_health_probes" in str(err.value)


def _stubbed_alarm_error(code: str, status: int) -> list[dict]:
    cloudwatch = client("cloudwatch", "us-east-1", "http://127.0.0.1:9")  # never reached: stubbed
    with Stubber(cloudwatch) as stub:
        stub.add_client_error("describe_alarms", service_error_code=code, http_status_code=status)
        return alarm_checks(cloudwatch, "us-east-1")


@pytest.mark.parametrize(("code", "status", "state", "healthy"), [
    ("Throttling", 400, "THROTTLED", None),
    ("AccessDenied", 403, "UNREADABLE", None),
    ("ExpiredToken", 403, "UNREADABLE", None),
    ("InternalFailure", 500, "ERROR", False),
    ("ServiceUnavailable", 503, "ERROR", False),
])
def test_alarm_api_errors_unknown_unless_the_region_looks_down(code: str, status: int, state: str,
                                                               healthy: bool | None) -> None:
    [check] = _stubbed_alarm_error(code, status)
    assert (check["state"], check["healthy"]) == (state, healthy)
    assert overall_healthy([check]) is (healthy is None)  # unknown never fails a check on its own


def test_an_unreachable_monitoring_endpoint_is_a_failed_check() -> None:
    from botocore.config import Config

    cloudwatch = client("cloudwatch", "us-east-1", "http://127.0.0.1:9",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    [check] = alarm_checks(cloudwatch, "us-east-1")
    assert (check["state"], check["healthy"]) == ("ERROR", False)
