"""build_file: a Parquet file laid out series after series is profiled row group by row group as it is read.

The streamed fingerprint must be the one build() makes from the whole columns (service totals are summed in
another order, so aggregates may differ in the last bit), and anything the streamed path does not take as it
is must reach build() and its cleaning report instead, never a wrong fingerprint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shadowing.capacity import fingerprint as fpm
from shadowing.capacity.fingerprint import ProfileParams, build, build_file
from shadowing.metrics import frame
from tests.support.fingerprints import assert_same_fingerprint, streamed_or_none

STEP_MS = 60_000
START_MS = 1_741_132_800_000  # a Wednesday, 00:00 UTC
LENGTH = 180
METRICS = ("cpu_utilization", "network_in_bytes", "queue_depth")  # queue_depth: unknown, profiled generically


def _table(*, services: int = 3, instances: int = 4, metrics: tuple[str, ...] = METRICS, seed: int = 7
           ) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    keys = [(f"svc-{s}", f"i-{s}-{i}", m) for s in range(services) for i in range(instances) for m in metrics]
    n = len(keys) * LENGTH
    values = np.empty(n)
    for k, (_, _, m) in enumerate(keys):
        scale = 60.0 if m == "cpu_utilization" else 1e6
        values[k * LENGTH:(k + 1) * LENGTH] = rng.uniform(0.05, 1.0, LENGTH) * scale
    values[:LENGTH] = 0.0  # an idle series, and zeros inside others: the sketch's zero bucket
    values[LENGTH + 7:len(values):997] = 0.0
    return {"timestamp": np.tile(START_MS + STEP_MS * np.arange(LENGTH, dtype=np.int64), len(keys)),
            "region": ["us-east-1"] * n,
            "service": np.repeat([k[0] for k in keys], LENGTH), "instance_id": np.repeat([k[1] for k in keys], LENGTH),
            "metric": np.repeat([k[2] for k in keys], LENGTH), "value": values}


def _write(path: Path, data: dict[str, Any], *, row_group_size: int = 1000, order: np.ndarray | None = None,
           without: tuple[str, ...] = ()) -> Path:
    """``order``: the series in this order (a file not sorted by instance and metric); ``without``: columns
    the file lacks."""
    if order is not None:
        rows = (order[:, None] * LENGTH + np.arange(LENGTH)).reshape(-1)
        data = {c: np.asarray(v)[rows] for c, v in data.items()}
    table = pa.table({
        "timestamp": pa.array(data["timestamp"], type=pa.timestamp("ms", tz="UTC")),
        **{c: pa.array(np.asarray(data[c], dtype=object)).dictionary_encode()
           for c in ("region", "service", "instance_id", "metric") if c not in without},
        "value": pa.array(data["value"], type=pa.float64()),
    })
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("row_group_size", [1000, LENGTH * 4, 7 * LENGTH + 13, 10**6])
@pytest.mark.parametrize("page_runs", [True, False])
def test_streamed_fingerprint_equals_the_whole_file_build(tmp_path: Path, row_group_size: int, page_runs: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Row groups cutting series (stitched afterwards), aligned to them, or one for the whole file; text runs
    from the pages (whatever the row group's size) or from pyarrow."""
    monkeypatch.setattr(frame, "_PAGE_RUNS_MIN_ROWS", 0 if page_runs else 10**12)
    path = _write(tmp_path / "m.parquet", _table(), row_group_size=row_group_size)
    streamed = streamed_or_none(path)
    assert streamed is not None
    assert_same_fingerprint(streamed, build(frame.read_metrics(path)))
    assert streamed["warnings"] == [f"{path}: unknown metric name(s) queue_depth profiled generically"]
    assert_same_fingerprint(build_file(path, stream_min_rows=0), streamed)


