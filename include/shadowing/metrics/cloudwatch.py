"""Extraction from CloudWatch GetMetricData into the tidy frame (clients are passed in).

Instances of the region are discovered by their ``shadowing:service`` tag (EC2 DescribeInstances); one query
per instance × canonical metric (namespaces/names from :mod:`shadowing.metrics.names`), at most 500 queries
per call, every page followed; throttling is retried by the client's adaptive retry config. Only the data
interval [start, end) is read; duplicates and late points are dealt with by the fingerprint's cleaning.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from shadowing.aws import tags
from shadowing.metrics.frame import TidyColumns, from_pandas
from shadowing.metrics.names import INSTANCE_DIMENSION, METRICS

MAX_QUERIES = 500


def discover_instances(ec2: Any) -> dict[str, str]:
    """instance id → service, for running/stopped instances tagged with ``shadowing:service``."""
    found: dict[str, str] = {}
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag-key", "Values": [tags.SERVICE]},
                 {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    for page in pages:
        for reservation in page.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                service = tags.from_aws(inst.get("Tags")).get(tags.SERVICE)
                if service:
                    found[inst["InstanceId"]] = service
    return found


def _queries(instances: dict[str, str], period: int) -> list[tuple[dict[str, Any], str, str]]:
    out = []
    for n, (iid, _service) in enumerate(sorted(instances.items())):
        for m, spec in enumerate(METRICS.values()):
            out.append(({"Id": f"q{n}_{m}", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": spec.namespace, "MetricName": spec.cloudwatch_name,
                           "Dimensions": [{"Name": INSTANCE_DIMENSION, "Value": iid}]},
                "Period": period, "Stat": "Average"}}, iid, spec.name))
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def extract(cloudwatch: Any, ec2: Any, *, region: str, start: datetime, end: datetime, period: int = 60
            ) -> TidyColumns:
    """The tidy frame of the region's tagged instances for [start, end)."""
    instances = discover_instances(ec2)
    frames = []
    for chunk in _chunks(_queries(instances, period), MAX_QUERIES):
        meta = {q["Id"]: (iid, metric) for q, iid, metric in chunk}
        token = None
        while True:
            kwargs: dict[str, Any] = {"MetricDataQueries": [q for q, _, _ in chunk], "StartTime": start,
                                      "EndTime": end, "ScanBy": "TimestampAscending"}
            if token:
                kwargs["NextToken"] = token
            page = cloudwatch.get_metric_data(**kwargs)
            for res in page.get("MetricDataResults", []):
                iid, metric = meta[res["Id"]]
                if res.get("Timestamps"):
                    frames.append(pd.DataFrame({
                        "timestamp": pd.to_datetime(res["Timestamps"], utc=True), "region": region,
                        "service": instances[iid], "instance_id": iid, "metric": metric,
                        "value": np.asarray(res["Values"], dtype=float)}))
            token = page.get("NextToken")
            if not token:
                break
    columns = ["timestamp", "region", "service", "instance_id", "metric", "value"]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return from_pandas(frame, source=f"cloudwatch:{region}", region=region)
