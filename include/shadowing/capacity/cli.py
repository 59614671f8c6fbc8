"""``python -m shadowing fingerprint …`` and ``python -m shadowing capacity backtest …``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    fp = subparsers.add_parser("fingerprint", help="capacity fingerprint of a metrics file (tidy CSV/Parquet)",
                               description="Write the capacity fingerprint (JSON) of a tidy metrics frame; "
                                           "the window is the file's span.")
    fp.add_argument("--metrics", required=True, help="tidy CSV or Parquet file, raw CloudWatch export CSV, "
                                                     "or a folder of them")
    fp.add_argument("--out", required=True, help="fingerprint JSON to write ('-' for stdout); replaced only "
                                                 "once the new one is complete")
    fp.add_argument("--previous", help="fold into this earlier fingerprint instead of starting afresh")
    fp.add_argument("--region", help="region to record (default: the frame's region column)")
    fp.add_argument("--step-seconds", type=int, help="aggregate alignment step, whole seconds dividing an hour "
                                                     "(default: inferred; a fold keeps the previous one's)")
    fp.add_argument("--validate", action="store_true", help="run the Great Expectations suite; exit 2 on failure")
    fp.set_defaults(handler=_fingerprint)

    cap = subparsers.add_parser("capacity", help="capacity sizing tools")
    sub = cap.add_subparsers(dest="capacity_command", required=True, metavar="ACTION")
    bt = sub.add_parser("backtest", help="backtest the sizing rule against ARC's and VPA's on metric traces")
    bt.add_argument("--metrics", required=True, help="metrics file or folder (tidy or raw CloudWatch export)")
    bt.add_argument("--fit-fraction", type=float, default=0.25,
                    help="share of each series' span used to fit first, in (0, 1) (default 0.25)")
    bt.add_argument("--refit-seconds", type=float, default=3600.0,
                    help="capacity is re-sized this often, seconds > 0 (default 3600)")
    bt.add_argument("--percentile", type=float, help="override the rule's percentile, a fraction in (0, 1] "
                                                     "(0.99 for p99)")
    bt.add_argument("--margin", type=float, help="override the rule's margin, a fraction >= 0 (0.05 for 5 %%)")
    bt.add_argument("--per-series", action="store_true", help="also print one line per series and rule")
    bt.set_defaults(handler=_backtest)


def _fingerprint(args: argparse.Namespace) -> int:
    import sys

    from shadowing.capacity.fingerprint import (
        ProfileParams,
        build_file,
        check_previous,
        dumps,
        fold,
        loads,
        measured_step,
        valid_step,
    )
    from shadowing.errors import InputError
    from shadowing.metrics.frame import read_metrics

    if args.step_seconds is not None and not valid_step(args.step_seconds):
        raise InputError(f"{args.step_seconds} s cannot align a fingerprint: give whole seconds dividing an hour "
                         "(e.g. 60, 300, 3600)", field="--step-seconds")
    out = None if args.out == "-" else Path(args.out)
    if out is not None:
        _check_out(out, args)
    previous = None
    warnings: list[str] = []
    if args.previous:
        try:
            raw = Path(args.previous).read_bytes()
        except OSError as exc:
            raise InputError(f"unreadable fingerprint: {exc.strerror or exc}", source=args.previous) from exc
        previous = loads(raw, source=args.previous)
        check_previous(previous, args.previous)  # also a JSON null or list: never "no previous" by accident
    params = ProfileParams(step_seconds=args.step_seconds)
    if previous is None:
        # From scratch: a big Parquet file is streamed (profiled row group by row group as it is read).
        fingerprint = build_file(args.metrics, region=args.region, params=params)
    else:
        kept = (previous.get("params") or {}).get("step_seconds")
        if args.step_seconds is not None and kept is not None and kept != args.step_seconds:
            raise InputError(f"--step-seconds {args.step_seconds} differs from the step the fingerprint was "
                             f"built at ({kept} s), which every fold keeps", source=args.previous,
                             field="params.step_seconds")
        cols = read_metrics(args.metrics, region=args.region)
        measured = measured_step(cols) if kept is not None else None
        if measured is not None and measured != kept:
            warnings.append(f"{args.metrics}: sampled every {measured} s, folded at the fingerprint's step of "
                            f"{kept} s (aggregates average the samples within each step)")
        fingerprint = fold(previous, cols, region=args.region, params=params, previous_source=args.previous)
        fingerprint["warnings"][:0] = warnings
    if args.validate:
        from shadowing.capacity.fingerprint import parse_iso
        from shadowing.quality.fingerprint import validate_fingerprint

        # A file is validated against its own span: freshness relative to the end of its window.
        validate_fingerprint(fingerprint, now=parse_iso(fingerprint["window"]["end"]))
    text = dumps(fingerprint, indent=1)
    if out is None:
        try:
            sys.stdout.buffer.write(text + b"\n")
            sys.stdout.flush()
        except OSError as exc:
            raise InputError(f"cannot write the fingerprint: {exc.strerror or exc}", source="stdout") from None
    else:
        _write_atomically(out, text)
    for warning in fingerprint["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _check_out(out: Path, args: argparse.Namespace) -> None:
    """Refuse an --out that cannot be written before any work is done (and the input file itself)."""
    from shadowing.errors import InputError

    if out.is_dir():
        raise InputError("is a directory; give the fingerprint file's path", source=str(out), field="--out")
    metrics = Path(args.metrics)
    if out.exists() and metrics.exists() and out.samefile(metrics):
        raise InputError("is the metrics input; write the fingerprint elsewhere", source=str(out), field="--out")
    parent = out.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"{existing} is a file, not a folder", source=str(out), field="--out")


def _write_atomically(out: Path, data: bytes) -> None:
    """Write ``out`` through a temporary file in its folder, renamed over it once complete: a failed write
    (disk full, no permission) leaves the previous file as it was and no partial one behind."""
    import os
    import tempfile

    from shadowing.errors import InputError

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise InputError(f"cannot write the fingerprint: {exc.strerror or exc}", source=str(out),
                         field="--out") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if out.exists():
            os.chmod(tmp, out.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise InputError(f"cannot write the fingerprint: {exc.strerror or exc}", source=str(out),
                         field="--out") from None


def _check_options(args: argparse.Namespace) -> None:
    """Refuse out-of-range backtest options, naming the option, before any file is read."""
    import math

    from shadowing.errors import InputError

    checks = [
        ("--fit-fraction", args.fit_fraction, 0.0 < args.fit_fraction < 1.0, "must be a fraction in (0, 1)"),
        ("--refit-seconds", args.refit_seconds, math.isfinite(args.refit_seconds) and args.refit_seconds > 0,
         "must be a finite number of seconds > 0"),
        ("--percentile", args.percentile, args.percentile is None or 0.0 < args.percentile <= 1.0,
         "must be a fraction in (0, 1] (0.99 for p99)"),
        ("--margin", args.margin, args.margin is None or (math.isfinite(args.margin) and args.margin >= 0.0),
         "must be a finite fraction >= 0 (0.05 for 5 %)"),
    ]
    for option, value, ok, why in checks:
        if not ok:  # NaN fails every comparison: refused too
            raise InputError(f"{why}, got {value:g}", field=option)


def _backtest(args: argparse.Namespace) -> int:
    import sys
    from dataclasses import replace

    from shadowing.capacity.backtest import MIN_SAMPLES, backtest, format_table
    from shadowing.capacity.sizing import PEAK_AWARE
    from shadowing.errors import InputError
    from shadowing.metrics.frame import read_metrics

    _check_options(args)
    rule = PEAK_AWARE
    if args.percentile is not None:
        rule = replace(rule, percentile=args.percentile)
    if args.margin is not None:
        rule = replace(rule, margin=args.margin)
    warnings: list[str] = []
    results = backtest(read_metrics(args.metrics), rule=rule, fit_fraction=args.fit_fraction,
                       refit_seconds=args.refit_seconds, warnings=warnings)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not any(r.samples for r in results):
        raise InputError(("no series to backtest: each needs at least "
                          f"{MIN_SAMPLES} samples" if not results else
                          f"no sample left to replay after fitting on the first {args.fit_fraction:g} of each "
                          f"series") + " (see the warnings above)" * bool(warnings), source=args.metrics)
    base = f"max(decayed p{rule.percentile * 100:g}, hour-of-week peak)" if rule.seasonal and rule.decayed \
        else f"p{rule.percentile * 100:g}"
    print(f"rule {rule.name} = {base} × (1 + {rule.margin:g}) × confidence "
          f"(boost {rule.short_history_boost:g} until {rule.full_history_seconds / 86400:g} d of history); "
          f"fit on first {args.fit_fraction:.0%}, refit every {args.refit_seconds:g} s")
    print(format_table(results, per_series=args.per_series))
    return 0
