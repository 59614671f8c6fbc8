"""Sizing-rule backtest on the real CloudWatch traces (/work/shared/data/metrics): coverage vs slack.

    .venv/bin/python bench/backtest.py [--metrics DIR] [--fit-fraction 0.25] [--refit-seconds 3600]
                                       [--also-refit-seconds 300] [--tune]

Same replay as ``python -m shadowing capacity backtest`` (fit on the first 25 % of each series, re-size every
``--refit-seconds`` from the past only, check the next interval's samples; see
:mod:`shadowing.capacity.backtest` for the metric definitions). Prints, in one run:

1. at each cadence (``--refit-seconds``, 3600 s by default, and ``--also-refit-seconds``, 300 s by default;
   every rule at the same cadence): our rule (peak-aware), the earlier classic rule, AWS ARC's (max of 24 h ×
   100 %), Kubernetes VPA's (decayed P90 + 15 %), the same three rules with an online-calibrated margin
   (adaptive conformal inference, :func:`~shadowing.capacity.backtest.calibrated`, α = 0.5 %), and a
   clairvoyant lower bound (capacity chosen per re-sizing interval knowing its demand) and a static hindsight
   figure (one capacity per series for its whole replay, chosen knowing it), both at 99.5 % coverage;
   once on all series and once on the CPU-utilisation series only (the metric the product sizes from);
2. where the slack is: per series, each rule's coverage and relative slack, and the share of the pooled
   miss budget (0.5 % of all samples) that VPA's misses on that series alone would use, and in how many
   separate runs they come; then the same on half A
   (series 0, 2, 4, … by name) and half B (1, 3, 5, …), at the first cadence;
3. the Pareto picture: each rule's capacity scaled by a sweep of multipliers (i.e. of its margin), and for each
   rule the least slack at ≥ 99.5 % coverage and the slack at VPA's own coverage;
4. held-out checks: each rule's multiplier tuned on some series and scored on the others (half A → B, half
   B → A, leave-one-series-out), so a margin that only fits the series it was tuned on shows;
5. with ``--tune``: the same checks for the grid the peak-aware parameters were chosen from;
6. with ``--aci-bases``: the online calibration on plain recent-level predictors (last sample, max of the last
   1 h / 6 h, p99 of the last 24 h) and on a daily profile (the max of the same hour of day ± 1 h over the last
   7 days, floored at their p90) at both cadences, all series and CPU only; then, at the first cadence, each
   one's least slack at ≥ 99.5 % over a sweep of multipliers on its capacity, and the held-out checks of 4. for
   the plain bases.

Slack only compares fairly between rules of similar coverage: a rule that misses 4 % of samples is cheaper by
construction, so the verdict compares at equal coverage too.

Cadence: the capacity_profiler DAG refreshes the fingerprint (and its sizing) every 5 minutes, so 300 s is how
stale a sizing can be. 3600 s stays the default because a shadow sizing is what a failover launches: it has to
hold from launch until the standby's own scaling takes over, which a 5-minute evaluation does not ask of it.
Both are printed; the verdict is given at each.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from shadowing.capacity.backtest import (
    MIN_SAMPLES,
    Replay,
    add_calibrated,
    arc_max24h,
    arc_rule,
    clairvoyant_bound,
    cross_validate,
    frontier,
    last_value,
    least_slack_at,
    ours,
    recent_quantile_rule,
    replay_all,
    same_hour_of_day_rule,
    score_grid,
    series_of,
    static_hindsight_bound,
    summary,
    summary_header,
    summary_line,
    vpa_p90,
)
from shadowing.capacity.sizing import PEAK_AWARE, SizingRule
from shadowing.errors import InputError, ShadowingError
from shadowing.metrics import frame as tidy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "metrics" / "nab_realAWSCloudwatch"
TARGET = 0.995
WIDTH = 26
CPU = "cpu_utilization"
ACI_GAMMAS = (0.005, 0.02, 0.1)  # step sizes shown for the peak-aware base (a sensitivity, none is chosen)
MULTIPLIERS = np.round(np.concatenate((np.arange(0.5, 0.8, 0.05), np.arange(0.8, 2.0, 0.01),
                                       np.arange(2.0, 10.01, 0.25))), 4)


def halves(n: int) -> list[list[int]]:
    """Two folds by series name: even positions and odd positions."""
    return [list(range(0, n, 2)), list(range(1, n, 2))]


def table(replays: list[Replay], rules: list[str], title: str) -> dict[str, dict[str, float]]:
    s = summary(r.score(name) for r in replays for name in rules)
    print(f"\n{title}")
    if not replays:
        print("(no series)")
        return s
    print(summary_header(WIDTH))
    for name in rules:
        print(summary_line(name, s[name], WIDTH))
    return s


def miss_runs(replay: Replay, rule: str) -> int:
    """Separate runs of consecutive missed samples (how often demand outgrew the rule's capacity afresh)."""
    miss = (replay.demand > replay.capacity[rule]).astype(np.int8)
    return int((np.diff(miss, prepend=0) == 1).sum())


def per_series(replays: list[Replay], rules: list[str]) -> None:
    """Per series: coverage / relative slack of each rule; VPA's misses against the pooled budget."""
    budget = (1 - TARGET) * sum(r.demand.size for r in replays)
    print(f"\nper series (coverage / mean rel. slack); pooled miss budget at {TARGET:.1%}: {budget:.0f} samples")
    print(f"{'series':40} {'samples':>7} " + " ".join(f"{name[:20]:>20}" for name in rules)
          + f" {'VPA misses / budget':>20} {'VPA miss runs':>13}")
    for r in replays:
        cells = [r.score(name) for name in rules]
        vpa = r.score("vpa-p90+15%")
        print(f"{r.series[:40]:40} {r.demand.size:7d} "
              + " ".join(f"{c.coverage:10.2%}/{c.relative_slack:<9.2f}" for c in cells)
              + f" {(vpa.samples - vpa.covered) / budget:20.0%} {miss_runs(r, 'vpa-p90+15%'):13d}")


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
    if n < 2:
        print(f"\n{title}: needs at least two series (tuned on some, scored on the others); {n} here")
        return
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


def calibrate_all(replays: list[Replay], ours_name: str) -> list[str]:
    """Add the online-calibrated variants (α = 0.5 %) to every replay; returns their names."""
    names = []
    for gamma in ACI_GAMMAS:
        name = f"aci(peak-aware) γ={gamma:g}"
        add_calibrated(replays, ours_name, name, alpha=1 - TARGET, gamma=gamma)
        names.append(name)
    for base, short in (("arc-max24h", "arc"), ("vpa-p90+15%", "vpa")):
        name = f"aci({short}) γ=0.02"
        add_calibrated(replays, base, name, alpha=1 - TARGET, gamma=0.02)
        names.append(name)
    return names


def verdict(s: dict[str, dict[str, float]], ours_name: str, label: str) -> None:
    o = s[ours_name]
    checks = {ref: (o["mean_relative_slack"] < s[ref]["mean_relative_slack"],
                    o["mean_slack_per_need"] < s[ref]["mean_slack_per_need"]) for ref in ("arc-max24h", "vpa-p90+15%")}
    marks = "; ".join(f"less mean rel. slack / slack/need than {ref}: {'✓' if a else '✗'} / {'✓' if b else '✗'}"
                      for ref, (a, b) in checks.items())
    print(f"issue target, {label}: {ours_name} coverage {o['coverage']:.2%} {'✓' if o['coverage'] >= TARGET else '✗'}; "
          f"{marks} (VPA covers {s['vpa-p90+15%']['coverage']:.2%})")


def cadence_tables(replays: list[Replay], names: list[str], ours_name: str, refit: float) -> None:
    """All series, then the CPU-utilisation ones, each with its clairvoyant and static hindsight bounds and the
    verdict."""
    cpu = [r for r in replays if r.series.endswith("/" + CPU)]
    for subset, label in ((replays, f"all {len(replays)} series"), (cpu, f"the {len(cpu)} {CPU} series only")):
        title = f"re-sized every {refit:g} s, {label}"
        s = table(subset, names, title)
        if not subset:
            continue
        bound = clairvoyant_bound(subset, TARGET)
        print(f"{'clairvoyant bound':{WIDTH}} {int(bound['series']):6d} {int(bound['samples']):8d} "
              f"{bound['coverage']:9.4%} {'':10} {bound['mean_relative_slack']:15.3f} "
              f"{bound['median_relative_slack']:17.3f}   (knows each {refit:g} s interval's demand in advance)")
        static = static_hindsight_bound(subset, TARGET)
        print(f"{'static hindsight':{WIDTH}} {int(static['series']):6d} {int(static['samples']):8d} "
              f"{static['coverage']:9.4%} {'':10} {static['mean_relative_slack']:15.3f} "
              f"{static['median_relative_slack']:17.3f}   (one capacity per series, knowing its whole replay)")
        verdict(s, ours_name, title)


def aci_bases(cols: tidy.TidyColumns, fit_fraction: float, cadences: list[float]) -> None:
    """Adaptive conformal inference on plain recent-level bases (θ starts at 0, α = 0.5 %)."""
    bases = {"last sample": last_value, "max 1 h": arc_rule(3600.0), "max 6 h": arc_rule(6 * 3600.0),
             "p99 24 h": recent_quantile_rule(86400.0, 0.99), "hour of day 7 d ±1 h": same_hour_of_day_rule()}
    for k, refit in enumerate(cadences):
        replays = replay_all(cols, bases, fit_fraction=fit_fraction, refit_seconds=refit)
        names = []
        for base in bases:
            names.append(base)
            for gamma in (0.005, 0.02):
                name = f"aci({base}) γ={gamma:g}"
                add_calibrated(replays, base, name, alpha=1 - TARGET, gamma=gamma)
                names.append(name)
        table(replays, names, f"online calibration on recent-level bases, re-sized every {refit:g} s, all series")
        cpu = [r for r in replays if r.series.endswith("/" + CPU)]
        table(cpu, names, f"the same, the {len(cpu)} {CPU} series only")
        if k == 0:
            print(f"\nleast mean rel. slack at ≥ {TARGET:.1%} with a multiplier on the capacity (all series, "
                  f"× {MULTIPLIERS[0]:g}–{MULTIPLIERS[-1]:g}), re-sized every {refit:g} s")
            for name in names:
                hit = least_slack_at(frontier(replays, name, MULTIPLIERS), TARGET)
                print(f"{name:{WIDTH}} " + (f"× {hit[0]:<5g} {hit[1]['coverage']:9.4%} "
                                             f"{hit[1]['mean_relative_slack']:8.3f}" if hit else "never"))
            validate(replays, list(bases), "the plain bases, held out")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked: an out-of-range one exits 2 with a one-line error naming it (argparse's own)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", default=str(DEFAULT_DATA), help="metrics file or folder (default: the "
                                                                     "shared NAB realAWSCloudwatch traces)")
    parser.add_argument("--fit-fraction", type=float, default=0.25,
                        help="share of each series' span used to fit first, in (0, 1) (default 0.25)")
    parser.add_argument("--refit-seconds", type=float, default=3600.0,
                        help="re-size cadence of every section, seconds > 0 (default 3600: a failover sizing "
                             "holds an hour)")
    parser.add_argument("--also-refit-seconds", type=float, default=300.0,
                        help="second cadence for the main tables, seconds >= 0 (default 300: the DAG's refresh; "
                             "0 = none)")
    parser.add_argument("--tune", action="store_true", help="also print the tuning grid (≈ 1–2 min)")
    parser.add_argument("--aci-bases", action="store_true",
                        help="also calibrate plain recent-level bases online (≈ 30 s)")
    args = parser.parse_args(argv)
    if not 0.0 < args.fit_fraction < 1.0:  # NaN fails too
        parser.error(f"--fit-fraction must be a fraction in (0, 1), got {args.fit_fraction:g}")
    if not (math.isfinite(args.refit_seconds) and args.refit_seconds > 0):
        parser.error(f"--refit-seconds must be a finite number of seconds > 0, got {args.refit_seconds:g}")
    if not (math.isfinite(args.also_refit_seconds) and args.also_refit_seconds >= 0):
        parser.error(f"--also-refit-seconds must be a finite number of seconds >= 0 (0 = none), got "
                     f"{args.also_refit_seconds:g}")
    if not Path(args.metrics).exists():
        parser.error(f"--metrics: no metrics at {args.metrics}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except ShadowingError as exc:  # unreadable or unusable metrics: one line, exit 2 (as the CLI does)
        print(f"backtest.py: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    cols = tidy.drop_duplicates(tidy.clean(tidy.read_metrics(args.metrics)))
    warnings = list(cols.warnings)
    long_enough = series_of(cols, warnings=warnings)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not long_enough:
        raise InputError(f"no series to backtest: each needs at least {MIN_SAMPLES} samples", source=args.metrics)
    ours_name = PEAK_AWARE.name
    rules = {ours_name: ours(PEAK_AWARE), "shadowing-classic": ours(SizingRule()), "arc-max24h": arc_max24h,
             "vpa-p90+15%": vpa_p90}
    names = list(rules)
    print(f"backtest of {args.metrics}: fit on first {args.fit_fraction:.0%} of each series, re-size from past "
          f"samples only")
    print(f"{ours_name} = max(decayed p{PEAK_AWARE.percentile * 100:g}, hour-of-week peak of the next "
          f"{PEAK_AWARE.lookahead_seconds / 3600:g} h) × (1 + {PEAK_AWARE.margin:g}) × confidence (boost "
          f"{PEAK_AWARE.short_history_boost:g} until {PEAK_AWARE.full_history_seconds / 86400:g} d)")
    print(f"aci(X) γ = X's capacity × exp(θ), θ += γ·(misses − {1 - TARGET:.3f}·samples) after every interval "
          f"(adaptive conformal inference, causal; θ starts at 0)")
    print("slack = mean idle capacity max(capacity − demand, 0); rel. = ÷ replay mean demand; "
          "need = replay p99.5 demand")
    cadences = [args.refit_seconds] + ([args.also_refit_seconds] if args.also_refit_seconds > 0
                                       and args.also_refit_seconds != args.refit_seconds else [])
    replays: list[Replay] = []
    for k, refit in enumerate(cadences):
        t1 = time.perf_counter()
        at = replay_all(cols, rules, fit_fraction=args.fit_fraction, refit_seconds=refit)
        calibrated_names = calibrate_all(at, ours_name)
        print(f"\n=== re-size every {refit:g} s: {len(at)} series, replay {time.perf_counter() - t1:.1f} s ===")
        cadence_tables(at, names + calibrated_names, ours_name, refit)
        if k == 0:
            replays = at
    refit = cadences[0]
    print(f"\n=== sections below: re-size every {refit:g} s ===")
    per_series(replays, names)
    a, b = halves(len(replays))
    table([replays[i] for i in a], names, f"half A ({', '.join(replays[i].series for i in a)})")
    table([replays[i] for i in b], names, f"half B ({', '.join(replays[i].series for i in b)})")
    pareto(replays, names, "vpa-p90+15%")
    validate(replays, names, "held-out checks")
    if args.tune:
        tune(cols, args.fit_fraction, refit)
    if args.aci_bases:
        aci_bases(cols, args.fit_fraction, cadences)
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
