"""Parquet files laid out series after series on one time grid: timestamps are checked in place and implied.

The implied column must be exactly the file's timestamps, and any row group that breaks the pattern must make
the reader fall back to the real column (with its NaNs), never to a wrong grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shadowing.capacity.fingerprint import build
from shadowing.metrics import frame

STEP_MS = 60_000
START_MS = 1_741_000_000_000 - 1_741_000_000_000 % STEP_MS
LENGTH = 240


def _write(path: Path, ts_ms: np.ndarray, *, series: int, nulls: list[int] | None = None,
           values: np.ndarray | None = None, row_group_size: int = 1000) -> None:
    n = ts_ms.size
    metric = np.array(["cpu_utilization", "network_in_bytes"])[np.arange(series) % 2]
    instance = np.array([f"i-{k // 2}" for k in range(series)])
    values = np.random.default_rng(1).uniform(1, 90, n) if values is None else values
    mask = np.zeros(n, dtype=bool)
    if nulls:
        mask[nulls] = True
    table = pa.table({
        "timestamp": pa.array(ts_ms, type=pa.timestamp("ms", tz="UTC"), mask=mask),
        "region": pa.array(["us-east-1"] * n).dictionary_encode(),
        "service": pa.array(["api"] * n).dictionary_encode(),
        "instance_id": pa.array(np.repeat(instance, LENGTH)).dictionary_encode(),
        "metric": pa.array(np.repeat(metric, LENGTH)).dictionary_encode(),
        "value": values,
    })
    pq.write_table(table, path, row_group_size=row_group_size)  # by default, row groups cut across series


def _grid_ts(series: int) -> np.ndarray:
    return np.tile(START_MS + STEP_MS * np.arange(LENGTH, dtype=np.int64), series)


@pytest.fixture(autouse=True)
def _small_files_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame, "_IMPLIED_TS_MIN_ROWS", 0)


def test_a_series_layout_gets_an_implied_grid_equal_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    ts = _grid_ts(20)
    _write(path, ts, series=20)
    cols = frame.read_metrics(path)
    assert cols.grid is not None and cols._ts is None
    np.testing.assert_array_equal(cols.ts, ts / 1000.0)  # built on demand, exactly the file's
    # Code columns are implied too (row groups of 1000 rows cut the 240-row series: runs are merged back).
    assert cols.runs is not None and cols.runs.size == 20
    assert list(cols.metric[:LENGTH + 1]) == [0] * LENGTH + [1]
    np.testing.assert_array_equal(np.asarray(cols.instances)[cols.instance][::LENGTH],
                                  [f"i-{k // 2}" for k in range(20)])
    lazy = frame.read_metrics(path)
    with_grid = build(lazy)
    assert lazy._ts is None and lazy._instance is None and lazy._metric is None  # the fast path read neither
    frame._IMPLIED_TS_MIN_ROWS = 10**12
    materialised = build(frame.read_metrics(path))
    for fp in (with_grid, materialised):
        fp.pop("generated_at")
    assert with_grid == materialised


@pytest.mark.parametrize("where", [0, 2500, 20 * LENGTH - 1])
def test_one_shifted_timestamp_anywhere_falls_back_to_the_real_column(tmp_path: Path, where: int) -> None:
    path = tmp_path / "shifted.parquet"
    ts = _grid_ts(20)
    ts[where] += 1000
    _write(path, ts, series=20)
    cols = frame.read_metrics(path)
    assert cols.grid is None
    np.testing.assert_array_equal(cols.ts, ts / 1000.0)


@pytest.mark.parametrize("where", [None, 2 * LENGTH * 4 + 17, 19 * LENGTH + 3])
@pytest.mark.parametrize("nulls", [False, True])
def test_row_groups_of_the_same_alignment_are_checked_by_their_bytes(tmp_path: Path, where: int | None,
                                                                     nulls: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Row groups of whole series (4 each) hold the same timestamps: after the first is decoded and checked,
    the others are compared by their encoded bytes, so a shifted or null timestamp in any of them still
    shows (a different chunk is decoded), in the reader and in the streamed scan."""
    path = tmp_path / "aligned.parquet"
    ts = _grid_ts(20)
    if where is not None and not nulls:
        ts[where] += 1000
    _write(path, ts, series=20, row_group_size=4 * LENGTH,
           nulls=[where] if where is not None and nulls else None)
    known = []
    original = frame._CheckedChunks.known
    monkeypatch.setattr(frame._CheckedChunks, "known",
                        lambda self, i, pos: known.append(original(self, i, pos)) or known[-1])
    cols = frame.read_metrics(path)
    if where is None:
        assert cols.grid is not None and sum(known) >= 3  # 5 row groups: at least 3 compared, not decoded
        np.testing.assert_array_equal(cols.ts, ts / 1000.0)
    else:
        assert cols.grid is None
        if nulls:
            assert np.isnan(cols.ts[where])
        else:
            np.testing.assert_array_equal(cols.ts, ts / 1000.0)
    series_file = frame.SeriesFile.open(path)
    assert series_file is not None
    with series_file as sf:
        if where is None:
            assert len(sf.scan(lambda block: block.series.size)) == 5
        else:
            with pytest.raises(frame.NotSeriesLayout):
                sf.scan(lambda block: block.series.size)


