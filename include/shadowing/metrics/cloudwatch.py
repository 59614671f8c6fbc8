"""Extraction from CloudWatch GetMetricData into the tidy frame (clients are passed in).

Instances of the region are discovered by their ``shadowing:service`` tag (EC2 DescribeInstances), in every
state: an instance terminated during the interval still reported metrics until then, and dropping them would
under-count the interval's demand (CloudWatch returns nothing for an instance silent in the interval, so old
terminated instances cost one empty query each). One query per instance × canonical metric (namespaces, names
and the instance dimension from :mod:`shadowing.metrics.names`, which the world's publisher uses too), at most
500 queries per call (the API's limit), every page followed; throttling is retried by the client's adaptive
retry config. Metrics outside ``AWS/EC2`` (the CloudWatch agent's memory, the applications' own) are often
published with more dimensions than ``InstanceId`` (the agent's ``append_dimensions`` adds ``ImageId``,
``InstanceType``, ``AutoScalingGroupName``), and a query matches dimension sets exactly: their sets are listed
first (ListMetrics, one paginated listing per metric) and each instance is queried under the sets it has —
``InstanceId`` alone when that one is published. Only the half-open data interval [start, end) is requested,
and rows outside it are dropped defensively. Several datapoints of one series in the same period (a
re-published minute) come back as their ``Average``, so each series has at most one row per period; the
fingerprint's cleaning handles the rest (impossible values, late points).

The interval is read in time windows of at most ``window_periods`` periods each (windows × chunks of queries
→ calls). Short windows keep the emulator (moto) fast: it answers each query by walking every period of the
call and scanning every datapoint of the call's time range, so one call over a week costs
queries × periods × datapoints. On real AWS the trade-off goes the other way: GetMetricData is billed per
metric requested per call, so every extra window re-bills every query — there, use a large ``window_periods``
(e.g. 100 800 / number of queries, the API's datapoint limit per call being 100 800).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from shadowing.aws import tags
from shadowing.errors import InputError
from shadowing.metrics.frame import TidyColumns, from_pandas
from shadowing.metrics.names import INSTANCE_DIMENSION, METRICS, TIDY_COLUMNS

MAX_QUERIES = 500  # GetMetricData: at most 500 MetricDataQuery per call
# Periods per call: emulator-friendly (see the module doc; on real AWS a larger value is cheaper).
DEFAULT_WINDOW_PERIODS = 6
# Pre-staged standby instances carry the service tag but no load of the primary: not part of its demand.
_NOT_DEMAND_ROLES = frozenset({"prestaged"})
# Result statuses that still carry (possibly partial) data; others (Forbidden, InternalError) are warned about.
_DATA_STATUSES = frozenset({"Complete", "PartialData"})

log = logging.getLogger(__name__)


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


Dimensions = list[dict[str, str]]


def instance_dimension_sets(cloudwatch: Any, instances: dict[str, str]
                            ) -> dict[tuple[str, str], list[Dimensions]]:
    """(instance id, canonical metric) → the dimension sets its datapoints are published under, for the metrics
    outside ``AWS/EC2`` (whose own metrics carry ``InstanceId`` alone). Only sets naming one of ``instances``."""
    found: dict[tuple[str, str], list[Dimensions]] = {}
    for spec in METRICS.values():
        if spec.namespace == "AWS/EC2":
            continue
        pages = cloudwatch.get_paginator("list_metrics").paginate(Namespace=spec.namespace,
                                                                  MetricName=spec.cloudwatch_name)
        for page in pages:
            for metric in page.get("Metrics") or []:
                dims = [{"Name": d["Name"], "Value": d["Value"]} for d in metric.get("Dimensions") or []]
                iid = next((d["Value"] for d in dims if d["Name"] == INSTANCE_DIMENSION), None)
                if iid in instances:
                    sets = found.setdefault((iid, spec.name), [])
                    dims.sort(key=lambda d: d["Name"])
                    if dims not in sets:  # a listing may name one set more than once (moto: once per datapoint)
                        sets.append(dims)
    return found


def metric_queries(instances: dict[str, str], period: int,
                   dimension_sets: dict[tuple[str, str], list[Dimensions]] | None = None
                   ) -> list[tuple[dict[str, Any], str, str]]:
    """(MetricDataQuery, instance id, canonical metric) for every instance × canonical metric: under
    ``InstanceId`` alone, unless ``dimension_sets`` lists only richer sets for it (then one query per set)."""
    out = []
    for n, (iid, _service) in enumerate(sorted(instances.items())):
        only_instance = [{"Name": INSTANCE_DIMENSION, "Value": iid}]
        for m, spec in enumerate(METRICS.values()):
            listed = (dimension_sets or {}).get((iid, spec.name)) or []
            sets = [only_instance] if not listed or only_instance in listed else \
                sorted(listed, key=lambda dims: [(d["Name"], d["Value"]) for d in dims])
            for k, dims in enumerate(sets):
                out.append(({"Id": f"q{n}_{m}" + (f"_{k}" if k else ""), "ReturnData": True, "MetricStat": {
                    "Metric": {"Namespace": spec.namespace, "MetricName": spec.cloudwatch_name,
                               "Dimensions": dims},
                    "Period": period, "Stat": "Average"}}, iid, spec.name))
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def time_windows(start: datetime, end: datetime, *, period: int, window_periods: int | None
                 ) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of ``window_periods`` × ``period`` (None: one window).

    Windows start at ``start`` + whole multiples of the period, so the periods CloudWatch aggregates (aligned
    to each call's StartTime) are the same as in one call over the whole interval.
    """
    if window_periods is None:
        return [(start, end)]
    if window_periods < 1:
        raise ValueError("window_periods must be at least 1")
    if period < 1:
        raise ValueError("period must be at least 1 second")
    width = timedelta(seconds=period * window_periods)
    out = []
    cursor = start
    while cursor < end:
        out.append((cursor, min(cursor + width, end)))
        cursor += width
    return out


