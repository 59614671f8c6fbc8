"""Extraction from CloudWatch GetMetricData into the tidy frame (clients are passed in).

Instances of the region are discovered by their ``shadowing:service`` tag (EC2 DescribeInstances), in every
state: an instance terminated during the interval still reported metrics until then, and dropping them would
under-count the interval's demand (CloudWatch returns nothing for an instance silent in the interval, so old
terminated instances cost one empty query each). One query per instance × canonical metric (namespaces, names
and the instance dimension from :mod:`shadowing.metrics.names`, which the world's publisher uses too), at most
500 queries per call (the API's limit), every page followed; throttling is retried by the client's adaptive
retry config. Only the half-open data interval [start, end) is requested, and rows outside it are dropped
defensively. Several datapoints of one series in the same period (a re-published minute) come back as their
``Average``, so each series has at most one row per period; the fingerprint's cleaning handles the rest
(impossible values, late points).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from shadowing.aws import tags
from shadowing.errors import InputError
from shadowing.metrics.frame import TidyColumns, from_pandas
from shadowing.metrics.names import INSTANCE_DIMENSION, METRICS, TIDY_COLUMNS

MAX_QUERIES = 500  # GetMetricData: at most 500 MetricDataQuery per call
# Pre-staged standby instances carry the service tag but no load of the primary: not part of its demand.
_NOT_DEMAND_ROLES = frozenset({"prestaged"})


def discover_instances(ec2: Any) -> dict[str, str]:
    """instance id → service, for every instance tagged with ``shadowing:service`` (any state)."""
    found: dict[str, str] = {}
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag-key", "Values": [tags.SERVICE]}])
    for page in pages:
        for reservation in page.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                inst_tags = tags.from_aws(inst.get("Tags"))
                service = inst_tags.get(tags.SERVICE)
                if service and inst_tags.get(tags.ROLE) not in _NOT_DEMAND_ROLES:
                    found[inst["InstanceId"]] = service
    return found


def metric_queries(instances: dict[str, str], period: int) -> list[tuple[dict[str, Any], str, str]]:
    """(MetricDataQuery, instance id, canonical metric) for every instance × canonical metric."""
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


def extract(cloudwatch: Any, ec2: Any, *, region: str, start: datetime, end: datetime, period: int = 60,
            max_queries: int = MAX_QUERIES, instances: dict[str, str] | None = None) -> TidyColumns:
    """The tidy frame of the region's tagged instances for [start, end) (``instances``: skip discovery)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InputError("start and end must be timezone-aware (UTC)", source=f"cloudwatch:{region}")
    if not start < end:
        raise InputError(f"empty data interval [{start.isoformat()}, {end.isoformat()})",
                         source=f"cloudwatch:{region}")
    if not 1 <= max_queries <= MAX_QUERIES:
        raise ValueError(f"max_queries must be within 1..{MAX_QUERIES}")
    instances = discover_instances(ec2) if instances is None else instances
    frames = []
    for chunk in _chunks(metric_queries(instances, period), max_queries):
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
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TIDY_COLUMNS))
    if len(frame):
        # Pages of one series can overlap at their edges, and a server may round the interval outwards.
        inside = (frame["timestamp"] >= pd.Timestamp(start)) & (frame["timestamp"] < pd.Timestamp(end))
        frame = frame[inside].drop_duplicates(["instance_id", "metric", "timestamp"], keep="last")
    return from_pandas(frame.reset_index(drop=True), source=f"cloudwatch:{region}", region=region)
