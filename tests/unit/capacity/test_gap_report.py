"""Gaps inside a series' span are reported (series, samples missing, longest gap and the sample before it), kept
as they are, and the report does not depend on the input's row order or a clock's jitter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shadowing.capacity.fingerprint import build, build_file, dumps, fold, loads, parse_iso
from shadowing.metrics.frame import from_pandas

START = pd.Timestamp("2025-03-03", tz="UTC")  # a Monday
N = 600  # ten hours at one minute


def _series(instance: str, missing: slice | list[int] | None = None, *, n: int = N, step: str = "min",
            start: pd.Timestamp = START, metric: str = "cpu_utilization") -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq=step, tz="UTC")
    keep = np.ones(n, dtype=bool)
    if missing is not None:
        keep[missing] = False
    return pd.DataFrame({"timestamp": ts, "service": "api", "instance_id": instance, "metric": metric,
                         "value": np.linspace(1.0, 50.0, n)})[keep]


def _gap_lines(fp: dict) -> list[str]:
    return [w for w in fp["warnings"] if "gap" in w]


def _frames() -> pd.DataFrame:
    parts = [_series("i-0", [*range(100, 130), 300]), _series("i-1", slice(200, 400)), _series("i-2")]
    parts += [_series(f"i-{k}", [50 + k]) for k in range(3, 14)]
    return pd.concat(parts, ignore_index=True)


def test_gaps_are_counted_per_series_with_the_longest_and_the_sample_before_it() -> None:
    lines = _gap_lines(build(from_pandas(_frames())))
    assert lines[0] == ("frame: 13 series miss 242 sample(s) in 14 gap(s) inside their span, kept as they are "
                        "(a service total reads low where an instance misses samples)")
    # the most missing first, then by name (i-10 … i-13 before i-3: names, not numbers)
    assert lines[1] == ("frame: series api/i-1/cpu_utilization misses 200 sample(s) in 1 gap(s) (longest: "
                        "3 h 20 min without a sample after 2025-03-03T03:19:00Z)")
    assert lines[2] == ("frame: series api/i-0/cpu_utilization misses 31 sample(s) in 2 gap(s) (longest: "
                        "30 min without a sample after 2025-03-03T01:39:00Z)")
    assert lines[3].startswith("frame: series api/i-10/cpu_utilization misses 1 sample(s) in 1 gap(s) (longest: "
                               "1 min without a sample after 2025-03-03T00:59:00Z)")
    assert len(lines) == 1 + 10 + 1 and lines[-1] == "frame: … and 3 more series with gaps"
    assert not any("i-2/" in line for line in lines)


def test_the_report_is_the_same_whatever_the_row_order_or_a_jittered_clock() -> None:
    df = _frames()
    want = _gap_lines(build(from_pandas(df)))
    shuffled = df.sample(frac=1.0, random_state=7)
    assert _gap_lines(build(from_pandas(shuffled))) == want
    # ±3 s of jitter: some steps hold two samples, others none, and none of that is a gap
    jitter = pd.to_timedelta(np.random.default_rng(0).integers(-3, 4, len(df)), unit="s")
    jittered = _gap_lines(build(from_pandas(df.assign(timestamp=df["timestamp"] + jitter))))
    assert [line.split(" (longest")[0] for line in jittered] == [line.split(" (longest")[0] for line in want]


def test_series_of_different_spans_and_series_boundaries_are_not_gaps() -> None:
    """An instance launched late or terminated early is not missing samples; neither is the jump in time from
    the end of one series to the start of the next in the file's row order."""
    late = _series("i-late", start=START + pd.Timedelta(hours=5), n=300)
    early = _series("i-early", n=120)
    fp = build(from_pandas(pd.concat([_series("i-0"), late, early], ignore_index=True)))
    assert _gap_lines(fp) == []
    by_id = fp["services"]["api"]["instances"]["by_id"]
    assert by_id["i-late"]["cpu_utilization"]["count"] == 300 and by_id["i-early"]["cpu_utilization"]["count"] == 120