def _epoch_seconds(stamps: list[Any], where: str, source: str) -> np.ndarray:
    """Epoch seconds of a result's Timestamps (datetimes from boto3; ISO-8601 text from a replayed response)."""
    try:
        return np.array([t.timestamp() for t in stamps], dtype=np.float64)
    except AttributeError:
        pass  # not all datetimes: the careful path below names the bad one
    out = np.empty(len(stamps), dtype=np.float64)
    for n, stamp in enumerate(stamps):
        parsed = stamp
        if isinstance(stamp, str):
            try:
                parsed = datetime.fromisoformat(stamp)
            except ValueError:
                parsed = None
        if not isinstance(parsed, datetime):
            raise InputError(f"{where}: Timestamps[{n}] is not a time: {stamp!r}", source=source,
                             field="Timestamps")
        out[n] = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return out


def _numbers(values: Any, where: str, source: str) -> np.ndarray:
    """A result's Values as float64; text, null or nested values are refused rather than coerced."""
    array = np.asarray(values) if isinstance(values, list) else None
    if array is None or array.ndim != 1 or array.dtype.kind not in "fiu":
        bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))), values) \
            if isinstance(values, list) else values
        raise InputError(f"{where}: Values holds a non-number: {bad!r}", source=source, field="Values")
    return array.astype(np.float64, copy=False)


