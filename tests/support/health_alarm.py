"""The primary's health alarm as the world seeds it, put into a chosen state (for the health monitor tests)."""

from __future__ import annotations

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
