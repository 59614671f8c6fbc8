"""Backtest of sizing rules: fit on the first part of each series, replay the rest.

Every ``refit_seconds`` each rule sizes capacity from the history seen so far (samples strictly before the
re-size time, nothing from the future), and the samples of the next interval are checked against it. All rules
are re-sized at the same times from the same past samples. Per series:

* coverage: share of replayed samples (5-minute intervals) with demand ≤ capacity;
* slack: idle capacity, mean over replayed samples of max(capacity − demand, 0). A miss counts as a miss, never
  as negative slack that would offset other intervals' idle capacity;
* relative slack: slack ÷ the series' mean demand over the replay (so series of different units average), and
  slack ÷ need, where need is the replay's p99.5 demand (the least static capacity that, in hindsight, covers
  99.5 %): a normalisation that series with a near-zero mean or rare huge bursts do not dominate.

Across series, coverage is pooled over all replayed samples; relative slack is reported as mean and median.
Capacity is compared in demand units (e.g. CPU percent of one instance), before rounding to whole instances,
which would hide the differences on single-instance traces.

Rules compared (all with the same inputs and cadence):

* ``shadowing`` (:data:`~shadowing.capacity.sizing.PEAK_AWARE`), max(decayed p99, hour-of-week peak of the
  next hour) × 1.05 × confidence; ``shadowing-classic``, the earlier all-history p99.5 × 1.10 × confidence;
* ``arc-max24h``: AWS ARC Region switch's EC2 Auto Scaling block (``sampledMaxInLast24Hours``,
  ``targetPercent`` 100): the maximum over the last 24 h × 100 %;
* ``vpa-p90+15%``: the Kubernetes VPA recommender's CPU target: P90 of a decaying histogram (weights halve
  every 24 h; exponential buckets growing by 5 %; the percentile is the upper edge of the bucket holding it, as
  VPA's ``Percentile`` returns) + 15 % safety margin. VPA's absolute floors (first bucket 0.01 core, 25
  millicores minimum) have no meaning in percent or bytes, so the first bucket is 0.01 of the series' unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from shadowing.capacity.sizing import PEAK_AWARE, SizingRule, summarize_values
from shadowing.metrics import frame as tidy

DAY = 86400.0
NEED_QUANTILE = 0.995
MIN_SAMPLES = 10  # a series with fewer samples (after cleaning) is not replayed

Rule = Callable[[np.ndarray, np.ndarray, float, float], float]  # (ts, values, now, first_ts) → capacity


@dataclass(frozen=True)
class SeriesResult:
    series: str
    rule: str
    samples: int
    covered: int
    mean_slack: float  # mean idle capacity, max(capacity − demand, 0)
    mean_demand: float
    need: float = math.nan  # replay's p99.5 demand
    mean_shortfall: float = 0.0  # mean of max(demand − capacity, 0)

    @property
    def coverage(self) -> float:
        return self.covered / self.samples if self.samples else math.nan

    @property
    def relative_slack(self) -> float:
        return self.mean_slack / self.mean_demand if self.mean_demand > 0 else math.nan

    @property
    def slack_per_need(self) -> float:
        return self.mean_slack / self.need if self.need > 0 else math.nan


@dataclass
class Replay:
    """One series' replayed demand and, per rule, the capacity in force at each replayed sample."""

    series: str
    demand: np.ndarray
    interval_starts: np.ndarray  # index in ``demand`` where each re-sizing interval starts
    capacity: dict[str, np.ndarray] = field(default_factory=dict)

    def score(self, rule: str, multiplier: float = 1.0, *, label: str | None = None) -> SeriesResult:
        cap = self.capacity[rule] * multiplier
        d = self.demand
        n = int(d.size)
        if n == 0:
            return SeriesResult(self.series, label or rule, 0, 0, math.nan, math.nan)
        gap = cap - d
        return SeriesResult(self.series, label or rule, n, int((gap >= 0).sum()),
                            float(np.maximum(gap, 0).mean()), float(d.mean()),
                            float(np.quantile(d, NEED_QUANTILE)), float(np.maximum(-gap, 0).mean()))


# --- rules ---------------------------------------------------------------------------------------------

