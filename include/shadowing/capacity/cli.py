"""``python -m shadowing fingerprint …`` and ``python -m shadowing capacity backtest …``."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    fp = subparsers.add_parser("fingerprint", help="capacity fingerprint of a metrics file (tidy CSV/Parquet)",
                               description="Write the capacity fingerprint (JSON) of a tidy metrics frame; "
                                           "the window is the file's span.")
    fp.add_argument("--metrics", required=True, help="tidy CSV or Parquet file, raw CloudWatch export CSV, "
                                                     "or a folder of them")
    fp.add_argument("--out", required=True, help="fingerprint JSON to write ('-' for stdout)")
    fp.add_argument("--previous", help="fold into this earlier fingerprint instead of starting afresh")
    fp.add_argument("--region", help="region to record (default: the frame's region column)")
    fp.add_argument("--step-seconds", type=int, help="aggregate alignment step (default: inferred)")
    fp.add_argument("--validate", action="store_true", help="run the Great Expectations suite; exit 2 on failure")
    fp.set_defaults(handler=_fingerprint)

    cap = subparsers.add_parser("capacity", help="capacity sizing tools")
    sub = cap.add_subparsers(dest="capacity_command", required=True, metavar="ACTION")
    bt = sub.add_parser("backtest", help="backtest the sizing rule against ARC's and VPA's on metric traces")
    bt.add_argument("--metrics", required=True, help="metrics file or folder (tidy or raw CloudWatch export)")
    bt.add_argument("--fit-fraction", type=float, default=0.25, help="share of each series used to fit first")
    bt.add_argument("--refit-seconds", type=float, default=3600.0, help="capacity is re-sized this often")
    bt.add_argument("--percentile", type=float, help="override the rule's percentile (0–1)")
    bt.add_argument("--margin", type=float, help="override the rule's margin")
    bt.add_argument("--per-series", action="store_true", help="also print one line per series and rule")
    bt.set_defaults(handler=_backtest)


def _fingerprint(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from shadowing.capacity.fingerprint import ProfileParams, build_file, dumps, fold, loads
    from shadowing.errors import InputError
    from shadowing.metrics.frame import read_metrics

    previous = None
    if args.previous:
        try:
            raw = Path(args.previous).read_bytes()
        except OSError as exc:
            raise InputError(f"unreadable fingerprint: {exc}", source=args.previous) from exc
        previous = loads(raw, source=args.previous)
    params = ProfileParams(step_seconds=args.step_seconds)
    if previous is None:
        # From scratch: a big Parquet file is streamed (profiled row group by row group as it is read).
        fingerprint = build_file(args.metrics, region=args.region, params=params)
    else:
        fingerprint = fold(previous, read_metrics(args.metrics, region=args.region), region=args.region,
                           params=params, previous_source=args.previous)
    if args.validate:
        from shadowing.capacity.fingerprint import parse_iso
        from shadowing.quality.fingerprint import validate_fingerprint

        # A file is validated against its own span: freshness relative to the end of its window.
        validate_fingerprint(fingerprint, now=parse_iso(fingerprint["window"]["end"]))
    text = dumps(fingerprint, indent=1)
    if args.out == "-":
        sys.stdout.buffer.write(text + b"\n")
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(text)
    for warning in fingerprint["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from shadowing.capacity.backtest import backtest, format_table
    from shadowing.capacity.sizing import PEAK_AWARE
    from shadowing.metrics.frame import read_metrics

    rule = PEAK_AWARE
    if args.percentile is not None:
        rule = replace(rule, percentile=args.percentile)
    if args.margin is not None:
        rule = replace(rule, margin=args.margin)
    results = backtest(read_metrics(args.metrics), rule=rule, fit_fraction=args.fit_fraction,
                       refit_seconds=args.refit_seconds)
    base = f"max(decayed p{rule.percentile * 100:g}, hour-of-week peak)" if rule.seasonal and rule.decayed \
        else f"p{rule.percentile * 100:g}"
    print(f"rule {rule.name} = {base} × (1 + {rule.margin:g}) × confidence "
          f"(boost {rule.short_history_boost:g} until {rule.full_history_seconds / 86400:g} d of history); "
          f"fit on first {args.fit_fraction:.0%}, refit every {args.refit_seconds:g} s")
    print(format_table(results, per_series=args.per_series))
    return 0
