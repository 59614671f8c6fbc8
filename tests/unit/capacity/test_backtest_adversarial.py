"""The backtest against hostile input and its own definitions (the methodology is in test_backtest.py).

* ``python -m shadowing capacity backtest``: an out-of-range option is a one-line exit-2 error naming it;
  an empty folder, files of one sample, NaN values, unsorted timestamps and a constant-zero series are reported
  (stderr) and never crash; the same input gives byte-identical output, whatever the row order;
* coverage and slack of a series small enough to compute by hand are exactly the README's definitions;
* every replayed sample has a capacity, even where float rounding puts the last re-sizing on the last sample;
* ``bench/backtest.py`` checks its own options and survives one series and zero-mean series.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowing.capacity.backtest import (
    MIN_SAMPLES,
    Replay,
    arc_max24h,
    backtest,
    clairvoyant_bound,
    replay_all,
    replay_series,
    static_hindsight_bound,
    vpa_p90,
)
from shadowing.cli import main
from shadowing.metrics import frame as tidy

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "metrics"
START = datetime(2024, 1, 1, tzinfo=UTC)


def write_export(folder: Path, values: list[float | str], *, step: int = 600, name: str = "abcdef",
                 order: list[int] | None = None) -> Path:
    """A raw CloudWatch export (``timestamp,value``) of ``values`` every ``step`` seconds from START."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{(START + timedelta(seconds=step * i)).strftime('%Y-%m-%d %H:%M:%S')},{v}"
            for i, v in enumerate(values)]
    rows = [rows[i] for i in order] if order is not None else rows
    path = folder / f"ec2_cpu_utilization_{name}.csv"
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return folder


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["capacity", "backtest", *args])
    out, err = capsys.readouterr()
    return rc, out, err


# --- options ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("option", "value"), [
    ("--fit-fraction", "0"), ("--fit-fraction", "1"), ("--fit-fraction", "1.5"), ("--fit-fraction", "-0.25"),
    ("--fit-fraction", "nan"), ("--refit-seconds", "0"), ("--refit-seconds", "-300"), ("--refit-seconds", "inf"),
    ("--refit-seconds", "nan"), ("--percentile", "99"), ("--percentile", "0"), ("--percentile", "nan"),
    ("--margin", "-0.1"), ("--margin", "inf"),
])
def test_an_out_of_range_option_is_a_one_line_error_naming_it(capsys: pytest.CaptureFixture[str], option: str,
                                                              value: str) -> None:
    rc, out, err = run_cli(capsys, "--metrics", str(FIXTURES), option, value)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and f"field '{option}'" in err and "Traceback" not in err
    if option == "--percentile" and value == "99":
        assert "0.99 for p99" in err


# --- bad input ----------------------------------------------------------------------------------------------

def test_an_empty_folder_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "--metrics", str(tmp_path))
    assert rc == 2 and out == "" and str(tmp_path) in err and err.count("\n") == 1


