"""Fingerprint: pooled/aggregate statistics against exact numpy, fold == recompute, bad input, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shadowing.capacity.fingerprint import ProfileParams, build, fold
from shadowing.errors import InputError
from shadowing.metrics import frame as tidy

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
START = datetime(2025, 1, 6, tzinfo=UTC)
STATS = ("count", "mean", "std", "ewma", "min", "max", "p50", "p90", "p95", "p99")


def synthetic(hours: int = 12, instances: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, periods=hours * 60, freq="60s")
    parts = []
    for i in range(instances):
        for metric, scale in (("cpu_utilization", 30.0), ("network_in_bytes", 1e6), ("queue_depth", 5.0)):
            values = rng.gamma(2.0, scale / 2, ts.size)
            if metric == "cpu_utilization":
                values = np.minimum(values, 100.0)
            parts.append(pd.DataFrame({"timestamp": ts, "region": "us-east-1", "service": "api",
                                       "instance_id": f"i-{i}", "metric": metric, "value": values}))
    return pd.concat(parts, ignore_index=True)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def test_pooled_and_aggregate_statistics_match_exact_numpy() -> None:
    df = synthetic()
    fp = build(tidy.from_pandas(df))
    api = fp["services"]["api"]
    assert set(api["metrics"]) == {"cpu_utilization", "network_in_bytes", "queue_depth"}  # unknown kept
    for metric, entry in api["metrics"].items():
        values = df.loc[df.metric == metric, "value"].to_numpy()
        assert entry["count"] == values.size
        assert entry["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert entry["std"] == pytest.approx(values.std(), rel=1e-9)
        assert entry["max"] == values.max() and entry["min"] == values.min()
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
            assert rel(entry[name], float(np.quantile(values, q))) <= 0.01
        assert len(entry["hour_of_week_peak"]) == 168
        assert len(json.dumps(entry)) <= 4096
    total = df[df.metric == "cpu_utilization"].groupby("timestamp")["value"].sum().to_numpy()
    agg = api["aggregate"]["cpu_utilization"]
    assert agg["count"] == total.size and agg["max"] == pytest.approx(total.max())
    assert rel(agg["p99"], float(np.quantile(total, 0.99))) <= 0.01
    assert api["instances"]["max"] == 3 and api["instances"]["distinct"] == 3
    assert api["sizing"]["instances"] >= 1 and api["sizing"]["rule"]["percentile"] > 0
    assert set(api["instances"]["by_id"]) == {"i-0", "i-1", "i-2"}
    assert fp["window"] == {"start": "2025-01-06T00:00:00Z", "end": "2025-01-06T12:00:00Z"}


def test_fold_equals_recompute() -> None:
    df = synthetic(hours=30)
    full = build(tidy.from_pandas(df))
    cut = START.timestamp() + 20 * 3600
    first = df[df.timestamp < pd.Timestamp(cut, unit="s", tz="UTC")]
    second = df[df.timestamp >= pd.Timestamp(cut, unit="s", tz="UTC")]
    fp = build(tidy.from_pandas(first), window=(START.timestamp(), cut))
    fp = json.loads(json.dumps(fp))  # through JSON, as stored in the warehouse
    folded = fold(fp, tidy.from_pandas(second), window=(cut, START.timestamp() + 30 * 3600))
    for part in ("metrics", "aggregate"):
        for metric, want in full["services"]["api"][part].items():
            got = folded["services"]["api"][part][metric]
            for s in (*STATS, "decayed_p50", "decayed_p95"):
                assert got[s] == pytest.approx(want[s], rel=1e-6), (part, metric, s)
            assert got["sketch"] == want["sketch"]
    inst = folded["services"]["api"]["instances"]["by_id"]["i-1"]["cpu_utilization"]
    want = full["services"]["api"]["instances"]["by_id"]["i-1"]["cpu_utilization"]
    assert inst["p95"] == pytest.approx(want["p95"]) and inst["count"] == want["count"]
    assert folded["window"] == full["window"] and folded["folds"] == 1


def test_fold_drops_late_points_and_keeps_previous_when_nothing_new() -> None:
    df = synthetic(hours=2)
    end = START.timestamp() + 3600
    fp = build(tidy.from_pandas(df[df.timestamp < pd.Timestamp(end, unit="s", tz="UTC")]),
               window=(START.timestamp(), end))
    folded = fold(fp, tidy.from_pandas(df), window=(end, end + 3600))
    assert any("late" in w for w in folded["warnings"])
    assert folded["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * 3600 // 60 * 3
    empty = fold(folded, tidy.from_pandas(df.iloc[:0]), window=(end + 3600, end + 7200))
    assert empty["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * 60 * 3
    assert any("no new metric rows" in w for w in empty["warnings"])


def test_bad_input_is_reported_not_fatal(tmp_path: Path) -> None:
    df = synthetic(hours=1, instances=2).astype({"value": object})
    df.loc[3, "value"] = float("nan")
    df.loc[4, "value"] = float("inf")
    df.loc[5, "value"] = 150.0  # cpu above 100 %
    df.loc[df.metric == "network_in_bytes", "value"] = df.loc[df.metric == "network_in_bytes", "value"]
    df.loc[200, "value"] = -3.0  # negative bytes
    df.loc[7, "value"] = "oops"
    dup = df.iloc[[10, 11]]
    shuffled = pd.concat([df, dup]).sample(frac=1.0, random_state=1)
    path = tmp_path / "tidy.csv"
    shuffled.to_csv(path, index=False)
    with open(path, "a") as fh:
        fh.write("2025-01-06T00:00:00Z,us-east-1,api\n")  # malformed row
        fh.write("not-a-date,us-east-1,api,i-0,cpu_utilization,5\n")
    fp = build(tidy.read_metrics(path))
    text = "\n".join(fp["warnings"])
    for needle in ("malformed", "unparseable timestamp", "non-numeric", "infinite", "above 100", "negative",
                   "duplicating", "unknown metric"):
        assert needle in text, needle
    assert "api/i-0/cpu_utilization" in text or "api/i-1/cpu_utilization" in text
    good = len(df) - 6 + 0  # nan, inf, 150, -3, "oops" dropped; duplicates add nothing
    pooled = fp["services"]["api"]["metrics"]
    assert sum(e["count"] for e in pooled.values()) == good + 1  # NaN/inf/150/-3/oops = 5 rows


def test_nothing_usable_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,region,service,instance_id,metric,value\nx,r,s,i,cpu_utilization,abc\n")
    with pytest.raises(InputError, match="no usable metric rows"):
        build(tidy.read_metrics(path))
    with pytest.raises(InputError, match="missing column"):
        build(tidy.from_pandas(pd.DataFrame({"value": [1.0]})))


def test_parquet_and_raw_export_sources(tmp_path: Path) -> None:
    df = synthetic(hours=1)
    df.to_parquet(tmp_path / "m.parquet")
    fp = build(tidy.read_metrics(tmp_path / "m.parquet"))
    assert fp["region"] == "us-east-1" and fp["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 180
    raw = build(tidy.read_metrics(FIXTURES))
    assert set(raw["services"]["ec2"]["metrics"]) == {"cpu_utilization", "network_in_bytes", "disk_write_bytes"}
    assert any("duplicating" in w for w in raw["warnings"])


def test_cli_end_to_end(tmp_path: Path) -> None:
    df = synthetic(hours=2)
    src = tmp_path / "m.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "fp.json"
    run = subprocess.run([sys.executable, "-m", "shadowing", "fingerprint", "--metrics", str(src), "--out",
                          str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    fp = json.loads(out.read_text())
    assert fp["schema_version"] == 1 and "api" in fp["services"]
    bad = subprocess.run([sys.executable, "-m", "shadowing", "fingerprint", "--metrics",
                          str(tmp_path / "missing.csv"), "--out", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "no such file" in bad.stderr
    bt = subprocess.run([sys.executable, "-m", "shadowing", "capacity", "backtest", "--metrics", str(FIXTURES)],
                        capture_output=True, text=True, timeout=120)
    assert bt.returncode == 0, bt.stderr
    assert "arc-max24h" in bt.stdout and "vpa-p90+15%" in bt.stdout and "shadowing" in bt.stdout


def test_series_ordered_fast_path_equals_general_path() -> None:
    """Rows series by series in time order take the run-based path; shuffled rows the general one."""
    df = synthetic(hours=6)
    ordered = build(tidy.from_pandas(df))
    shuffled = build(tidy.from_pandas(df.sample(frac=1.0, random_state=3)))
    _assert_same_fingerprint(ordered, shuffled, nan_ok=False)
    assert ordered["services"]["api"]["instances"] | {"by_id": None} == \
        shuffled["services"]["api"]["instances"] | {"by_id": None}


def _assert_same_fingerprint(got_fp: dict, want_fp: dict, *, nan_ok: bool = True) -> None:
    for part in ("metrics", "aggregate"):
        for metric, want in want_fp["services"]["api"][part].items():
            got = got_fp["services"]["api"][part][metric]
            for s in (*STATS, "decayed_p50", "decayed_p99", "ewma_log2_weight"):
                assert got[s] == pytest.approx(want[s], rel=1e-9, nan_ok=nan_ok), (part, metric, s)
            assert got["hour_of_week_peak"] == want["hour_of_week_peak"]
            assert got["sketch"] == want["sketch"]
    for iid, metrics in want_fp["services"]["api"]["instances"]["by_id"].items():
        for metric, want in metrics.items():
            got = got_fp["services"]["api"]["instances"]["by_id"][iid][metric]
            assert got["sketch"] == want["sketch"]
            for s in STATS:
                assert got[s] == pytest.approx(want[s], rel=1e-9), (iid, metric, s)


def test_gappy_series_take_the_run_path_and_agree_with_the_general_path() -> None:
    """A missing sample breaks the dense (series × steps) layout but not the series order: run path."""
    df = synthetic(hours=6).drop(index=[5, 400, 401, 2000]).reset_index(drop=True)
    cols = tidy.from_pandas(df)
    from shadowing.capacity.fingerprint import dense_layout

    assert dense_layout(cols, 60) is None
    _assert_same_fingerprint(build(cols), build(tidy.from_pandas(df.sample(frac=1.0, random_state=5))))


@pytest.mark.parametrize("parallel_from_rows", [0, 10**12])
def test_parquet_reader_across_row_groups_nulls_and_plain_strings(tmp_path: Path, parallel_from_rows: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Series straddling row groups, null values/instance ids, plain (non-dictionary) text: same as pandas,
    with the row groups read on two threads or one."""
    monkeypatch.setattr(tidy, "_PARALLEL_READ_MIN_ROWS", parallel_from_rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = synthetic(hours=4)
    df.loc[[7, 900], "value"] = np.nan
    df["instance_id"] = df["instance_id"].astype(object)
    df.loc[[1500, 1501], "instance_id"] = None
    df.loc[df.index[-5:], "region"] = "eu-west-1"
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, tmp_path / "plain.parquet", row_group_size=333, use_dictionary=False)
    pq.write_table(table, tmp_path / "dict.parquet", row_group_size=1000)
    # Categories stored whole in every row group's dictionary, most of them never used.
    categorical = df.assign(instance_id=pd.Categorical(df["instance_id"], categories=[
        *[f"i-unused-{k}" for k in range(300)], "i-2", "i-0", "i-1"]))
    pq.write_table(pa.Table.from_pandas(categorical, preserve_index=False), tmp_path / "categorical.parquet",
                   row_group_size=700)
    want = build(tidy.from_pandas(df, source="frame"))
    for name in ("plain.parquet", "dict.parquet", "categorical.parquet"):
        cols = tidy.read_metrics(tmp_path / name)
        assert len(cols) == len(df) and cols.region == "us-east-1"
        assert any("several regions" in w for w in cols.warnings)
        assert not [name for name in cols.instances if name.startswith("i-unused")]
        got = build(cols)
        assert set(got["services"]["api"]["instances"]["by_id"]) == {"i-0", "i-1", "i-2", "unknown"}
        _assert_same_fingerprint(got, want)
        assert any("missing or non-numeric value" in w for w in got["warnings"])