def _result_arrays(res: Any, queries: dict[str, tuple[str, str]], source: str
                   ) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(query Id, epoch seconds, values) of one MetricDataResult; None when it carries nothing usable."""
    if not isinstance(res, dict):
        raise InputError(f"a MetricDataResult is {type(res).__name__}, not an object", source=source,
                         field="MetricDataResults")
    query_id = res.get("Id")
    status = res.get("StatusCode")
    if status is not None and status not in _DATA_STATUSES:
        log.warning("%s: GetMetricData result %r has status %s (%s)", source, query_id, status,
                    "; ".join(str(m.get("Value", m)) if isinstance(m, dict) else str(m)
                              for m in res.get("Messages") or []) or "no message")
    stamps = res.get("Timestamps")
    if not stamps:
        return None
    if query_id not in queries:  # CloudWatch never does this; a proxy or replay might: skip, say so
        log.warning("%s: GetMetricData returned a result for Id %r that was not asked for; %d datapoint(s) "
                    "ignored", source, query_id, len(stamps) if isinstance(stamps, list) else 0)
        return None
    iid, metric = queries[query_id]
    where = f"result {query_id!r} ({iid} {metric})"
    values = res.get("Values")
    if not isinstance(stamps, list) or not isinstance(values, list):
        raise InputError(f"{where}: Timestamps and Values must both be lists", source=source,
                         field="Values" if isinstance(stamps, list) else "Timestamps")
    if len(stamps) != len(values):
        raise InputError(f"{where}: {len(stamps)} Timestamps but {len(values)} Values", source=source,
                         field="Values")
    return query_id, _epoch_seconds(stamps, where, source), _numbers(values, where, source)


def extract(cloudwatch: Any, ec2: Any, *, region: str, start: datetime, end: datetime, period: int = 60,
            max_queries: int = MAX_QUERIES, window_periods: int | None = DEFAULT_WINDOW_PERIODS,
            instances: dict[str, str] | None = None,
            dimension_sets: dict[tuple[str, str], list[Dimensions]] | None = None) -> TidyColumns:
    """The tidy frame of the region's tagged instances for [start, end) (``instances``: skip discovery;
    ``dimension_sets``: skip listing them, see :func:`instance_dimension_sets`).

    ``window_periods``: periods per call (None: the whole interval in one call per chunk of queries).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise InputError("start and end must be timezone-aware (UTC)", source=f"cloudwatch:{region}")
    if not start < end:
        raise InputError(f"empty data interval [{start.isoformat()}, {end.isoformat()})",
                         source=f"cloudwatch:{region}")
    if not 1 <= max_queries <= MAX_QUERIES:
        raise ValueError(f"max_queries must be within 1..{MAX_QUERIES}")
    windows = time_windows(start, end, period=period, window_periods=window_periods)
    instances = discover_instances(ec2) if instances is None else instances
    if dimension_sets is None:
        dimension_sets = instance_dimension_sets(cloudwatch, instances) if instances else {}
    queries = metric_queries(instances, period, dimension_sets)
    # One series per instance × metric, however many dimension sets it is queried under.
    keys = list(dict.fromkeys((iid, metric) for _, iid, metric in queries))
    key_index = {key: n for n, key in enumerate(keys)}
    series_of = {q["Id"]: key_index[(iid, metric)] for q, iid, metric in queries}
    asked = {q["Id"]: (iid, metric) for q, iid, metric in queries}
    source = f"cloudwatch:{region}"
    # Flat lists of arrays (one frame at the end): a DataFrame per result costs more than moto's answer.
    series_parts: list[np.ndarray] = []
    ts_parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    for w_start, w_end in windows:
        for chunk in _chunks(queries, max_queries):
            token = None
            while True:
                kwargs: dict[str, Any] = {"MetricDataQueries": [q for q, _, _ in chunk], "StartTime": w_start,
                                          "EndTime": w_end, "ScanBy": "TimestampAscending"}
                if token:
                    kwargs["NextToken"] = token
                page = cloudwatch.get_metric_data(**kwargs)
                for res in page.get("MetricDataResults") or []:
                    found = _result_arrays(res, asked, source)
                    if found is not None:
                        query_id, stamps, values = found
                        ts_parts.append(stamps)
                        value_parts.append(values)
                        series_parts.append(np.full(len(stamps), series_of[query_id], dtype=np.int64))
                token = page.get("NextToken")
                if not token:
                    break
    if not ts_parts:
        return from_pandas(pd.DataFrame(columns=list(TIDY_COLUMNS)), source=f"cloudwatch:{region}",
                           region=region)
    series = np.concatenate(series_parts)
    ts = np.concatenate(ts_parts)
    values = np.concatenate(value_parts)
    # Pages of one series can overlap at their edges, and a server may round a window outwards.
    inside = (ts >= start.timestamp()) & (ts < end.timestamp())
    # Series by series in time order (as one call would return them): the fingerprint's fast path.
    order = np.flatnonzero(inside)[np.lexsort((ts[inside], series[inside]))]
    series, ts, values = series[order], ts[order], values[order]
    iids = np.array([iid for iid, _ in keys], dtype=object)
    services = np.array([instances[iid] for iid, _ in keys], dtype=object)
    metrics = np.array([metric for _, metric in keys], dtype=object)
    frame = pd.DataFrame({"timestamp": pd.to_datetime(ts, unit="s", utc=True), "region": region,
                          "service": services[series], "instance_id": iids[series], "metric": metrics[series],
                          "value": values})
    frame = frame.drop_duplicates(["instance_id", "metric", "timestamp"], keep="last")
    return from_pandas(frame.reset_index(drop=True), source=f"cloudwatch:{region}", region=region)
