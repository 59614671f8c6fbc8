"""Backtest of sizing rules: fit on the first part of each series, replay the rest.

Every ``refit_seconds`` each rule sizes capacity from the history seen so far (nothing from the future), and
the samples of the next interval are checked against it: coverage is the share of samples with
demand ≤ capacity, slack is capacity − demand (reported relative to the series' mean demand so series of
different units can be averaged). Capacity is compared in demand units (e.g. CPU percent of one instance),
before rounding to whole instances, which would hide the differences on single-instance traces.

Rules compared:
* ``shadowing``: our :class:`~shadowing.capacity.sizing.SizingRule` (quantile of all history from the
  sketch, × (1 + margin) × confidence while history is short);
* ``arc-max24h``: AWS ARC Region switch's rule, the maximum over the last 24 h × 100 %;
* ``vpa-p90+15%``: the Kubernetes VPA recommender, decayed (half-life 24 h) P90 + 15 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shadowing.capacity.sizing import SizingRule
from shadowing.metrics import frame as tidy
from shadowing.metrics.sketch import LogSketch

DAY = 86400.0


@dataclass(frozen=True)
class SeriesResult:
    series: str
    rule: str
    samples: int
    covered: int
    mean_slack: float
    mean_demand: float

    @property
    def coverage(self) -> float:
        return self.covered / self.samples if self.samples else math.nan

    @property
    def relative_slack(self) -> float:
        return self.mean_slack / self.mean_demand if self.mean_demand > 0 else math.nan


Rule = Callable[[np.ndarray, np.ndarray, float, float], float]  # (ts, values, now, first_ts) → capacity


def ours(rule: SizingRule) -> Rule:
    def size(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
        q = LogSketch.from_values(values).quantiles([rule.percentile], float(values.min()), float(values.max()))[0]
        return rule.capacity(q or 0.0, now - first)
    return size


def arc_max24h(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
    recent = values[ts >= now - DAY]
    return float(recent.max()) if recent.size else float(values.max())


def vpa_p90(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
    weights = np.exp2((ts - now) / DAY)
    q = LogSketch.from_values(values, weights).quantiles([0.9], float(values.min()), float(values.max()),
                                                         weighted=True)[0]
    return (q or 0.0) * 1.15


def backtest_series(ts: np.ndarray, values: np.ndarray, rules: dict[str, Rule], *, name: str,
                    fit_fraction: float = 0.25, refit_seconds: float = 3600.0) -> list[SeriesResult]:
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    first, last = float(ts[0]), float(ts[-1])
    t = first + fit_fraction * (last - first)
    cuts = np.arange(t, last + refit_seconds, refit_seconds)
    bounds = np.searchsorted(ts, cuts, side="left")
    replay = values[bounds[0]:]
    results = []
    for rule_name, rule in rules.items():
        covered, slack_sum, n = 0, 0.0, 0
        for i in range(len(cuts) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            if hi <= lo or lo == 0:
                continue
            cap = rule(ts[:lo], values[:lo], float(cuts[i]), first)
            seg = values[lo:hi]
            covered += int((seg <= cap).sum())
            slack_sum += float((cap - seg).sum())
            n += hi - lo
        results.append(SeriesResult(name, rule_name, n, covered, slack_sum / n if n else math.nan,
                                    float(replay.mean()) if replay.size else math.nan))
    return results


def default_rules(rule: SizingRule | None = None) -> dict[str, Rule]:
    return {"shadowing": ours(rule or SizingRule()), "arc-max24h": arc_max24h, "vpa-p90+15%": vpa_p90}


def backtest(cols: tidy.TidyColumns, *, rule: SizingRule | None = None, fit_fraction: float = 0.25,
             refit_seconds: float = 3600.0) -> list[SeriesResult]:
    """Backtest every series of ``cols`` (cleaned first) with our rule and the two reference rules."""
    cols = tidy.drop_duplicates(tidy.clean(cols))
    rules = default_rules(rule)
    series = cols.instance.astype(np.int64) * max(len(cols.metrics), 1) + cols.metric
    out: list[SeriesResult] = []
    for key in np.unique(series).tolist():
        mask = series == key
        i, m = key // max(len(cols.metrics), 1), key % max(len(cols.metrics), 1)
        svc = cols.services[int(cols.service[np.flatnonzero(mask)[0]])]
        name = f"{svc}/{cols.instances[i]}/{cols.metrics[m]}"
        if mask.sum() < 10:
            continue
        out.extend(backtest_series(cols.ts[mask], cols.values[mask], rules, name=name,
                                   fit_fraction=fit_fraction, refit_seconds=refit_seconds))
    return out


def summary(results: list[SeriesResult]) -> dict[str, dict[str, float]]:
    """Per rule: pooled coverage over all replayed samples, mean relative slack over series, worst series."""
    out: dict[str, dict[str, float]] = {}
    for rule in dict.fromkeys(r.rule for r in results):
        rs = [r for r in results if r.rule == rule and r.samples]
        samples = sum(r.samples for r in rs)
        rel = [r.relative_slack for r in rs if math.isfinite(r.relative_slack)]
        out[rule] = {"series": len(rs), "samples": samples,
                     "coverage": sum(r.covered for r in rs) / samples if samples else math.nan,
                     "min_series_coverage": min((r.coverage for r in rs), default=math.nan),
                     "mean_relative_slack": float(np.mean(rel)) if rel else math.nan,
                     "median_relative_slack": float(np.median(rel)) if rel else math.nan}
    return out


def format_table(results: list[SeriesResult], *, per_series: bool = False) -> str:
    lines = []
    if per_series:
        lines.append(f"{'series':58} {'rule':12} {'coverage':>9} {'rel.slack':>9}")
        for r in results:
            lines.append(f"{r.series[:58]:58} {r.rule:12} {r.coverage:9.4f} {r.relative_slack:9.3f}")
        lines.append("")
    lines.append(f"{'rule':12} {'series':>6} {'samples':>8} {'coverage':>9} {'min series':>10} "
                 f"{'mean rel. slack':>15} {'median rel. slack':>17}")
    for rule, s in summary(results).items():
        lines.append(f"{rule:12} {s['series']:6d} {s['samples']:8d} {s['coverage']:9.4%} "
                     f"{s['min_series_coverage']:10.4%} {s['mean_relative_slack']:15.3f} "
                     f"{s['median_relative_slack']:17.3f}")
    return "\n".join(lines)
