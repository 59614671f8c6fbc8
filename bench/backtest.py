"""Sizing-rule backtest on the real CloudWatch traces (/work/shared/data/metrics): coverage vs slack.

    .venv/bin/python bench/backtest.py [--metrics DIR] [--fit-fraction 0.25] [--refit-seconds 3600] [--tune]

Same replay as ``python -m shadowing capacity backtest`` (fit on the first 25 % of each series, re-size every
hour from the past only, check the next hour's samples; see :mod:`shadowing.capacity.backtest` for the metric
definitions). Prints, in one run:

1. our rule (peak-aware), the earlier classic rule, AWS ARC's (max of 24 h × 100 %) and Kubernetes VPA's
   (decayed P90 + 15 %) on all series, and a clairvoyant lower bound (capacity chosen per hour knowing that
   hour's demand) at 99.5 % coverage;
2. the same on half A (series 0, 2, 4, … by name) and half B (1, 3, 5, …);
3. the Pareto picture: each rule's capacity scaled by a sweep of multipliers (i.e. of its margin), and for each
   rule the least slack at ≥ 99.5 % coverage and the slack at VPA's own coverage;
4. held-out checks: each rule's multiplier tuned on some series and scored on the others (half A → B, half
   B → A, leave-one-series-out), so a margin that only fits the series it was tuned on shows;
5. with ``--tune``: the same checks for the grid the peak-aware parameters were chosen from.

Slack only compares fairly between rules of similar coverage: a rule that misses 4 % of samples is cheaper by
construction, so the verdict compares at equal coverage too.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from shadowing.capacity.backtest import (
    Replay,
    arc_max24h,
    clairvoyant_bound,
    cross_validate,
    frontier,
    least_slack_at,
    ours,
    replay_all,
    score_grid,
    summary,
    summary_header,
    summary_line,
    vpa_p90,
)
from shadowing.capacity.sizing import PEAK_AWARE, SizingRule
from shadowing.metrics import frame as tidy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "metrics" / "nab_realAWSCloudwatch"
TARGET = 0.995
WIDTH = 22
MULTIPLIERS = np.round(np.concatenate((np.arange(0.5, 0.8, 0.05), np.arange(0.8, 2.0, 0.01),
                                       np.arange(2.0, 10.01, 0.25))), 4)


def halves(n: int) -> list[list[int]]:
    """Two folds by series name: even positions and odd positions."""
    return [list(range(0, n, 2)), list(range(1, n, 2))]


def table(replays: list[Replay], rules: list[str], title: str) -> dict[str, dict[str, float]]:
    s = summary(r.score(name) for r in replays for name in rules)
    print(f"\n{title}")
    print(summary_header(WIDTH))
    for name in rules:
        print(summary_line(name, s[name], WIDTH))
    return s


def pareto(replays: list[Replay], rules: list[str], reference: str) -> None:
    fronts = {name: frontier(replays, name, MULTIPLIERS) for name in rules}
    ref_cov = summary(r.score(reference) for r in replays)[reference]["coverage"]
    print(f"\nPareto: each rule × a multiplier on its capacity (all series); least mean rel. slack at ≥ {TARGET:.1%} "
          f"coverage, and at {reference}'s own coverage ({ref_cov:.2%})")
    print(f"{'rule':{WIDTH}} {'×':>5} {'coverage':>9} {'mean rel. slack':>15} {'median':>7} {'slack/need':>10} | "
          f"{'×':>5} {'coverage':>9} {'mean rel. slack':>15}")
    for name, points in fronts.items():
        hit = least_slack_at(points, TARGET)
        same = least_slack_at(points, ref_cov)
        left = (f"{hit[0]:5.2f} {hit[1]['coverage']:9.4%} {hit[1]['mean_relative_slack']:15.3f} "
                f"{hit[1]['median_relative_slack']:7.3f} {hit[1]['mean_slack_per_need']:10.3f}" if hit
                else f"{'':5} {'never':>9} {'':15} {'':7} {'':10}")
        right = (f"{same[0]:5.2f} {same[1]['coverage']:9.4%} {same[1]['mean_relative_slack']:15.3f}" if same
                 else "never")
        print(f"{name:{WIDTH}} {left} | {right}")
    print("\nfrontier points (coverage / mean rel. slack) by multiplier:")
    shown = [m for m in (0.9, 1.0, 1.02, 1.1, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0) if m in set(MULTIPLIERS.tolist())]
    print(f"{'rule':{WIDTH}} " + " ".join(f"{'×' + format(m, 'g'):>15}" for m in shown))
    for name, points in fronts.items():
        by_m = dict(points)
        print(f"{name:{WIDTH}} " + " ".join(
            f"{by_m[m]['coverage']:7.2%}/{by_m[m]['mean_relative_slack']:<7.2f}" for m in shown))


def validate(replays: list[Replay], rules: list[str], title: str) -> None:
    """Held-out checks of each rule family: its multiplier tuned on some series, scored on the others."""
    n = len(replays)
    a, b = halves(n)
    checks = {"half A → B": [b], "half B → A": [a], "leave-one-out": [[i] for i in range(n)]}
    print(f"\n{title}: multiplier on the rule's capacity tuned (least slack at ≥ {TARGET:.1%}) on the other "
          f"series, pooled over the held-out ones (A = series 0, 2, 4… by name, B = 1, 3, 5…)")
    print(f"{'rule':{WIDTH}} " + " | ".join(f"{k + ': ×, coverage, mean, median':>40}" for k in checks))
    for name in rules:
        grid = score_grid(replays, name, MULTIPLIERS)
        cells = []
        for folds in checks.values():
            s, chosen = cross_validate(grid, MULTIPLIERS, folds, TARGET)
            known = [c for c in chosen if c is not None]
            mult = ("never" if not known else f"{min(known):g}" if min(known) == max(known)
                    else f"{min(known):g}–{max(known):g}")
            cells.append(f"{mult:>10} {s['coverage']:9.4%} {s['mean_relative_slack']:7.2f} "
                         f"{s['median_relative_slack']:6.2f}{'' if s['coverage'] >= TARGET else ' ✗'}")
        print(f"{name:{WIDTH}} " + " | ".join(f"{c:>40}" for c in cells))


def tune(cols: tidy.TidyColumns, fit_fraction: float, refit_seconds: float) -> None:
    """The grid PEAK_AWARE was chosen from (boost 0.25, lookahead 1 h; margin swept as a multiplier)."""
    grid = {}
    for seasonal in (False, True):
        for p in (0.97, 0.98, 0.99, 0.995):
            rule = replace(PEAK_AWARE, percentile=p, seasonal=seasonal, margin=0.0)
            grid[f"{'max(' if seasonal else ''}dec p{p * 100:g}{', how)' if seasonal else ''}"] = rule
    grid["all-history p99"] = replace(SizingRule(), percentile=0.99, margin=0.0, short_history_boost=0.25)
    grid["all-history p99.5"] = replace(SizingRule(), margin=0.0, short_history_boost=0.25)
    replays = replay_all(cols, {k: ours(r) for k, r in grid.items()}, fit_fraction=fit_fraction,
                         refit_seconds=refit_seconds)
    validate(replays, list(grid), "tuning grid (margin 0, so × is 1 + margin)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", default=str(DEFAULT_DATA))
    parser.add_argument("--fit-fraction", type=float, default=0.25)
    parser.add_argument("--refit-seconds", type=float, default=3600.0)
    parser.add_argument("--tune", action="store_true", help="also print the tuning grid (≈ 1–2 min)")
    args = parser.parse_args()
    if not Path(args.metrics).exists():
        raise SystemExit(f"no metrics at {args.metrics}")
    t0 = time.perf_counter()
    cols = tidy.drop_duplicates(tidy.clean(tidy.read_metrics(args.metrics)))
    ours_name = PEAK_AWARE.name
    rules = {ours_name: ours(PEAK_AWARE), "shadowing-classic": ours(SizingRule()), "arc-max24h": arc_max24h,
             "vpa-p90+15%": vpa_p90}
    names = list(rules)
    replays = replay_all(cols, rules, fit_fraction=args.fit_fraction, refit_seconds=args.refit_seconds)
    print(f"backtest of {args.metrics}: {len(replays)} series, fit on first {args.fit_fraction:.0%} of each, "
          f"re-size every {args.refit_seconds:g} s from past samples only; replay {time.perf_counter() - t0:.1f} s")
    print(f"{ours_name} = max(decayed p{PEAK_AWARE.percentile * 100:g}, hour-of-week peak of the next "
          f"{PEAK_AWARE.lookahead_seconds / 3600:g} h) × (1 + {PEAK_AWARE.margin:g}) × confidence (boost "
          f"{PEAK_AWARE.short_history_boost:g} until {PEAK_AWARE.full_history_seconds / 86400:g} d)")
    print("slack = mean idle capacity max(capacity − demand, 0); rel. = ÷ replay mean demand; "
          "need = replay p99.5 demand")
    everything = table(replays, names, "all series")
    bound = clairvoyant_bound(replays, TARGET)
    print(f"{'clairvoyant bound':{WIDTH}} {int(bound['series']):6d} {int(bound['samples']):8d} "
          f"{bound['coverage']:9.4%} {'':10} {bound['mean_relative_slack']:15.3f} "
          f"{bound['median_relative_slack']:17.3f}   (knows each hour's demand in advance)")
    a, b = halves(len(replays))
    table([replays[i] for i in a], names, f"half A ({', '.join(replays[i].series for i in a)})")
    table([replays[i] for i in b], names, f"half B ({', '.join(replays[i].series for i in b)})")
    pareto(replays, names, "vpa-p90+15%")
    validate(replays, names, "held-out checks")
    if args.tune:
        tune(cols, args.fit_fraction, args.refit_seconds)
    o = everything[ours_name]
    beats = {r: o["mean_relative_slack"] < everything[r]["mean_relative_slack"] for r in ("arc-max24h", "vpa-p90+15%")}
    print(f"\nissue target ({ours_name} ≥ {TARGET:.1%} coverage, less mean slack than ARC and VPA): "
          f"coverage {o['coverage']:.2%} {'✓' if o['coverage'] >= TARGET else '✗'}; less slack than ARC "
          f"{'✓' if beats['arc-max24h'] else '✗'}; than VPA {'✓' if beats['vpa-p90+15%'] else '✗'} "
          f"(VPA covers {everything['vpa-p90+15%']['coverage']:.2%}; even the clairvoyant bound at {TARGET:.1%} "
          f"has {bound['mean_relative_slack']:.2f}); {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