def test_gaps_are_kept_not_filled_and_the_statistics_count_what_is_there() -> None:
    fp = build(from_pandas(_series("i-0", slice(10, 70))))
    entry = fp["services"]["api"]["instances"]["by_id"]["i-0"]["cpu_utilization"]
    assert entry["count"] == N - 60
    assert entry["max"] == pytest.approx(50.0)


@pytest.mark.parametrize(("step", "missing", "seconds_text"), [("15s", 3, "45 s"), ("h", 50, "2 d 2 h"),
                                                                 ("5min", 13, "1 h 5 min")])
def test_the_longest_gap_reads_in_its_unit(step: str, missing: int, seconds_text: str) -> None:
    fp = build(from_pandas(_series("i-0", slice(10, 10 + missing), n=200, step=step)))
    [summary, line] = _gap_lines(fp)
    assert f"misses {missing} sample(s) in 1 gap(s) (longest: {seconds_text} without a sample after" in line


def test_a_fold_reports_the_gaps_of_its_own_interval() -> None:
    week = _series("i-0", n=N)
    first = build(from_pandas(week), window=(START.timestamp(), (START + pd.Timedelta(minutes=N)).timestamp()))
    assert _gap_lines(first) == []
    hour_start = START + pd.Timedelta(minutes=N)
    hour = _series("i-0", [20, 21, 22], n=60, start=hour_start)
    end = (hour_start + pd.Timedelta(hours=1)).timestamp()
    folded = fold(loads(dumps(first), source="test"), from_pandas(hour), window=(hour_start.timestamp(), end))
    [summary, line] = _gap_lines(folded)
    assert "misses 3 sample(s) in 1 gap(s) (longest: 3 min without a sample after 2025-03-03T10:19:00Z)" in line
    assert parse_iso(folded["window"]["end"]) == end
    assert folded["services"]["api"]["instances"]["by_id"]["i-0"]["cpu_utilization"]["count"] == N + 57


def test_a_fold_read_at_a_longer_period_than_the_history_began_with_judges_gaps_at_its_own() -> None:
    """The DAG bootstraps at one period and may fold at a longer one (period_seconds raised): five-minute
    samples folded into a one-minute fingerprint are not four missing samples each; a real gap still is."""
    first = build(from_pandas(_series("i-0", n=N)), window=(START.timestamp(),
                                                           (START + pd.Timedelta(minutes=N)).timestamp()))
    assert first["params"]["step_seconds"] == 60
    hour_start = START + pd.Timedelta(minutes=N)
    end = (hour_start + pd.Timedelta(hours=2)).timestamp()
    for missing in (None, [10, 11, 12]):
        frame = pd.concat([_series(f"i-{k}", missing if k == 0 else None, n=24, step="5min", start=hour_start)
                           for k in range(3)])
        folded = fold(loads(dumps(first), source="test"), from_pandas(frame), window=(hour_start.timestamp(), end))
        lines = _gap_lines(folded)
        assert folded["params"]["step_seconds"] == 60
        if missing is None:
            assert lines == []
        else:
            [summary, line] = lines
            assert line.endswith("api/i-0/cpu_utilization misses 3 sample(s) in 1 gap(s) (longest: 15 min without "
                                 "a sample after 2025-03-03T10:45:00Z)")


def test_a_parquet_file_with_a_gap_leaves_the_streamed_path_and_is_reported(tmp_path: Path) -> None:
    """The streamed path takes series on one full grid only: a file with a hole is profiled whole, and said so."""
    parts = [_series(f"i-{k}", slice(100, 110) if k == 3 else None, n=2000) for k in range(6)]
    path = tmp_path / "hole.parquet"
    pd.concat(parts, ignore_index=True).to_parquet(path, row_group_size=2000)
    fp = build_file(path, stream_min_rows=0)
    lines = _gap_lines(fp)
    assert lines[1] == (f"{path}: series api/i-3/cpu_utilization misses 10 sample(s) in 1 gap(s) (longest: "
                        f"10 min without a sample after 2025-03-03T01:39:00Z)")
