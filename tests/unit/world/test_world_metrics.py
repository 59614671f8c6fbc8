from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from shadowing.metrics.names import CANONICAL_METRICS, TIDY_COLUMNS
from shadowing.world.metrics import iter_synthetic_tidy_frames, synthetic_tidy_frame

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday


def test_frame_shape_columns_and_types() -> None:
    f = synthetic_tidy_frame(services=5, instances_per_service=3, start=START, periods=120, seed=1)
    assert tuple(f.columns) == TIDY_COLUMNS
    assert len(f) == 5 * 3 * len(CANONICAL_METRICS) * 120
    assert str(f["timestamp"].dt.tz) == "UTC"
    for col in ("region", "service", "instance_id", "metric"):
        assert isinstance(f[col].dtype, pd.CategoricalDtype)
    assert f["instance_id"].nunique() == 15 and f["service"].nunique() == 5
    cpu = f.loc[f.metric == "cpu_utilization", "value"]
    assert cpu.between(0, 100).all() and not f["value"].isna().any()
    assert f.groupby(["instance_id", "metric"], observed=True).size().eq(120).all()


def test_deterministic_by_seed_and_chunks_equal_whole() -> None:
    kw = dict(services=4, instances_per_service=5, start=START, periods=60, seed=7)
    a, b = synthetic_tidy_frame(**kw), synthetic_tidy_frame(**kw)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["value"], synthetic_tidy_frame(**{**kw, "seed": 8})["value"])
    chunks = list(iter_synthetic_tidy_frames(**kw, instances_per_chunk=3))
    assert len(chunks) == 7
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), a)


def test_same_points_whatever_the_window() -> None:
    whole = synthetic_tidy_frame(services=3, instances_per_service=2, start=START, periods=600, seed=2)
    later = synthetic_tidy_frame(services=3, instances_per_service=2, start=START + pd.Timedelta(minutes=300),
                                 periods=10, seed=2)
    merged = later.merge(whole, on=["timestamp", "instance_id", "metric"], suffixes=("", "_w"))
    assert len(merged) == len(later)
    np.testing.assert_allclose(merged["value"], merged["value_w"])


def test_realistic_shapes_diurnal_weekly_correlated() -> None:
    f = synthetic_tidy_frame(services=3, instances_per_service=2, start=START, periods=7 * 288, step_seconds=300,
                             seed=0)
    wide = f.pivot_table(index=["instance_id", "timestamp"], columns="metric", values="value", observed=True)
    assert wide["cpu_utilization"].corr(wide["network_out_bytes"]) > 0.6
    assert wide["cpu_utilization"].corr(wide["active_connections"]) > 0.6
    assert wide["cpu_utilization"].corr(wide["request_latency_ms"]) > 0.5
    cpu = f[f.metric == "cpu_utilization"]
    hours = cpu["timestamp"].dt.hour
    assert cpu.loc[hours.between(13, 17), "value"].mean() > 1.5 * cpu.loc[hours.between(2, 6), "value"].mean()
    weekend = cpu["timestamp"].dt.dayofweek >= 5
    assert cpu.loc[weekend, "value"].mean() < 0.9 * cpu.loc[~weekend, "value"].mean()
    assert cpu.groupby("instance_id", observed=True)["value"].mean().std() > 0  # per-instance imbalance


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        synthetic_tidy_frame(services=0, instances_per_service=1, start=START, periods=1)
    with pytest.raises(ValueError):
        synthetic_tidy_frame(services=1, instances_per_service=1, start=datetime(2025, 1, 1), periods=1)