def test_null_timestamps_in_a_later_row_group_are_kept_as_nan(tmp_path: Path) -> None:
    path = tmp_path / "nulls.parquet"
    ts = _grid_ts(20)
    _write(path, ts, series=20, nulls=[3001, 4500])
    cols = frame.read_metrics(path)
    assert cols.grid is None
    assert np.isnan(cols.ts[[3001, 4500]]).all()
    keep = np.ones(ts.size, dtype=bool)
    keep[[3001, 4500]] = False
    np.testing.assert_array_equal(cols.ts[keep], ts[keep] / 1000.0)
    cleaned = frame.clean(cols)
    assert len(cleaned) == ts.size - 2
    assert any("unparseable timestamp" in w for w in cleaned.warnings)


def test_clean_on_implied_timestamps_still_applies_the_window(tmp_path: Path) -> None:
    path = tmp_path / "window.parquet"
    ts = _grid_ts(20)
    _write(path, ts, series=20)
    cols = frame.read_metrics(path)
    cut = (START_MS + STEP_MS * 100) / 1000.0
    cleaned = frame.clean(cols, window=(cut, cut + 3600))
    assert len(cleaned) == 20 * 60 and cleaned.grid is None
    assert float(cleaned.ts.min()) == cut


@pytest.mark.parametrize("entry", ["build(frame.read_metrics(sys.argv[1]))",
                                   "assert fingerprint._build_streamed(Path(sys.argv[1]), region=None, "
                                   "params=fingerprint.ProfileParams(), max_warnings=9, min_rows=0)"])
def test_the_parquet_fast_path_imports_nothing_slow(tmp_path: Path, entry: str) -> None:
    """pyarrow.compute (~0.1 s), pandas (~1 s) and numpy.ma (~11 ms) stay unimported by a clean read+build,
    and by the streamed build: a 5-minute fold in a fresh task process pays every import."""
    import subprocess
    import sys

    path = tmp_path / "grid.parquet"
    _write(path, _grid_ts(20), series=20)
    probe = ("import sys\nfrom pathlib import Path\nfrom shadowing.metrics import frame\n"
             "from shadowing.capacity import fingerprint\nfrom shadowing.capacity.fingerprint import build\n"
             f"frame._IMPLIED_TS_MIN_ROWS = 0\n{entry}\n"
             "print(sorted(m for m in ('pyarrow.compute', 'pandas', 'numpy.ma') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("bad_row", [5, 11 * LENGTH + 7, 20 * LENGTH - 1])
def test_clean_on_implied_timestamps_finds_impossible_values_in_any_half(tmp_path: Path, bad_row: int) -> None:
    """Utilisation above 100 % (in a cpu series: even rows of series), NaN and negatives, wherever they sit."""
    path = tmp_path / "bad.parquet"
    values = np.random.default_rng(2).uniform(1, 90, 20 * LENGTH)
    values[LENGTH:2 * LENGTH] *= 1e6  # a network series far above 100: fine for bytes
    cpu_row = bad_row - (bad_row // LENGTH % 2) * LENGTH  # the same position in a cpu series
    values[cpu_row] = 150.0
    values[LENGTH + 3] = np.nan
    values[3 * LENGTH + 9] = -4.0
    _write(path, _grid_ts(20), series=20, values=values)
    cols = frame.read_metrics(path)
    assert cols.grid is not None
    cleaned = frame.clean(cols)
    assert len(cleaned) == 20 * LENGTH - 3
    text = " ".join(cleaned.warnings)
    assert "above 100 %" in text and "missing or non-numeric" in text and "negative value" in text
    assert not np.isin(cleaned.values, [150.0, -4.0]).any()


@pytest.mark.parametrize("seed", range(10))
def test_reader_matches_pandas_row_for_row_on_random_layouts(tmp_path: Path, seed: int) -> None:
    """Random series lengths, row-group cuts and one random defect (or none): the lazy reader's rows equal
    pandas' reading of the same file, name for name and number for number."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    series, length = int(rng.integers(3, 12)), int(rng.integers(32, 90))
    n = series * length
    ts = np.tile(START_MS + STEP_MS * np.arange(length, dtype=np.int64), series)
    metric = np.repeat(np.array(["cpu_utilization", "disk_read_bytes", "custom_gauge"])[np.arange(series) % 3],
                       length).astype(object)
    instance = np.repeat(np.array([f"i-{k // 3}" for k in range(series)]), length).astype(object)
    values = rng.uniform(0, 95, n)
    defect = int(rng.integers(0, 5))
    row = int(rng.integers(0, n))
    if defect == 1:
        ts[row] += 7_000
    elif defect == 2:
        values[row] = np.nan
    elif defect == 3:
        instance[row] = None
    elif defect == 4:
        ts[row:row + 3] = ts[max(row - 3, 0):max(row - 3, 0) + 3][:len(ts[row:row + 3])]
    df = pd.DataFrame({"timestamp": pd.to_datetime(ts, unit="ms", utc=True), "region": "us-east-1",
                       "service": "api", "instance_id": instance, "metric": metric, "value": values})
    path = tmp_path / "random.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path,
                   row_group_size=int(rng.integers(17, n + 1)))
    got = frame.read_metrics(path)
    want = frame.from_pandas(pd.read_parquet(path))
    np.testing.assert_array_equal(got.ts, want.ts)
    np.testing.assert_array_equal(got.values, want.values)
    for codes, names in (("service", "services"), ("instance", "instances"), ("metric", "metrics")):
        assert list(np.asarray(getattr(got, names), dtype=object)[getattr(got, codes)]) == \
            list(np.asarray(getattr(want, names), dtype=object)[getattr(want, codes)]), codes