def test_files_too_short_to_replay_are_named_then_refused(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    write_export(tmp_path, [5.0], name="aaaaaa")
    write_export(tmp_path, list(range(1, MIN_SAMPLES)), name="bbbbbb")  # one short of the minimum
    rc, out, err = run_cli(capsys, "--metrics", str(tmp_path))
    assert rc == 2 and out == ""
    assert "ec2/aaaaaa/cpu_utilization (1)" in err and f"ec2/bbbbbb/cpu_utilization ({MIN_SAMPLES - 1})" in err
    assert err.splitlines()[-1].endswith(f"no series to backtest: each needs at least {MIN_SAMPLES} samples "
                                         "(see the warnings above)")
    # next to a long enough series, the short ones are reported and the rest is backtested
    write_export(tmp_path, list(range(1, 40)), name="cccccc")
    rc, out, err = run_cli(capsys, "--metrics", str(tmp_path))
    assert rc == 0 and "2 series with fewer than 10 samples not backtested" in err
    assert "shadowing              1       " in out


def test_nan_values_are_reported_and_the_rest_is_backtested(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    values: list[float | str] = [float(10 + (i * 7) % 11) for i in range(60)]
    without = write_export(tmp_path / "without", values, order=[i for i in range(60) if i not in (20, 41)])
    values[20], values[41] = "nan", ""
    dirty = write_export(tmp_path / "dirty", values)
    rc, out, err = run_cli(capsys, "--metrics", str(dirty), "--per-series")
    assert rc == 0 and "2 row(s) with a missing or non-numeric value dropped" in err and "rows 22, 43" in err
    # nothing else is lost: the same results as the file without those two rows
    rc2, out2, err2 = run_cli(capsys, "--metrics", str(without), "--per-series")
    assert rc2 == 0 and err2 == "" and out.replace(str(dirty), "X") == out2.replace(str(without), "X")


def test_unsorted_timestamps_give_the_same_bytes_as_sorted_ones(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    values = [round(float(v), 3) for v in rng.gamma(2.0, 10.0, 400)]
    ordered = write_export(tmp_path / "ordered", values, step=300)
    shuffled = write_export(tmp_path / "shuffled", values, step=300, order=rng.permutation(400).tolist())
    runs = [run_cli(capsys, "--metrics", str(folder), "--per-series") for folder in (ordered, shuffled, ordered)]
    assert all(rc == 0 for rc, _, _ in runs)
    outs = [out.replace(str(ordered), "X").replace(str(shuffled), "X") for _, out, _ in runs]
    assert outs[0] == outs[1] == outs[2]  # deterministic, whatever the row order


def test_a_constant_zero_series_covers_everything_and_has_no_relative_slack(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "--metrics", str(write_export(tmp_path, [0.0] * 50)), "--per-series")
    assert rc == 0 and "Traceback" not in err
    rows = [line.split() for line in out.splitlines() if line.startswith("ec2/")]
    assert len(rows) == 4 and all(r[2] == "1.0000" and r[3] == "nan" for r in rows)


def test_the_fixture_backtest_is_byte_identical_run_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    first = run_cli(capsys, "--metrics", str(FIXTURES), "--per-series")
    second = run_cli(capsys, "--metrics", str(FIXTURES), "--per-series")
    assert first == second and first[0] == 0
    assert "11 row(s) duplicating a timestamp" in first[2]  # what cleaning dropped is reported


def test_backtest_collects_the_cleaning_warnings() -> None:
    warnings: list[str] = []
    results = backtest(tidy.read_metrics(FIXTURES), warnings=warnings)
    assert {r.series for r in results} == {"ec2/1ef3de/disk_write_bytes", "ec2/257a54/network_in_bytes",
                                           "ec2/5f5533/cpu_utilization"}
    assert len(warnings) == 1 and "duplicating a timestamp" in warnings[0]


# --- the definitions, by hand ----------------------------------------------------------------------------------

# 13 samples every 10 min; fit on the first half (1 h), re-size every 30 min: re-sizings at 60, 90 and 120 min
# see samples 0–5, 0–8 and 0–11 and size samples 6–8, 9–11 and 12.
HAND = [1.0, 2.0, 3.0, 2.0, 1.0, 5.0, 4.0, 6.0, 2.0, 6.0, 1.0, 7.0, 7.0]
REPLAYED = [4.0, 6.0, 2.0, 6.0, 1.0, 7.0, 7.0]


def test_coverage_and_slack_are_the_readme_definitions_on_a_hand_computed_series(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ts = START.timestamp() + 600.0 * np.arange(len(HAND))
    replay = replay_series(ts, np.array(HAND), {"arc": arc_max24h, "vpa": vpa_p90}, name="s", fit_fraction=0.5,
                           refit_seconds=1800)
    assert replay.demand.tolist() == REPLAYED and replay.interval_starts.tolist() == [0, 3, 6]
    # ARC: max of the last 24 h = 5, then 6, then 7. Covered (demand ≤ capacity): 4 2 | 6 1 | 7 → 5 of 7.
    # Idle capacity max(capacity − demand, 0): 1 0 3 | 0 5 0 | 0 → 9 / 7; ÷ mean demand 33 / 7 → 9 / 33.
    arc = replay.score("arc")
    assert replay.capacity["arc"].tolist() == [5.0] * 3 + [6.0] * 3 + [7.0]
    assert (arc.covered, arc.samples) == (5, 7)
    assert arc.mean_slack == pytest.approx(9 / 7, rel=1e-15) and arc.relative_slack == pytest.approx(9 / 33)
    assert arc.need == 7.0 and arc.slack_per_need == pytest.approx(9 / 49)
    # VPA: 5 % buckets from 0.01 (bucket b ends at 0.01·(1.05^(b+1) − 1)/0.05); the P90 of the first six lies in
    # the bucket of 5 (b = 66), then twice in that of 6 (b = 70: the 6 weighs more than 10 % of nine samples,
    # the 7 less than 10 % of twelve); + 15 %.
    end = [0.2 * (1.05 ** (b + 1) - 1) * 1.15 for b in (66, 70)]
    assert replay.capacity["vpa"] == pytest.approx([end[0]] * 3 + [end[1]] * 4, rel=1e-12)
    vpa = replay.score("vpa")
    assert vpa.covered == 6  # only the 6 at 70 min misses (5.81 < 6); 7 ≤ 7.12
    idle = [end[0] - 4, 0, end[0] - 2, end[1] - 6, end[1] - 1, end[1] - 7, end[1] - 7]
    assert vpa.mean_slack == pytest.approx(sum(idle) / 7, rel=1e-12)
    # the command line prints the same
    rc, out, _ = run_cli(capsys, "--metrics", str(write_export(tmp_path, HAND)), "--fit-fraction", "0.5",
                         "--refit-seconds", "1800")
    assert rc == 0
    line = next(x for x in out.splitlines() if x.startswith("arc-max24h"))
    assert line.split() == ["arc-max24h", "1", "7", "71.4286%", "71.4286%", f"{9 / 33:.3f}", f"{9 / 33:.3f}",
                            f"{9 / 49:.3f}"]


# --- every replayed sample has a capacity ---------------------------------------------------------------------

def test_the_last_sample_gets_a_capacity_when_rounding_puts_a_cut_on_it() -> None:
    ts = 1_700_000_000.3 + 7.3 * np.arange(31)  # (last − start) / 7.3 rounds just below 21: cut 22 = last
    replay = replay_series(ts, np.ones(ts.size), {"c": lambda t, v, now, first: 7.0}, name="s", fit_fraction=0.3,
                           refit_seconds=7.3)
    assert replay.demand.size == 22 and replay.capacity["c"].tolist() == [7.0] * 22


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from([1.0, 60.0, 300.0, 0.1, 7.3, 1e-3]), st.integers(2, 60),
       st.sampled_from([0.0, 1.7e9, 1.7e9 + 0.3]), st.floats(0.01, 0.99), st.sampled_from([0.7, 1.0, 2.5, 3.0]))
def test_every_replayed_sample_is_sized_from_the_past_only(step: float, n: int, t0: float, fit: float,
                                                           refit_steps: float) -> None:
    ts = t0 + step * np.arange(n)
    seen: list[tuple[float, int]] = []

    def spy(t: np.ndarray, v: np.ndarray, now: float, first: float) -> float:
        seen.append((now, t.size))
        return float(t.size)  # the capacity tells how many samples the rule saw

    replay = replay_series(ts, np.arange(n, dtype=float), {"spy": spy}, name="s", fit_fraction=fit,
                           refit_seconds=refit_steps * step)
    start = ts[0] + fit * (ts[-1] - ts[0])
    first_replayed = n - replay.demand.size
    assert replay.demand.size >= 1 and ts[first_replayed] >= start - 1e-6 * step
    assert ts[first_replayed - 1] < start  # all after the fit is replayed
    seen_by_sample = replay.capacity["spy"]
    # each sample's capacity came from strictly earlier samples, and from all of those before its re-sizing
    assert np.all(seen_by_sample <= np.arange(first_replayed, n)) and np.all(seen_by_sample >= first_replayed)
    assert np.all(np.diff(seen_by_sample) >= 0) and len(seen) == replay.interval_starts.size


@pytest.mark.parametrize(("fit", "refit"), [(0.0, 3600.0), (1.0, 3600.0), (math.nan, 3600.0), (0.25, 0.0),
                                            (0.25, -1.0), (0.25, math.inf)])
def test_the_replay_refuses_a_fit_or_cadence_that_cannot_be(fit: float, refit: float) -> None:
    ts = np.arange(100.0) * 60
    with pytest.raises(ValueError, match="fit fraction|refit seconds"):
        replay_series(ts, np.ones(100), {"arc": arc_max24h}, name="s", fit_fraction=fit, refit_seconds=refit)
    with pytest.raises(ValueError, match="fit fraction|refit seconds"):
        replay_all(tidy.read_metrics(FIXTURES), {"arc": arc_max24h}, fit_fraction=fit, refit_seconds=refit)


def test_hindsight_bounds_of_zero_mean_series_are_undefined_not_a_crash() -> None:
    zero = [Replay("z", np.zeros(50), np.array([0, 25])), Replay("e", np.zeros(0), np.zeros(0, dtype=np.int64))]
    for bound in (clairvoyant_bound(zero), static_hindsight_bound(zero)):
        assert bound["series"] == 0 and bound["samples"] == 0 and math.isnan(bound["coverage"])


# --- bench/backtest.py ---------------------------------------------------------------------------------------

def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_backtest", ROOT / "bench" / "backtest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_backtest", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("args", "named"), [
    (["--fit-fraction", "2"], "--fit-fraction"), (["--fit-fraction", "nan"], "--fit-fraction"),
    (["--refit-seconds", "0"], "--refit-seconds"), (["--also-refit-seconds", "-300"], "--also-refit-seconds"),
    (["--metrics", "/nonexistent/metrics"], "--metrics"),
])
def test_bench_refuses_bad_options_naming_them(capsys: pytest.CaptureFixture[str], args: list[str],
                                               named: str) -> None:
    with pytest.raises(SystemExit) as info:
        _bench().parse_args(["--metrics", str(FIXTURES), *args])
    assert info.value.code == 2
    assert f"error: {named}" in capsys.readouterr().err


def test_bench_on_too_short_series_exits_2_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_export(tmp_path, [5.0])
    with pytest.raises(SystemExit) as info:
        _bench().main(["--metrics", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "ec2/abcdef/cpu_utilization (1)" in err and "no series to backtest" in err


def test_bench_runs_on_one_series_and_on_a_zero_mean_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_export(tmp_path / "one", [float(10 + i % 5) for i in range(30)], step=300)
    write_export(tmp_path / "zero", [0.0] * 30, step=300)
    for folder in ("one", "zero"):
        _bench().main(["--metrics", str(tmp_path / folder), "--also-refit-seconds", "0"])
        out = capsys.readouterr().out
        assert "held-out checks: needs at least two series" in out and "done in" in out