def test_series_in_any_order_come_out_in_the_fingerprints_order(tmp_path: Path) -> None:
    order = np.random.default_rng(3).permutation(3 * 4 * len(METRICS))
    path = _write(tmp_path / "shuffled.parquet", _table(), order=order)
    streamed = streamed_or_none(path)
    assert streamed is not None
    assert_same_fingerprint(streamed, build(frame.read_metrics(path)))


@pytest.mark.parametrize("without", [("region",), ("region", "service")])
def test_a_file_without_region_or_service_columns_is_streamed_as_unknown(tmp_path: Path,
                                                                       without: tuple[str, ...]) -> None:
    data = _table(services=1)
    path = _write(tmp_path / "bare.parquet", data, without=without)
    streamed = streamed_or_none(path)
    assert streamed is not None
    assert_same_fingerprint(streamed, build(frame.read_metrics(path)))
    assert streamed["region"] == "unknown"
    assert list(streamed["services"]) == (["unknown"] if "service" in without else ["svc-0"])


def test_several_regions_are_reported_and_the_biggest_is_profiled(tmp_path: Path) -> None:
    data = _table()
    data["region"] = ["eu-west-1"] * (LENGTH * len(METRICS)) + data["region"][LENGTH * len(METRICS):]
    path = _write(tmp_path / "regions.parquet", data)
    streamed = streamed_or_none(path)
    assert streamed is not None and streamed["region"] == "us-east-1"
    assert_same_fingerprint(streamed, build(frame.read_metrics(path)))
    assert any("several regions" in w for w in streamed["warnings"])


def _defect(kind: str, data: dict[str, Any]) -> None:
    last = len(data["value"]) - 5  # in the last row group: the scan has done most of its work already
    if kind == "nan":
        data["value"][last] = math.nan
    elif kind == "inf":
        data["value"][last] = math.inf
    elif kind == "negative":
        data["value"][last - LENGTH * 1] = -1.0  # network_in_bytes cannot be negative
    elif kind == "over_100":
        data["value"][last - LENGTH * 2] = 140.0  # cpu_utilization
    elif kind == "name_changes_inside_a_series":
        data["instance_id"][last] = "i-stray"
    elif kind == "repeated_series":
        data["instance_id"][-LENGTH:] = data["instance_id"][-2 * LENGTH]
        data["metric"][-LENGTH:] = data["metric"][-2 * LENGTH]
    elif kind == "off_grid_timestamp":
        data["timestamp"][last] += 1000
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["nan", "inf", "negative", "over_100", "name_changes_inside_a_series",
                                  "repeated_series", "off_grid_timestamp"])
def test_anything_to_clean_goes_to_the_general_path_and_is_reported(tmp_path: Path, kind: str) -> None:
    data = _table()
    data = {c: list(v) if c in ("region",) else np.array(v) for c, v in data.items()}
    data["instance_id"] = data["instance_id"].astype(object)
    data["metric"] = data["metric"].astype(object)
    _defect(kind, data)
    path = _write(tmp_path / f"{kind}.parquet", data)
    assert streamed_or_none(path) is None
    got = build_file(path, stream_min_rows=0)
    want = build(frame.read_metrics(path))
    for fp in (got, want):
        fp.pop("generated_at")
    assert got == want
    if kind in ("nan", "inf", "negative", "over_100"):
        assert any("dropped" in w for w in got["warnings"])


def test_a_step_other_than_the_files_and_a_small_file_are_read_whole(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.parquet", _table())
    assert streamed_or_none(path, params=ProfileParams(step_seconds=300)) is None
    assert fpm._build_streamed(path, region=None, params=ProfileParams(), max_warnings=50,
                               min_rows=10**9) is None
    got = build_file(path, params=ProfileParams(step_seconds=300), stream_min_rows=0)
    assert got["params"]["step_seconds"] == 300


def test_a_corrupt_file_gets_the_readers_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    with pytest.raises(Exception, match="unreadable Parquet"):
        build_file(path, stream_min_rows=0)
