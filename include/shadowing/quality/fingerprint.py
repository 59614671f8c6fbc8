"""Great Expectations validation of a capacity fingerprint.

The fingerprint is flattened to one row per service × (pooled | aggregate | instance) × metric with the
statistics as columns, plus helper columns the JSON suite checks: ``utilisation_min/max`` (set for
percentage metrics only), ``non_negative_min`` (set for metrics that cannot be negative), the window's length
and its age at validation time, and ``rejected_share`` (pooled rows: the share of the newest window's rows of
that service and metric dropped as impossible — a broken source fails the refresh instead of being silently
thinned out). The suite lives in ``include/expectations/capacity_fingerprint.json``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shadowing.errors import ValidationFailed
from shadowing.metrics.frame import NON_NEGATIVE_METRICS
from shadowing.metrics.names import PERCENT_METRICS
from shadowing.quality.core import ValidationReport, run_suite
from shadowing.settings import INCLUDE_DIR

SUITE_PATH = INCLUDE_DIR / "expectations" / "capacity_fingerprint.json"
STATS = ("count", "mean", "std", "ewma", "min", "max", "p50", "p90", "p95", "p99")
POOLED, AGGREGATE = "*", "(aggregate)"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def flatten(fingerprint: dict[str, Any], *, now: float | None = None) -> pd.DataFrame:
    """One row per service × instance (``*`` pooled, ``(aggregate)`` total) × metric."""
    window = fingerprint.get("window") or {}
    try:
        start, end = _ts(window["start"]), _ts(window["end"])
    except (KeyError, TypeError, ValueError):
        start = end = math.nan
    now = datetime.now(UTC).timestamp() if now is None else now
    rows: list[dict[str, Any]] = []
    quality = fingerprint.get("quality") or {}
    kept_rows = quality.get("kept_rows") or {}
    rejected_rows = quality.get("rejected_rows") or {}

    def rejected_share(service: str, metric: str) -> float | None:
        bad = float((rejected_rows.get(service) or {}).get(metric) or 0)
        good = float((kept_rows.get(service) or {}).get(metric) or 0)
        return bad / (bad + good) if bad + good else None

    def add(service: str, instance: str, metric: str, entry: dict[str, Any]) -> None:
        row: dict[str, Any] = {"service": service, "instance": instance, "metric": metric}
        for s in STATS:
            v = entry.get(s)
            row[s] = float(v) if isinstance(v, int | float) and math.isfinite(v) else None
        # Utilisation bounds apply to values, so to per-instance and pooled rows, not to the sum over instances.
        pct = metric in PERCENT_METRICS and instance != AGGREGATE
        row["utilisation_min"] = row["min"] if pct else None
        row["utilisation_max"] = row["max"] if pct else None
        row["non_negative_min"] = row["min"] if metric in NON_NEGATIVE_METRICS else None
        row["window_seconds"] = end - start
        row["window_age_seconds"] = now - end
        row["rejected_share"] = rejected_share(service, metric) if instance == POOLED else None
        rows.append(row)

    for service, s in (fingerprint.get("services") or {}).items():
        for metric, e in (s.get("metrics") or {}).items():
            add(service, POOLED, metric, e)
        for metric, e in (s.get("aggregate") or {}).items():
            add(service, AGGREGATE, metric, e)
        for iid, metrics in ((s.get("instances") or {}).get("by_id") or {}).items():
            for metric, e in metrics.items():
                add(service, iid, metric, e)
    frame = pd.DataFrame(rows, columns=["service", "instance", "metric", *STATS, "utilisation_min",
                                        "utilisation_max", "non_negative_min", "window_seconds",
                                        "window_age_seconds", "rejected_share"])
    numeric = [c for c in frame.columns if c not in ("service", "instance", "metric")]
    frame[numeric] = frame[numeric].astype("float64")
    return frame


def check_fingerprint(fingerprint: dict[str, Any], *, now: float | None = None,
                      suite: Path | dict[str, Any] = SUITE_PATH) -> ValidationReport:
    return run_suite(flatten(fingerprint, now=now), suite, name="capacity_fingerprint",
                     label_columns=("service", "instance", "metric"))


def validate_fingerprint(fingerprint: dict[str, Any], *, now: float | None = None,
                         suite: Path | dict[str, Any] = SUITE_PATH) -> ValidationReport:
    """Raise :class:`ValidationFailed` (naming service/instance/metric) unless the suite passes.

    ``now`` is the reference of the freshness check: wall-clock time by default; file-based callers pass the
    window end.
    """
    report = check_fingerprint(fingerprint, now=now, suite=suite)
    if not report.success:
        head = "; ".join(report.failures[:3])
        raise ValidationFailed(f"capacity fingerprint of {fingerprint.get('region')} failed validation: {head}",
                               report.failures)
    return report
