"""The primary's health alarm as the world seeds it, put into a chosen state (for the health monitor tests)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shadowing.health.checks import ALARM_PREFIX


def set_health_alarm(cloudwatch: Any, region: str, state: str) -> None:
    """Create ``shadowing-region-health-<region>`` if missing, then force it to ``state`` (OK, ALARM, …)."""
    name = f"{ALARM_PREFIX}{region}"
    if not cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
        cloudwatch.put_metric_alarm(AlarmName=name, Namespace="Shadowing/Health", MetricName="RegionHealthy",
                                    Dimensions=[{"Name": "Region", "Value": region}], Statistic="Minimum",
                                    Period=60, EvaluationPeriods=3, Threshold=1.0,
                                    ComparisonOperator="LessThanThreshold")
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")


class MonitorClock:
    """The health monitor's wall clock (``shadowing.orchestration.health.utcnow``), stepped by the test: DAG
    runs started seconds apart by dag.test() stand for checks a minute apart, as the scheduler would run them
    (checks closer than half the interval are one check)."""

    def __init__(self, monkeypatch: Any, start: datetime) -> None:
        import shadowing.orchestration.health as orchestration

        self.now = start
        monkeypatch.setattr(orchestration, "utcnow", lambda: self.now)

    def at(self, when: datetime) -> datetime:
        self.now = when
        return when

    def step(self, interval: timedelta = timedelta(minutes=1)) -> datetime:
        """The next check's time, a check interval later."""
        self.now += interval
        return self.now