@pytest.mark.parametrize(("previous", "field"), [
    (["not", "a", "fingerprint"], None),
    ({"window": "yesterday"}, "window"),
    ({"window": {"start": "2025-01-06T00:00:00Z", "end": "soon"}}, "window.end"),
    ({"window": {"start": "2025-01-06T00:00:00Z", "end": "2025-01-06T06:00:00Z"}, "services": []}, "services"),
    ({"window": {"start": "2025-01-05T00:00:00Z", "end": "2025-01-06T00:00:00Z"},
      "services": {"api": {"metrics": {"cpu_utilization": {"count": 3, "sketch": "%%%"}}}}},
     "services.api.metrics.cpu_utilization"),  # a corrupt sketch is named by its owner
])
def test_fold_refuses_a_malformed_previous_fingerprint(previous: object, field: str | None) -> None:
    cols = tidy.from_pandas(synthetic(hours=1))
    with pytest.raises(InputError, match="prev.json") as err:
        fold(previous, cols, previous_source="prev.json")  # type: ignore[arg-type]
    assert err.value.field == field


def test_dense_path_with_zeros_and_negative_values_agrees_with_the_general_path() -> None:
    """Zeros next to large values (idle disks) and negatives (an unknown metric) widen the ordinal range."""
    df = synthetic(hours=6)
    rows = df.metric == "network_in_bytes"
    df.loc[rows & (df.index % 7 == 0), "value"] = 0.0
    df.loc[df.metric == "queue_depth", "value"] -= 6.0  # unknown metric: negatives are legitimate
    cols = tidy.from_pandas(df)
    from shadowing.capacity.fingerprint import dense_layout

    assert dense_layout(cols, 60) is not None
    dense = build(cols)
    _assert_same_fingerprint(dense, build(tidy.from_pandas(df.sample(frac=1.0, random_state=11))))
    queue = dense["services"]["api"]["metrics"]["queue_depth"]
    values = df.loc[df.metric == "queue_depth", "value"].to_numpy()
    assert queue["min"] == values.min() < 0
    for name, q in (("p50", 0.5), ("p90", 0.9)):
        assert rel(queue[name], float(np.quantile(values, q))) <= 0.01


