"""Canonical metric names of the tidy frame and where each lives in CloudWatch.

The world publishes under these namespaces/names, extraction reads them back; both import this table so they
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

TIDY_COLUMNS = ("timestamp", "region", "service", "instance_id", "metric", "value")


@dataclass(frozen=True)
class MetricSpec:
    name: str  # canonical tidy-frame name
    family: str  # cpu | memory | network | disk | connections | latency
    unit: str  # CloudWatch unit
    namespace: str  # CloudWatch namespace
    cloudwatch_name: str  # CloudWatch metric name
    percent: bool = False  # bounded 0–100


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("cpu_utilization", "cpu", "Percent", "AWS/EC2", "CPUUtilization", percent=True),
        MetricSpec("memory_utilization", "memory", "Percent", "CWAgent", "mem_used_percent", percent=True),
        MetricSpec("network_in_bytes", "network", "Bytes", "AWS/EC2", "NetworkIn"),
        MetricSpec("network_out_bytes", "network", "Bytes", "AWS/EC2", "NetworkOut"),
        MetricSpec("disk_read_bytes", "disk", "Bytes", "AWS/EC2", "DiskReadBytes"),
        MetricSpec("disk_write_bytes", "disk", "Bytes", "AWS/EC2", "DiskWriteBytes"),
        MetricSpec("active_connections", "connections", "Count", "Shadowing/App", "ActiveConnections"),
        MetricSpec("request_latency_ms", "latency", "Milliseconds", "Shadowing/App", "RequestLatency"),
    )
}
CANONICAL_METRICS: tuple[str, ...] = tuple(METRICS)
PERCENT_METRICS = frozenset(n for n, s in METRICS.items() if s.percent)
BY_CLOUDWATCH = {(s.namespace, s.cloudwatch_name): s for s in METRICS.values()}
# Dimension that ties a datapoint to its instance; service and region come from the instance's tags.
INSTANCE_DIMENSION = "InstanceId"
