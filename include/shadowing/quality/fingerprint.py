"""Great Expectations validation of a capacity fingerprint.

The fingerprint is flattened to one row per service × (pooled | aggregate | instance) × metric with the
statistics as columns, plus helper columns the JSON suite checks: ``utilisation_min/max`` (set for
percentage metrics only), ``non_negative_min`` (set for metrics that cannot be negative), the window's length
and its age at validation time (null, so failing, when the window is missing or unreadable), ``data_lag_seconds``
(how long before the window end the region's newest sample period ended: a window that moved on while its source
delivered nothing new — a silent CloudWatch — claims a freshness its data does not have), ``rejected_share``
(pooled rows: the share of the newest window's rows of that service and metric dropped as impossible — a
broken source fails the refresh instead of being silently thinned out), and on the aggregate row of the sizing
rule's metric ``sizing_row`` = 1 with ``sizing_instances`` (the recommended count, null when the service was
not sized although its demand is known). The suite lives in ``include/expectations/capacity_fingerprint.json``.

A malformed part (a service, section or entry that is not an object) becomes a row of null statistics named
after it, so it fails the suite with its place named instead of crashing the validation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shadowing.errors import ValidationFailed
from shadowing.metrics.frame import NON_NEGATIVE_METRICS
from shadowing.metrics.names import PERCENT_METRICS
from shadowing.quality.core import ValidationReport, load_suite_dict, run_suite
from shadowing.settings import INCLUDE_DIR

SUITE_PATH = INCLUDE_DIR / "expectations" / "capacity_fingerprint.json"
STATS = ("count", "mean", "std", "ewma", "min", "max", "p50", "p90", "p95", "p99")
POOLED, AGGREGATE = "*", "(aggregate)"
MALFORMED = "(malformed)"
_DEFAULT_SIZING_METRIC = "cpu_utilization"
COLUMNS = ("service", "instance", "metric", *STATS, "utilisation_min", "utilisation_max", "non_negative_min",
           "window_seconds", "window_age_seconds", "data_lag_seconds", "rejected_share", "sizing_row",
           "sizing_instances")
# The suite's freshness bounds a caller may set (``meta.bound`` of the expectation → its ``max_value``).
WINDOW_AGE_BOUND, DATA_LAG_BOUND = "max_window_age", "max_data_lag"


@dataclass(frozen=True)
class Freshness:
    """How current a fingerprint is at ``now``: ``window_age`` = now − window end; ``data_lag`` = window end −
    end of the newest sample's period (0 when the last period has data); ``newest`` the newest sample. Any of
    them None when unreadable (no window, no ``instances.last_seen``)."""

    window_end: float | None
    window_age: float | None
    newest: float | None
    data_lag: float | None


def freshness(fingerprint: dict[str, Any], *, now: float | None = None,
              sample_period: float | None = None) -> Freshness:
    """The fingerprint's :class:`Freshness` at ``now`` (wall clock by default). ``sample_period``: the period
    the newest data was read at (default: the fingerprint's step), so that a newest sample labelled one period
    before the window end counts as current."""
    fingerprint = _mapping(fingerprint)
    now = datetime.now(UTC).timestamp() if now is None else now
    try:
        end: float | None = _ts(_mapping(fingerprint.get("window"))["end"])
    except (KeyError, TypeError, ValueError, AttributeError):
        end = None
    seen = []
    for s in _mapping(fingerprint.get("services")).values():
        last = _mapping(_mapping(s).get("instances")).get("last_seen")
        try:
            seen.append(_ts(last))
        except (TypeError, ValueError, AttributeError):
            continue
    newest = max(seen) if seen else None
    if sample_period is None:
        sample_period = _number(_mapping(fingerprint.get("params")).get("step_seconds")) or 0.0
    lag = None if end is None or newest is None else max(0.0, end - (newest + sample_period))
    return Freshness(end, None if end is None else now - end, newest, lag)


def _number(value: Any) -> float | None:
    """A finite statistic as float; anything else (None, NaN, inf, text, true/false) as None: a null."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ts(text: str) -> float:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    # A window without an offset is UTC (as every fingerprint writes it), never the validating host's zone.
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def flatten(fingerprint: dict[str, Any], *, now: float | None = None,
            sample_period: float | None = None) -> pd.DataFrame:
    """One row per service × instance (``*`` pooled, ``(aggregate)`` total) × metric."""
    fingerprint = _mapping(fingerprint)
    window = _mapping(fingerprint.get("window"))
    try:
        start, end = _ts(window["start"]), _ts(window["end"])
    except (KeyError, TypeError, ValueError, AttributeError):
        start = end = math.nan
    now = datetime.now(UTC).timestamp() if now is None else now
    lag = freshness(fingerprint, now=now, sample_period=sample_period).data_lag
    rows: list[dict[str, Any]] = []
    quality = _mapping(fingerprint.get("quality"))
    kept_rows = _mapping(quality.get("kept_rows"))
    rejected_rows = _mapping(quality.get("rejected_rows"))

    def rejected_share(service: str, metric: str) -> float | None:
        bad = _number(_mapping(rejected_rows.get(service)).get(metric)) or 0.0
        good = _number(_mapping(kept_rows.get(service)).get(metric)) or 0.0
        return bad / (bad + good) if bad + good else None

    def add(service: str, instance: str, metric: str, entry: Any) -> dict[str, Any]:
        entry = _mapping(entry)  # not an object: every statistic null, named below
        row: dict[str, Any] = {"service": service, "instance": instance, "metric": metric}
        for s in STATS:
            row[s] = _number(entry.get(s))
        # Utilisation bounds apply to values, so to per-instance and pooled rows, not to the sum over instances.
        pct = metric in PERCENT_METRICS and instance != AGGREGATE
        row["utilisation_min"] = row["min"] if pct else None
        row["utilisation_max"] = row["max"] if pct else None
        row["non_negative_min"] = row["min"] if metric in NON_NEGATIVE_METRICS else None
        row["window_seconds"] = end - start
        row["window_age_seconds"] = now - end
        row["data_lag_seconds"] = lag
        row["rejected_share"] = rejected_share(service, metric) if instance == POOLED else None
        row["sizing_row"] = 0.0
        row["sizing_instances"] = None
        rows.append(row)
        return row

    def add_section(service: str, instance: str, section: Any) -> dict[str, dict[str, Any]]:
        if section is None:
            return {}
        if not isinstance(section, dict):
            add(service, instance, MALFORMED, None)
            return {}
        return {str(metric): add(service, instance, str(metric), entry) for metric, entry in section.items()}

    services = fingerprint.get("services")
    if services is not None and not isinstance(services, dict):
        add(MALFORMED, POOLED, MALFORMED, None)
        services = {}
    for service, s in (services or {}).items():
        service = str(service)
        if not isinstance(s, dict):
            add(service, POOLED, MALFORMED, None)
            continue
        add_section(service, POOLED, s.get("metrics"))
        _mark_sizing(s, add_section(service, AGGREGATE, s.get("aggregate")))
        by_id = _mapping(s.get("instances")).get("by_id")
        if by_id is not None and not isinstance(by_id, dict):
            add(service, MALFORMED, MALFORMED, None)
            by_id = {}
        for iid, metrics in (by_id or {}).items():
            add_section(service, str(iid), metrics)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    numeric = [c for c in frame.columns if c not in ("service", "instance", "metric")]
    frame[numeric] = frame[numeric].astype("float64")
    return frame


def _mark_sizing(service: dict[str, Any], aggregate_rows: dict[str, dict[str, Any]]) -> None:
    """Flag the aggregate row the service's sizing comes from, with the recommended instance count (None when
    missing, negative or not a whole number): a service whose demand is known must be sized."""
    sizing = _mapping(service.get("sizing"))
    row = aggregate_rows.get(str(_mapping(sizing.get("rule")).get("metric") or _DEFAULT_SIZING_METRIC))
    if row is None:
        return
    instances = _number(sizing.get("instances"))
    row["sizing_row"] = 1.0
    row["sizing_instances"] = instances if instances is not None and instances >= 0 and instances.is_integer() \
        else None


def bounded_suite(suite: Path | dict[str, Any], bounds: dict[str, float | None]) -> dict[str, Any]:
    """``suite`` with the ``max_value`` of each expectation whose ``meta.bound`` is a key of ``bounds`` set to
    that bound (the suite file keeps the defaults). A bound no expectation carries is an error, not a no-op."""
    spec = copy.deepcopy(load_suite_dict(suite))
    found = set()
    for expectation in spec.get("expectations", []):
        bound = (expectation.get("meta") or {}).get("bound")
        if bound in bounds:
            expectation.setdefault("kwargs", {})["max_value"] = bounds[bound]
            found.add(bound)
    if set(bounds) - found:
        raise ValueError(f"the suite has no expectation bounded by {sorted(set(bounds) - found)}")
    return spec


def check_fingerprint(fingerprint: dict[str, Any], *, now: float | None = None,
                      suite: Path | dict[str, Any] = SUITE_PATH, max_window_age: float | None = None,
                      max_data_lag: float | None = None, sample_period: float | None = None) -> ValidationReport:
    bounds = {k: v for k, v in ((WINDOW_AGE_BOUND, max_window_age), (DATA_LAG_BOUND, max_data_lag))
              if v is not None}
    if bounds:
        suite = bounded_suite(suite, bounds)
    return run_suite(flatten(fingerprint, now=now, sample_period=sample_period), suite,
                     name="capacity_fingerprint", label_columns=("service", "instance", "metric"))


def validate_fingerprint(fingerprint: dict[str, Any], *, now: float | None = None,
                         suite: Path | dict[str, Any] = SUITE_PATH, max_window_age: float | None = None,
                         max_data_lag: float | None = None, sample_period: float | None = None
                         ) -> ValidationReport:
    """Raise :class:`ValidationFailed` (naming service/instance/metric) unless the suite passes.

    Freshness: the window must end at most ``max_window_age`` seconds before ``now`` (wall clock by default;
    file-based callers, which profile history, pass the window end), and the region's newest sample period must
    end at most ``max_data_lag`` seconds before the window end (see :func:`freshness`); None: the suite's
    default bound.
    """
    report = check_fingerprint(fingerprint, now=now, suite=suite, max_window_age=max_window_age,
                               max_data_lag=max_data_lag, sample_period=sample_period)
    if not report.success:
        head = "; ".join(report.failures[:3])
        raise ValidationFailed(f"capacity fingerprint of {_mapping(fingerprint).get('region')} failed validation: "
                               f"{head}",
                               report.failures)
    return report