def test_parallel_map_keeps_order_and_raises_worker_errors() -> None:
    from shadowing.metrics.frame import distinct, parallel_map

    assert parallel_map(lambda x: x * x, list(range(7)), 2) == [x * x for x in range(7)]

    def boom(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    with pytest.raises(ValueError, match="three"):
        parallel_map(boom, list(range(6)), 2)
    assert distinct(np.array([3, 1, 3, 2, 1])).tolist() == [1, 2, 3]


def test_an_unmeasurable_step_is_assumed_and_said_so() -> None:
    one_each = synthetic(hours=1).groupby(["instance_id", "metric"]).head(1)  # one sample per series
    fp = build(tidy.from_pandas(one_each))
    assert fp["params"]["step_seconds"] == 60
    assert any("sampling step cannot be measured" in w and "assumed 60 s" in w for w in fp["warnings"])
    given = build(tidy.from_pandas(one_each), params=ProfileParams(step_seconds=300))
    assert given["params"]["step_seconds"] == 300
    assert not any("sampling step" in w for w in given["warnings"])
    measured = build(tidy.from_pandas(synthetic(hours=1)))  # 60 samples a series: measured, no warning
    assert measured["params"]["step_seconds"] == 60 and not any("sampling step" in w for w in measured["warnings"])
