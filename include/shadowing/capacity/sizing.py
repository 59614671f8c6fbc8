"""Shadow capacity from a service's aggregate demand: a high quantile, the weekly peak, a margin, and caution.

Demand is the service aggregate (time-aligned sum over instances) of ``metric``; for CPU that is in
"percent of one instance" units, so ``target_utilization`` (percent of one instance a shadow instance may run
at) turns it into an instance count. Two forms of the rule share one dataclass:

* classic (``decayed=False, seasonal=False``), the historical default::

      base = quantile(all history, percentile)

* peak-aware (:data:`PEAK_AWARE`, the recommended rule; ``decayed=True, seasonal=True``, p99)::

      base = max(quantile(decayed histogram, percentile), hour-of-week peak over [now, now + lookahead))

  The decayed histogram is the fingerprint's ``decayed_sketch`` (weights halve every 24 h, as VPA's), so the
  quantile follows level shifts; the hour-of-week peak (the highest demand ever seen in the hours of the week
  the next ``lookahead_seconds`` fall in) covers the weekly and daily bursts a quantile treats as outliers.

and then, for both::

    capacity = base × (1 + margin) × confidence
    confidence = 1 + short_history_boost × max(0, 1 − history / full_history)
    instances = max(min_instances, ceil(capacity / target_utilization))   (float noise of a few ulps forgiven)

Every input comes from the fingerprint's aggregate entry (``sketch``, ``decayed_sketch``,
``hour_of_week_peak``, ``min``, ``max``): see :func:`summarize_aggregate`. The rule's parameters travel with
every result so a recommendation can always be explained and replayed; ``bench/backtest.py`` measures both
forms against AWS ARC's and Kubernetes VPA's rules on real CloudWatch traces.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from shadowing.errors import InputError

HOURS_PER_WEEK = 168
# 1970-01-01 was a Thursday: shift so that hour-of-week 0 is Monday 00:00 UTC (as capacity.batch does).
_EPOCH_HOUR_OF_WEEK = 3 * 24
# The instance count's rounding forgives this much relative excess over a whole count: the float error of
# base × (1 + margin) × confidence / target (a few half-ulps), so 3.0000000000000004 instances is 3, while a
# real excess (3 + 1e-12) still takes a 4th instance. The fingerprint rounds its stored peaks up with it too.
CEIL_SLACK = 4 * sys.float_info.epsilon
_RULE_SOURCE = "sizing rule"


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SizingRule:
    metric: str = "cpu_utilization"
    percentile: float = 0.995
    margin: float = 0.10
    target_utilization: float = 100.0
    short_history_boost: float = 0.5
    full_history_seconds: float = 7 * 86400.0
    min_instances: int = 1
    name: str = "shadowing-percentile"
    decayed: bool = False  # quantile of the decayed histogram (half-life of the fingerprint) instead of all history
    seasonal: bool = False  # also cover the hour-of-week peak of the next lookahead_seconds
    lookahead_seconds: float = 3600.0  # how far ahead a sizing has to hold: the refresh cadence

    def __post_init__(self) -> None:
        """Refuse parameters that would size wrongly without a word (a percentile of 99 meant as p99 would size
        from the maximum, a negative margin below demand) or crash later (a zero target or full history)."""
        checks: list[tuple[str, bool, str]] = [
            ("metric", isinstance(self.metric, str) and bool(self.metric), "must be a metric name"),
            ("name", isinstance(self.name, str) and bool(self.name), "must be a non-empty name"),
            ("percentile", _finite_number(self.percentile) and 0.0 < self.percentile <= 1.0,
             "must be a fraction in (0, 1] (0.99 for p99)"),
            ("margin", _finite_number(self.margin) and self.margin >= 0.0, "must be a finite number >= 0"),
            ("target_utilization", _finite_number(self.target_utilization) and self.target_utilization > 0.0,
             "must be a finite number > 0 (demand units one instance carries)"),
            ("short_history_boost", _finite_number(self.short_history_boost) and self.short_history_boost >= 0.0,
             "must be a finite number >= 0"),
            ("full_history_seconds", _finite_number(self.full_history_seconds) and self.full_history_seconds > 0.0,
             "must be a finite number of seconds > 0"),
            ("min_instances", isinstance(self.min_instances, int) and not isinstance(self.min_instances, bool)
             and self.min_instances >= 0, "must be a whole number >= 0"),
            ("decayed", isinstance(self.decayed, bool), "must be true or false"),
            ("seasonal", isinstance(self.seasonal, bool), "must be true or false"),
            ("lookahead_seconds", _finite_number(self.lookahead_seconds) and self.lookahead_seconds >= 0.0,
             "must be a finite number of seconds >= 0"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise InputError(f"{why}, got {getattr(self, name)!r}", source=_RULE_SOURCE, field=name)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> SizingRule:
        """The rule recorded with a sizing (``as_dict``, e.g. read back from JSON): replays it exactly.

        Unknown keys are refused rather than ignored (a misspelt parameter would silently keep its default);
        missing keys take the defaults. A JSON number without a fraction (``3600``) is accepted for a float."""
        if not isinstance(params, Mapping):
            raise InputError(f"must be an object, got {type(params).__name__}", source=_RULE_SOURCE)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InputError(f"unknown parameter (known: {', '.join(known)})", source=_RULE_SOURCE,
                             field=str(unknown[0]))
        values = {k: float(v) if known[k].type == "float" and isinstance(v, int) and not isinstance(v, bool)
                  else v for k, v in params.items()}
        return cls(**values)

    def confidence(self, history_seconds: float) -> float:
        """1 + boost × the share of the full history still missing: 1 + boost with no (or an unknown, NaN)
        history, falling linearly to exactly 1 at ``full_history_seconds`` and beyond."""
        history = float(history_seconds)
        if math.isnan(history):
            history = 0.0  # unknown history: the most caution, never the least
        short = min(1.0, max(0.0, 1.0 - max(history, 0.0) / self.full_history_seconds))
        return 1.0 + self.short_history_boost * short

    def capacity(self, demand_quantile: float, history_seconds: float) -> float:
        """Capacity in demand units (e.g. CPU percent of one instance) from the base demand."""
        return max(demand_quantile, 0.0) * (1.0 + self.margin) * self.confidence(history_seconds)

    def base(self, summary: DemandSummary) -> float | None:
        """The demand the rule covers before margin and confidence (None when nothing is known)."""
        parts = [summary.quantile]
        if self.seasonal:
            parts.append(summary.seasonal_peak)
        known = [p for p in parts if p is not None and math.isfinite(p)]
        return max(known) if known else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The recommended rule: max(decayed p99, hour-of-week peak of the next hour) × 1.05 × confidence. Chosen on
#: the NAB CloudWatch traces (``bench/backtest.py --tune``) as the least-slack candidate whose margin, tuned
#: leave-one-series-out, still covers ≥ 99.5 % of the held-out series (tuned margin 1–2 %). A margin tuned on
#: the smoother half of the traces fell 0.1 point short on the burstier half, hence 3 points of buffer: 5 %.
PEAK_AWARE = SizingRule(percentile=0.99, margin=0.05, short_history_boost=0.25, decayed=True, seasonal=True,
                        name="shadowing-peak-aware")


@dataclass(frozen=True)
class DemandSummary:
    """What a rule needs to know about demand, taken from a fingerprint aggregate (or from raw history)."""

    quantile: float | None  # the rule's percentile: of all history, or of the decayed histogram
    history_seconds: float
    seasonal_peak: float | None = None  # highest demand seen in the hours of the week the lookahead covers
    inputs: dict[str, Any] = field(default_factory=dict)  # what the figures came from, for the record


def hour_of_week(ts_seconds: np.ndarray) -> np.ndarray:
    return ((np.asarray(ts_seconds, dtype=np.int64) // 3600 + _EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK).astype(np.int64)


def lookahead_cells(now: float, lookahead_seconds: float) -> np.ndarray:
    """Hours of the week that [now, now + lookahead) touches."""
    first = math.floor(now / 3600.0)
    last = math.ceil((now + max(lookahead_seconds, 1.0)) / 3600.0) if math.isfinite(lookahead_seconds) else math.inf
    if last - first >= HOURS_PER_WEEK:  # a week or more ahead: every hour of the week (and no huge range)
        return np.arange(HOURS_PER_WEEK, dtype=np.int64)
    hours = np.arange(first, last)
    # distinct values without np.unique, which imports numpy.ma (~11 ms of a fresh task process)
    cells = np.sort(hour_of_week(hours * 3600))
    return cells[np.concatenate(([True], cells[1:] != cells[:-1]))] if cells.size else cells


def seasonal_peak(hour_of_week_peak: Any, now: float, lookahead_seconds: float) -> float | None:
    """Max of the 168 hour-of-week peaks (None / -inf / NaN = no data that hour) over the lookahead."""
    if hour_of_week_peak is None:
        return None
    peaks = np.array([math.nan if p is None else float(p) for p in hour_of_week_peak], dtype=np.float64)
    if peaks.size != HOURS_PER_WEEK:
        return None
    cells = peaks[lookahead_cells(now, lookahead_seconds)]
    cells = cells[np.isfinite(cells)]
    return float(cells.max()) if cells.size else None


def summarize_aggregate(rule: SizingRule, aggregate: Mapping[str, Any], *, now: float,
                        history_seconds: float) -> DemandSummary:
    """The rule's inputs from a fingerprint aggregate entry (``sketch``/``decayed_sketch``,
    ``hour_of_week_peak``, ``min``, ``max``) at ``now`` (the fingerprint window's end)."""
    from shadowing.metrics.sketch import LogSketch

    lo, hi = aggregate.get("min"), aggregate.get("max")
    quantile: float | None = None
    source = "sketch"
    if rule.decayed and aggregate.get("decayed_sketch"):
        sk = LogSketch.weights_from_compact(aggregate["decayed_sketch"])
        quantile = sk.quantiles([rule.percentile], lo, hi, weighted=True)[0]
        source = "decayed_sketch"
    if quantile is None and aggregate.get("sketch"):  # no decayed histogram (older fingerprint): all history
        quantile = LogSketch.from_compact(aggregate["sketch"]).quantiles([rule.percentile], lo, hi)[0]
        source = "sketch"
    peak = seasonal_peak(aggregate.get("hour_of_week_peak"), now, rule.lookahead_seconds) if rule.seasonal else None
    return DemandSummary(quantile, history_seconds, peak, {"quantile_from": source})


def summarize_values(rule: SizingRule, ts: np.ndarray, values: np.ndarray, *, now: float, history_start: float,
                     decay_half_life_seconds: float = 86400.0) -> DemandSummary:
    """The same inputs computed from raw history (the backtest), through the same sketch as the fingerprint."""
    from shadowing.metrics.sketch import LogSketch

    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return DemandSummary(None, now - history_start)
    lo, hi = float(values.min()), float(values.max())
    if rule.decayed:
        weights = np.exp2((ts - now) / decay_half_life_seconds)
        q = LogSketch.from_values(values, weights).quantiles([rule.percentile], lo, hi, weighted=True)[0]
    else:
        q = LogSketch.from_values(values).quantiles([rule.percentile], lo, hi)[0]
    peak = None
    if rule.seasonal:
        peaks = np.full(HOURS_PER_WEEK, -np.inf)
        np.maximum.at(peaks, hour_of_week(ts), values)
        peak = seasonal_peak(np.where(np.isfinite(peaks), peaks, np.nan).tolist(), now, rule.lookahead_seconds)
    return DemandSummary(q, now - history_start, peak)


def recommend(rule: SizingRule, *, demand_quantile: float | None = None, history_seconds: float,
              observed_instances: float | None = None, aggregate: Mapping[str, Any] | None = None,
              now: float | None = None) -> dict[str, Any]:
    """The sizing block of a service in the fingerprint.

    Pass ``aggregate`` (the service's aggregate entry for ``rule.metric``) and ``now`` (the window end): every
    form of the rule sizes from it (only the seasonal form needs ``now``). ``demand_quantile`` alone (the
    all-history quantile) only serves the classic form; a decayed or seasonal rule given nothing else is refused
    with a reason rather than sized wrongly.
    """
    if aggregate is not None and (now is not None or not rule.seasonal):
        summary = summarize_aggregate(rule, aggregate, now=math.nan if now is None else now,
                                      history_seconds=history_seconds)
    elif rule.decayed or rule.seasonal:
        return {"instances": None, "reason": f"rule {rule.name} needs the {rule.metric} aggregate entry and the "
                f"window end", "rule": rule.as_dict()}
    else:
        summary = DemandSummary(demand_quantile, history_seconds)
    return size(rule, summary, observed_instances=observed_instances)


def size(rule: SizingRule, summary: DemandSummary, *, observed_instances: float | None = None) -> dict[str, Any]:
    base = rule.base(summary)
    if base is None:
        return {"instances": None, "reason": f"no {rule.metric} aggregate to size from", "rule": rule.as_dict()}
    capacity = float(rule.capacity(base, summary.history_seconds))
    needed = capacity / rule.target_utilization
    if not math.isfinite(needed):
        return {"instances": None, "reason": f"{rule.metric} demand {base:g} × margin × confidence is beyond "
                f"any instance count", "demand_quantile": _plain(summary.quantile), "rule": rule.as_dict()}
    instances = max(rule.min_instances, math.ceil(needed * (1.0 - CEIL_SLACK)))
    if capacity > 0.0:  # any demand takes an instance, even one whose share of an instance underflows to 0
        instances = max(instances, 1)
    out = {
        "instances": int(instances),
        "capacity": capacity,
        "demand_quantile": _plain(summary.quantile),
        "confidence": float(rule.confidence(summary.history_seconds)),
        "history_seconds": _plain(summary.history_seconds),
        "observed_instances": _plain(observed_instances),
        "rule": rule.as_dict(),
    }
    if rule.seasonal:
        out["seasonal_peak"] = _plain(summary.seasonal_peak)
        out["base_demand"] = float(base)
    if summary.inputs:
        out["inputs"] = summary.inputs
    return out


def _plain(value: float | None) -> float | None:
    """A JSON-ready number: numpy scalars (e.g. from a window given as numpy floats) become Python floats, and
    what JSON cannot hold (NaN, ±inf: an unknown history, a non-finite quantile beside a usable peak) null."""
    return None if value is None or not math.isfinite(value) else float(value)
