"""Sizing rules: the classic percentile rule, the peak-aware rule from a fingerprint aggregate, and their record."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from shadowing.capacity import batch
from shadowing.capacity.fingerprint import build
from shadowing.capacity.sizing import (
    PEAK_AWARE,
    SizingRule,
    hour_of_week,
    lookahead_cells,
    recommend,
    seasonal_peak,
    summarize_aggregate,
    summarize_values,
)
from shadowing.metrics import frame as tidy

DAY = 86400.0
MONDAY = datetime(2025, 1, 6, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def test_classic_rule_sizes_from_the_quantile_with_margin_confidence_and_records_the_rule() -> None:
    rule = SizingRule()
    full = recommend(rule, demand_quantile=150.0, history_seconds=7 * DAY, observed_instances=3)
    assert full["capacity"] == pytest.approx(165.0) and full["instances"] == 2 and full["confidence"] == 1.0
    assert full["rule"] == rule.as_dict() and full["rule"]["name"] == "shadowing-percentile"
    young = recommend(rule, demand_quantile=150.0, history_seconds=3.5 * DAY)
    assert young["confidence"] == pytest.approx(1.25) and young["capacity"] == pytest.approx(150 * 1.1 * 1.25)
    assert recommend(rule, demand_quantile=150.0, history_seconds=0)["confidence"] == pytest.approx(1.5)
    assert recommend(rule, demand_quantile=0.0, history_seconds=DAY)["instances"] == rule.min_instances
    assert recommend(rule, demand_quantile=None, history_seconds=DAY)["instances"] is None
    assert recommend(rule, demand_quantile=math.nan, history_seconds=DAY)["reason"].startswith("no cpu")
    json.dumps(full)  # the block is stored in the fingerprint as JSON


def test_peak_aware_rule_refuses_to_size_without_the_aggregate() -> None:
    out = recommend(PEAK_AWARE, demand_quantile=80.0, history_seconds=7 * DAY)
    assert out["instances"] is None and "shadowing-peak-aware" in out["reason"]
    assert out["rule"]["decayed"] and out["rule"]["seasonal"] and out["rule"]["percentile"] == 0.99


def test_hour_of_week_agrees_with_the_fingerprint_and_the_lookahead_wraps_the_week() -> None:
    ts = np.arange(MONDAY - 3 * DAY, MONDAY + 9 * DAY, 1234.0)
    assert np.array_equal(hour_of_week(ts), batch.hour_of_week(ts.astype(np.int64)))
    assert hour_of_week(np.array([MONDAY]))[0] == 0
    assert lookahead_cells(MONDAY + 8.5 * 3600, 3600).tolist() == [8, 9]
    assert lookahead_cells(MONDAY + 9 * 3600, 3600).tolist() == [9]  # exactly on the hour: one cell
    assert lookahead_cells(MONDAY - 1800, 3600).tolist() == [0, 167]  # Sunday 23:30 → Monday 00:30
    assert lookahead_cells(MONDAY, 3 * 3600).tolist() == [0, 1, 2]


def test_seasonal_peak_reads_the_cells_of_the_lookahead_and_skips_empty_hours() -> None:
    peaks: list[float | None] = [None] * 168
    peaks[9] = 250.0  # Monday 09:00 batch job
    peaks[8] = 40.0
    assert seasonal_peak(peaks, MONDAY + 8.5 * 3600, 3600) == 250.0
    assert seasonal_peak(peaks, MONDAY + 8 * 3600, 3600) == 40.0
    assert seasonal_peak(peaks, MONDAY + 11 * 3600, 3600) is None
    assert seasonal_peak(peaks[:100], MONDAY, 3600) is None  # malformed profile: not used
    assert seasonal_peak(None, MONDAY, 3600) is None


def _weekly_burst_frame(days: int = 9) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """One instance, 5-minute CPU around 20 %, plus a burst to 90 % every Monday 09:00–09:15 UTC."""
    rng = np.random.default_rng(7)
    ts = np.arange(MONDAY - 2 * DAY, MONDAY - 2 * DAY + days * DAY, 300.0)
    values = np.clip(rng.normal(20.0, 3.0, ts.size), 0, 100)
    burst = (hour_of_week(ts) == 9) & ((ts % 3600) < 900)
    values[burst] = 90.0
    df = pd.DataFrame({"timestamp": pd.to_datetime(ts, unit="s", utc=True), "region": "us-east-1",
                       "service": "api", "instance_id": "i-1", "metric": "cpu_utilization", "value": values})
    return df, ts, values


def test_fingerprint_aggregate_and_raw_history_give_the_same_sizing() -> None:
    """The backtest sizes from raw history; the fingerprint from its aggregate entry: same inputs, same answer."""
    df, ts, values = _weekly_burst_frame()
    fp = build(tidy.from_pandas(df))
    agg = fp["services"]["api"]["aggregate"]["cpu_utilization"]
    end = ts[-1] + 300.0  # the fingerprint window's end
    history = end - ts[0]
    for rule in (PEAK_AWARE, replace(PEAK_AWARE, seasonal=False), SizingRule()):
        from_fp = summarize_aggregate(rule, agg, now=end, history_seconds=history)
        raw = summarize_values(rule, ts, values, now=end, history_start=ts[0])
        assert from_fp.quantile == pytest.approx(raw.quantile, rel=0.01), rule
        want = (float(np.quantile(values, rule.percentile)) if not rule.decayed else
                float(np.sort(values)[np.searchsorted(np.cumsum(np.exp2((ts - end) / DAY)[np.argsort(values)]),
                                                      rule.percentile * np.exp2((ts - end) / DAY).sum())]))
        assert from_fp.quantile == pytest.approx(want, rel=0.011), rule
    # a Monday 08:30 fingerprint must cover the 09:00 burst, a Monday 11:00 one need not
    at_0830 = MONDAY + 7 * DAY + 8.5 * 3600
    sized = recommend(PEAK_AWARE, aggregate=agg, now=at_0830, history_seconds=history, observed_instances=1)
    assert sized["seasonal_peak"] == pytest.approx(90.0, rel=1e-3)
    assert sized["capacity"] == pytest.approx(90.0 * (1 + PEAK_AWARE.margin), rel=1e-3) and sized["instances"] == 1
    assert sized["inputs"] == {"quantile_from": "decayed_sketch"} and sized["rule"]["name"] == "shadowing-peak-aware"
    later = recommend(PEAK_AWARE, aggregate=agg, now=MONDAY + 7 * DAY + 11 * 3600, history_seconds=history)
    assert later["capacity"] < 40.0 and later["base_demand"] == later["demand_quantile"]
    json.dumps(sized)


def test_aggregate_without_decayed_sketch_falls_back_to_all_history() -> None:
    df, ts, values = _weekly_burst_frame(days=3)
    agg = dict(build(tidy.from_pandas(df))["services"]["api"]["aggregate"]["cpu_utilization"])
    del agg["decayed_sketch"]
    s = summarize_aggregate(PEAK_AWARE, agg, now=ts[-1] + 300, history_seconds=3 * DAY)
    assert s.inputs == {"quantile_from": "sketch"}
    assert s.quantile == pytest.approx(float(np.quantile(values, 0.99)), rel=0.011)


def test_short_history_confidence_of_the_peak_aware_rule() -> None:
    assert PEAK_AWARE.confidence(0) == pytest.approx(1.25)
    assert PEAK_AWARE.confidence(3.5 * DAY) == pytest.approx(1.125)
    assert PEAK_AWARE.confidence(30 * DAY) == 1.0