def ours(rule: SizingRule, *, decay_half_life_seconds: float = DAY) -> Rule:
    """A :class:`SizingRule` on raw history, through the same sketch and inputs as the fingerprint."""
    def size(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
        summary = summarize_values(rule, ts, values, now=now, history_start=first,
                                   decay_half_life_seconds=decay_half_life_seconds)
        base = rule.base(summary)
        return rule.capacity(base if base is not None else 0.0, summary.history_seconds)
    return size


def arc_rule(window_seconds: float = DAY, target_percent: float = 100.0) -> Rule:
    def size(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
        recent = values[ts >= now - window_seconds]
        return float(recent.max() if recent.size else values.max()) * target_percent / 100.0
    return size


arc_max24h = arc_rule()


def recent_quantile_rule(window_seconds: float, quantile: float) -> Rule:
    """The ``quantile`` of the last ``window_seconds`` of demand (all history if that window is empty): a plain
    recent-level predictor, the base of the online-calibrated variants."""
    def size(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
        recent = values[ts >= now - window_seconds]
        return float(np.quantile(recent if recent.size else values, quantile))
    return size


def same_hour_of_day_rule(days: float = 7.0, pad_hours: int = 1, floor_quantile: float = 0.9) -> Rule:
    """A daily-profile predictor: the highest demand seen over the last ``days`` in the hour of day the next
    interval starts in (± ``pad_hours``), never below that window's ``floor_quantile``. It bets that bursts
    recur at the same hour of day."""
    def size(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
        recent = ts >= now - days * DAY
        t, v = (ts[recent], values[recent]) if recent.any() else (ts, values)
        offset = ((t // 3600).astype(np.int64) - int(now // 3600)) % 24
        near = (offset <= pad_hours) | (offset >= 24 - pad_hours)
        floor = float(np.quantile(v, floor_quantile))
        return max(floor, float(v[near].max())) if near.any() else floor
    return size


def last_value(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
    """The latest sample before the re-sizing (persistence forecast)."""
    return float(values[-1])


def vpa_histogram_percentile(values: np.ndarray, weights: np.ndarray, percentile: float, *,
                             first_bucket: float = 0.01, ratio: float = 1.05) -> float:
    """VPA's ``histogram.Percentile``: exponential buckets (bucket b starts at first·(ratio^b − 1)/(ratio − 1));
    the answer is the END of the first bucket at which the cumulative weight reaches percentile × total."""
    values = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    buckets = np.where(values < first_bucket, 0,
                       np.floor(np.log1p(values * (ratio - 1) / first_bucket) / math.log(ratio))).astype(np.int64)
    cum = np.cumsum(np.bincount(buckets, weights=weights))
    if cum.size == 0 or cum[-1] <= 0:
        return 0.0
    b = int(np.searchsorted(cum, percentile * cum[-1], side="left"))
    return first_bucket * (ratio ** (b + 1) - 1) / (ratio - 1)


def vpa_rule(percentile: float = 0.9, margin: float = 0.15, half_life_seconds: float = DAY) -> Rule:
    def size(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
        weights = np.exp2((ts - now) / half_life_seconds)
        return vpa_histogram_percentile(values, weights, percentile) * (1.0 + margin)
    return size


vpa_p90 = vpa_rule()


def default_rules(rule: SizingRule | None = None) -> dict[str, Rule]:
    """Ours (``rule``, the peak-aware rule by default), the classic form, and the two references."""
    rules = {"shadowing": ours(rule or PEAK_AWARE)}
    if rule is None or rule != SizingRule():
        rules["shadowing-classic"] = ours(SizingRule())
    rules["arc-max24h"] = arc_max24h
    rules["vpa-p90+15%"] = vpa_p90
    return rules


# --- online calibration ----------------------------------------------------------------------------------

def calibrated(replay: Replay, base: str, *, alpha: float = 1 - NEED_QUANTILE, gamma: float = 0.02,
               initial_log_margin: float = 0.0, log_margin_bounds: tuple[float, float] = (-3.0, 5.0)
               ) -> np.ndarray:
    """``base``'s capacity times a margin learnt online from its own misses: adaptive conformal inference.

    Gibbs & Candès (2021) on a multiplicative margin: interval b's capacity is base_b × exp(θ_b) and, once the
    interval is over, θ_{b+1} = θ_b + γ · Σ_i (miss_i − α) over its samples. θ_b depends only on the demand
    of intervals before b (samples the re-sizing at b has seen), so the rule stays causal; whatever the base
    predictor, each series' long-run miss rate tends to α (|miss rate − α| ≤ (range of θ + γ) / (γ · n)).
    θ is clipped to ``log_margin_bounds`` (×0.05 … ×148) so one burst cannot send the margin to infinity.
    """
    base_cap = replay.capacity[base]
    out = np.empty_like(base_cap)
    bounds = [*replay.interval_starts.tolist(), replay.demand.size]
    lo_bound, hi_bound = log_margin_bounds
    theta = initial_log_margin
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b], bounds[b + 1]
        out[lo:hi] = base_cap[lo:hi] * math.exp(theta)
        misses = int((replay.demand[lo:hi] > out[lo:hi]).sum())
        theta = min(max(theta + gamma * (misses - alpha * (hi - lo)), lo_bound), hi_bound)
    return out


def add_calibrated(replays: Iterable[Replay], base: str, name: str, *, alpha: float = 1 - NEED_QUANTILE,
                   gamma: float = 0.02) -> None:
    """Store :func:`calibrated` capacities of ``base`` under ``name`` in every replay."""
    for r in replays:
        r.capacity[name] = calibrated(r, base, alpha=alpha, gamma=gamma)


# --- replay --------------------------------------------------------------------------------------------

def check_replay_params(fit_fraction: float, refit_seconds: float) -> None:
    """ValueError unless 0 < fit_fraction < 1 and refit_seconds is a finite number of seconds > 0."""
    if not (isinstance(fit_fraction, int | float) and 0.0 < fit_fraction < 1.0):
        raise ValueError(f"fit fraction must be in (0, 1), got {fit_fraction!r}")
    if not (isinstance(refit_seconds, int | float) and math.isfinite(refit_seconds) and refit_seconds > 0):
        raise ValueError(f"refit seconds must be a finite number > 0, got {refit_seconds!r}")


def replay_series(ts: np.ndarray, values: np.ndarray, rules: dict[str, Rule], *, name: str,
                  fit_fraction: float = 0.25, refit_seconds: float = 3600.0) -> Replay:
    check_replay_params(fit_fraction, refit_seconds)
    order = np.argsort(ts, kind="stable")
    ts, values = np.asarray(ts, dtype=np.float64)[order], np.asarray(values, dtype=np.float64)[order]
    first, last = float(ts[0]), float(ts[-1])
    start = first + fit_fraction * (last - first)
    # cut times every refit_seconds from the end of the fit; the last cut lies beyond the last sample (one
    # more cut where rounding put it on the last sample: every replayed sample must have a capacity)
    n_cuts = int(math.floor((last - start) / refit_seconds)) + 2
    cuts = start + refit_seconds * np.arange(n_cuts)
    if cuts[-1] <= last:
        cuts = np.append(cuts, cuts[-1] + refit_seconds)
        n_cuts += 1
    bounds = np.searchsorted(ts, cuts, side="left")
    keep = [i for i in range(n_cuts - 1) if bounds[i + 1] > bounds[i] and bounds[i] > 0]
    first_replayed = bounds[keep[0]] if keep else ts.size
    demand = values[first_replayed:] if keep else values[:0]
    starts = np.array([bounds[i] - first_replayed for i in keep], dtype=np.int64)
    out = Replay(name, demand, starts)
    for rule_name, rule in rules.items():
        cap = np.empty(demand.size)
        for i in keep:
            lo, hi = bounds[i], bounds[i + 1]
            cap[lo - first_replayed:hi - first_replayed] = rule(ts[:lo], values[:lo], float(cuts[i]), first)
        out.capacity[rule_name] = cap
    return out


def backtest_series(ts: np.ndarray, values: np.ndarray, rules: dict[str, Rule], *, name: str,
                    fit_fraction: float = 0.25, refit_seconds: float = 3600.0) -> list[SeriesResult]:
    replay = replay_series(ts, values, rules, name=name, fit_fraction=fit_fraction, refit_seconds=refit_seconds)
    return [replay.score(rule) for rule in rules]


def series_of(cols: tidy.TidyColumns, *, min_samples: int = MIN_SAMPLES,
              warnings: list[str] | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(service/instance/metric, ts, values) of every series of a cleaned, de-duplicated frame, by name.

    Series with fewer than ``min_samples`` samples are left out, and named in ``warnings`` if given."""
    n_met = max(len(cols.metrics), 1)
    key = cols.instance.astype(np.int64) * n_met + cols.metric
    out, short = [], []
    for k in np.unique(key).tolist():
        rows = np.flatnonzero(key == k)
        name = f"{cols.services[int(cols.service[rows[0]])]}/{cols.instances[k // n_met]}/{cols.metrics[k % n_met]}"
        if rows.size < min_samples:
            short.append(f"{name} ({rows.size})")
            continue
        out.append((name, cols.ts[rows], cols.values[rows]))
    if short and warnings is not None:
        shown = ", ".join(sorted(short)[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
        warnings.append(f"{cols.source}: {len(short)} series with fewer than {min_samples} samples not "
                        f"backtested: {shown}")
    return sorted(out, key=lambda s: s[0])


def replay_all(cols: tidy.TidyColumns, rules: dict[str, Rule], *, fit_fraction: float = 0.25,
               refit_seconds: float = 3600.0, warnings: list[str] | None = None) -> list[Replay]:
    """Replays of every series of ``cols``, cleaned and de-duplicated first; what reading and cleaning
    reported, and the series too short to replay, are added to ``warnings`` if given."""
    check_replay_params(fit_fraction, refit_seconds)
    cols = tidy.drop_duplicates(tidy.clean(cols))
    if warnings is not None:
        warnings.extend(cols.warnings)  # the reader's, then cleaning's
    return [replay_series(ts, values, rules, name=name, fit_fraction=fit_fraction, refit_seconds=refit_seconds)
            for name, ts, values in series_of(cols, warnings=warnings)]


def backtest(cols: tidy.TidyColumns, *, rule: SizingRule | None = None, fit_fraction: float = 0.25,
             refit_seconds: float = 3600.0, warnings: list[str] | None = None) -> list[SeriesResult]:
    """Backtest every series of ``cols`` (cleaned first) with our rule and the two reference rules (see
    :func:`replay_all` for ``warnings``)."""
    rules = default_rules(rule)
    return [r.score(name) for r in replay_all(cols, rules, fit_fraction=fit_fraction,
                                              refit_seconds=refit_seconds, warnings=warnings) for name in rules]


# --- summaries -----------------------------------------------------------------------------------------

def summary(results: Iterable[SeriesResult]) -> dict[str, dict[str, float]]:
    """Per rule: pooled coverage over all replayed samples, worst series, mean and median relative slack."""
    results = list(results)
    out: dict[str, dict[str, float]] = {}
    for rule in dict.fromkeys(r.rule for r in results):
        rs = [r for r in results if r.rule == rule and r.samples]
        samples = sum(r.samples for r in rs)
        rel = [r.relative_slack for r in rs if math.isfinite(r.relative_slack)]
        per_need = [r.slack_per_need for r in rs if math.isfinite(r.slack_per_need)]
        out[rule] = {"series": len(rs), "samples": samples,
                     "coverage": sum(r.covered for r in rs) / samples if samples else math.nan,
                     "min_series_coverage": min((r.coverage for r in rs), default=math.nan),
                     "mean_relative_slack": float(np.mean(rel)) if rel else math.nan,
                     "median_relative_slack": float(np.median(rel)) if rel else math.nan,
                     "mean_slack_per_need": float(np.mean(per_need)) if per_need else math.nan}
    return out


def frontier(replays: Sequence[Replay], rule: str, multipliers: Sequence[float]) -> list[tuple[float, dict[str, float]]]:
    """Coverage vs slack of ``rule`` with its capacity scaled by each multiplier (a sweep of its margin)."""
    return [(m, summary(r.score(rule, m) for r in replays)[rule]) for m in multipliers]


def score_grid(replays: Sequence[Replay], rule: str, multipliers: Sequence[float]) -> list[list[SeriesResult]]:
    """[series][multiplier] results of ``rule`` with its capacity scaled by each multiplier."""
    return [[r.score(rule, m) for m in multipliers] for r in replays]


def tuned_multiplier(grid: list[list[SeriesResult]], series: Sequence[int], target: float) -> int | None:
    """Index of the multiplier with the least mean relative slack over ``series`` among those whose pooled
    coverage reaches ``target`` (None if none does)."""
    best, best_slack = None, math.inf
    for j in range(len(grid[0]) if grid else 0):
        rs = [grid[i][j] for i in series]
        s = summary(rs)[rs[0].rule]
        if s["coverage"] >= target and s["mean_relative_slack"] < best_slack:
            best, best_slack = j, s["mean_relative_slack"]
    return best


def cross_validate(grid: list[list[SeriesResult]], multipliers: Sequence[float], folds: Sequence[Sequence[int]],
                   target: float = 0.995) -> tuple[dict[str, float], list[float | None]]:
    """Tune the multiplier on all series but a fold's, score the fold's series with it; pool every fold.

    Returns the pooled held-out summary and the multiplier each fold chose (None: tuning never reached the
    target, and the fold is then scored at the largest multiplier)."""
    held_out: list[SeriesResult] = []
    chosen: list[float | None] = []
    everyone = range(len(grid))
    for fold in folds:
        j = tuned_multiplier(grid, [i for i in everyone if i not in set(fold)], target)
        chosen.append(None if j is None else float(multipliers[j]))
        held_out.extend(grid[i][len(multipliers) - 1 if j is None else j] for i in fold)
    return summary(held_out)[held_out[0].rule], chosen


def least_slack_at(points: Sequence[tuple[float, dict[str, float]]], target: float
                   ) -> tuple[float, dict[str, float]] | None:
    """The point of a frontier with the least mean relative slack among those covering ≥ target."""
    ok = [p for p in points if p[1]["coverage"] >= target]
    return min(ok, key=lambda p: p[1]["mean_relative_slack"]) if ok else None


def clairvoyant_bound(replays: Sequence[Replay], target: float = 0.995) -> dict[str, float]:
    """A lower bound no re-sizing rule can beat: capacities chosen per interval KNOWING its demand.

    Per interval, capacity sits at one of its samples (dropping the k highest as misses); the k per interval
    minimise Σ series' relative slack + λ·misses, with λ bisected until pooled coverage reaches ``target``.
    """
    return _least_slack_in_hindsight(replays, target, per_interval=True)


def static_hindsight_bound(replays: Sequence[Replay], target: float = 0.995) -> dict[str, float]:
    """The least slack of ONE capacity per series held over its whole replay, chosen knowing that replay.

    Not a bound on re-sizing rules (they may follow level shifts), but what knowing each series' future
    demand distribution, without knowing when the bursts come, is worth: misses are placed where covering is
    dearest, as :func:`clairvoyant_bound` places them per interval.
    """
    return _least_slack_in_hindsight(replays, target, per_interval=False)


def _least_slack_in_hindsight(replays: Sequence[Replay], target: float, *, per_interval: bool
                              ) -> dict[str, float]:
    pieces = []  # (series index, weight 1/(n·mean), sorted-descending demand of the interval or replay)
    total = 0
    for s, r in enumerate(replays):
        n, mean = r.demand.size, float(r.demand.mean()) if r.demand.size else 0.0
        if n == 0 or mean <= 0:
            continue
        total += n
        for seg in np.split(r.demand, r.interval_starts[1:]) if per_interval else [r.demand]:
            pieces.append((s, 1.0 / (n * mean), np.sort(seg)[::-1]))
    series = sorted({p[0] for p in pieces})
    if total == 0:  # no series with replayed samples and a positive mean demand: nothing to bound
        return {"coverage": math.nan, "mean_relative_slack": math.nan, "median_relative_slack": math.nan,
                "series": 0, "samples": 0}
    # slack of capacity d[k] over its piece: Σ_{j ≥ k} (d[k] − d[j]), for every k at once
    costs = [(s, w, d * (d.size - np.arange(d.size)) - np.cumsum(d[::-1])[::-1]) for s, w, d in pieces]

    def solve(lam: float) -> tuple[float, dict[int, float]]:
        misses, rel = 0, dict.fromkeys(series, 0.0)
        for s, w, slack in costs:
            best = int(np.argmin(slack * w + lam * np.arange(slack.size)))
            misses += best
            rel[s] += float(slack[best] * w)
        return 1.0 - misses / total, rel

    lo, hi = 0.0, 1.0
    while solve(hi)[0] < target and hi < 1e6:
        hi *= 4
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if solve(mid)[0] < target else (lo, mid)
    cov, rel = solve(hi)
    vals = list(rel.values())
    return {"coverage": cov, "mean_relative_slack": float(np.mean(vals)), "median_relative_slack":
            float(np.median(vals)), "series": len(vals), "samples": total}


def format_table(results: list[SeriesResult], *, per_series: bool = False) -> str:
    lines = []
    width = max([len(r.rule) for r in results] + [12])
    if per_series:
        lines.append(f"{'series':48} {'rule':{width}} {'coverage':>9} {'rel.slack':>9} {'slack/need':>10}")
        for r in results:
            lines.append(f"{r.series[:48]:48} {r.rule:{width}} {r.coverage:9.4f} {r.relative_slack:9.3f} "
                         f"{r.slack_per_need:10.3f}")
        lines.append("")
    lines.append(summary_header(width))
    for rule, s in summary(results).items():
        lines.append(summary_line(rule, s, width))
    return "\n".join(lines)


def summary_header(width: int = 12) -> str:
    return (f"{'rule':{width}} {'series':>6} {'samples':>8} {'coverage':>9} {'min series':>10} "
            f"{'mean rel. slack':>15} {'median rel. slack':>17} {'slack/need':>10}")


def summary_line(rule: str, s: dict[str, float], width: int = 12) -> str:
    return (f"{rule:{width}} {int(s['series']):6d} {int(s['samples']):8d} {s['coverage']:9.4%} "
            f"{s['min_series_coverage']:10.4%} {s['mean_relative_slack']:15.3f} "
            f"{s['median_relative_slack']:17.3f} {s['mean_slack_per_need']:10.3f}")
