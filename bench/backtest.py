"""Sizing-rule backtest on the real CloudWatch traces (/work/shared/data/metrics): coverage vs slack.

    .venv/bin/python bench/backtest.py [--metrics DIR] [--fit-fraction 0.25] [--refit-seconds 3600]

Runs the same replay as ``python -m shadowing capacity backtest`` (fit on the first part of each series, re-size
every hour from the past only, check the next hour's samples) for our rule and the two references (AWS ARC's
max over 24 h, Kubernetes VPA's decayed P90 + 15 %), plus candidate variants of our rule, and prints one table.
Slack only compares fairly between rules of similar coverage: a rule that misses 5 % of samples is cheaper by
construction, so both columns are printed and the verdict compares slack among rules with ≥ 99.5 % coverage.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from shadowing.capacity.backtest import DAY, Rule, backtest_series, default_rules, summary
from shadowing.capacity.sizing import SizingRule
from shadowing.metrics import frame as tidy
from shadowing.metrics.sketch import LogSketch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "metrics" / "nab_realAWSCloudwatch"
TARGET = 0.995


def recent_quantile(rule: SizingRule, days: float) -> Rule:
    """Our rule on the last ``days`` only (forgets old regimes; same margin and short-history caution)."""
    def size(ts: np.ndarray, values: np.ndarray, now: float, first: float) -> float:
        recent = values[ts >= now - days * DAY]
        recent = recent if recent.size else values
        q = LogSketch.from_values(recent).quantiles([rule.percentile], float(recent.min()), float(recent.max()))[0]
        return rule.capacity(q or 0.0, now - first)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", default=str(DEFAULT_DATA))
    parser.add_argument("--fit-fraction", type=float, default=0.25)
    parser.add_argument("--refit-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    if not Path(args.metrics).exists():
        raise SystemExit(f"no metrics at {args.metrics}")
    t0 = time.perf_counter()
    cols = tidy.drop_duplicates(tidy.clean(tidy.read_metrics(args.metrics)))
    base = SizingRule()
    rules = dict(default_rules(base))
    rules["ours p99.5 ×1.05"] = default_rules(replace(base, margin=0.05))["shadowing"]
    rules["ours p99 ×1.10"] = default_rules(replace(base, percentile=0.99))["shadowing"]
    rules["ours no-boost"] = default_rules(replace(base, short_history_boost=0.0))["shadowing"]
    rules["p99.5 last 3d"] = recent_quantile(base, 3.0)
    rules["p99.5 last 7d"] = recent_quantile(base, 7.0)
    n_met = max(len(cols.metrics), 1)
    series = cols.instance.astype(np.int64) * n_met + cols.metric
    results = []
    for key in np.unique(series).tolist():
        rows = np.flatnonzero(series == key)
        if rows.size < 10:
            continue
        name = f"{cols.services[int(cols.service[rows[0]])]}/{cols.instances[key // n_met]}/{cols.metrics[key % n_met]}"
        results.extend(backtest_series(cols.ts[rows], cols.values[rows], rules, name=name,
                                       fit_fraction=args.fit_fraction, refit_seconds=args.refit_seconds))
    table = summary(results)
    print(f"backtest of {args.metrics}: fit on first {args.fit_fraction:.0%} of each series, re-size every "
          f"{args.refit_seconds:g} s; {time.perf_counter() - t0:.1f} s")
    print(f"{'rule':18} {'series':>6} {'samples':>8} {'coverage':>9} {'min series':>10} {'mean rel. slack':>15} "
          f"{'median rel. slack':>17}")
    for rule, s in table.items():
        print(f"{rule:18} {s['series']:6d} {s['samples']:8d} {s['coverage']:9.4%} {s['min_series_coverage']:10.4%} "
              f"{s['mean_relative_slack']:15.3f} {s['median_relative_slack']:17.3f}")
    covering = {r: s for r, s in table.items() if s["coverage"] >= TARGET}
    best = min(covering, key=lambda r: covering[r]["mean_relative_slack"]) if covering else None
    print(f"rules with ≥ {TARGET:.1%} coverage: {', '.join(covering) or 'none'}; least mean slack among them: {best}")
    ours = table["shadowing"]
    beats = all(ours["mean_relative_slack"] < table[r]["mean_relative_slack"] for r in ("arc-max24h", "vpa-p90+15%"))
    print(f"issue target (shadowing ≥ {TARGET:.1%} coverage and less mean slack than ARC and VPA): "
          f"{'met' if ours['coverage'] >= TARGET and beats else 'NOT met'} (VPA covers {table['vpa-p90+15%']['coverage']:.2%})")


if __name__ == "__main__":
    main()
