"""Adversarial sizing: the numbers a failover launches must be whole, sufficient, explainable and never a crash.

Attacks: invalid rule parameters (each must be refused naming its field), the rule's record replayed from JSON,
the short-history confidence (monotone, bounded, exact at its ends, cautious when the history is unknown),
rounding (never fewer instances than demand needs, float noise not turned into an extra instance), zero,
negative, non-finite and huge demand, numpy scalars in the record, the hour-of-week lookahead across the week's
wrap and on hour boundaries, and an all-zero service built through the fingerprint.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shadowing.capacity.fingerprint import ProfileParams, build, dumps
from shadowing.capacity.sizing import (
    HOURS_PER_WEEK,
    PEAK_AWARE,
    DemandSummary,
    SizingRule,
    lookahead_cells,
    recommend,
    seasonal_peak,
    size,
)
from shadowing.errors import InputError
from shadowing.metrics import frame as tidy

H = 3600.0
DAY = 24 * H
MONDAY = datetime(2025, 1, 6, tzinfo=UTC).timestamp()  # hour of week 0
EXACT = replace(SizingRule(), margin=0.0, short_history_boost=0.0)  # instances = ceil(demand / 100)


# --- rule parameters --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("percentile", 99), ("percentile", 99.5), ("percentile", 0.0), ("percentile", -0.1), ("percentile", 1.0001),
    ("percentile", math.nan), ("margin", -0.01), ("margin", math.nan), ("margin", math.inf),
    ("target_utilization", 0.0), ("target_utilization", -100.0), ("target_utilization", math.inf),
    ("short_history_boost", -0.5), ("short_history_boost", math.nan), ("full_history_seconds", 0.0),
    ("full_history_seconds", -DAY), ("full_history_seconds", math.inf), ("min_instances", -1),
    ("min_instances", 1.5), ("min_instances", True), ("lookahead_seconds", -1.0), ("lookahead_seconds", math.inf),
    ("lookahead_seconds", math.nan), ("decayed", "yes"), ("seasonal", 1), ("metric", ""), ("metric", None),
    ("percentile", "0.99"),
])
def test_invalid_rule_parameters_are_refused_naming_the_field(field: str, value: Any) -> None:
    """``replace`` is how the CLI applies --percentile/--margin: the refusal reaches the user as one line."""
    with pytest.raises(InputError, match=rf"field '{field}'") as caught:
        replace(PEAK_AWARE, **{field: value})
    assert caught.value.field == field
    with pytest.raises(InputError, match=rf"field '{field}'"):
        SizingRule.from_dict({**PEAK_AWARE.as_dict(), field: value})


@pytest.mark.parametrize("edge", [{"percentile": 1.0}, {"percentile": 1e-9}, {"margin": 0.0}, {"min_instances": 0},
                                  {"lookahead_seconds": 0.0}, {"short_history_boost": 0.0}])
def test_rule_parameters_at_their_bounds_are_accepted(edge: dict[str, Any]) -> None:
    rule = replace(PEAK_AWARE, **edge)
    assert all(getattr(rule, k) == v for k, v in edge.items())


@pytest.mark.parametrize("rule", [SizingRule(), PEAK_AWARE, replace(PEAK_AWARE, percentile=0.95, margin=0.125,
                                                                    target_utilization=60.0, min_instances=0,
                                                                    lookahead_seconds=7200.0, name="custom")])
def test_the_recorded_rule_replays_through_json(rule: SizingRule) -> None:
    """The sizing block carries the rule; read back from the stored JSON it is the same rule, sizing the same."""
    block = recommend(rule, demand_quantile=437.0, history_seconds=2 * DAY,
                      aggregate=None if not (rule.decayed or rule.seasonal) else _aggregate([437.0]),
                      now=MONDAY)
    stored = json.loads(json.dumps(block))
    replayed = SizingRule.from_dict(stored["rule"])
    assert replayed == rule
    assert recommend(replayed, demand_quantile=437.0, history_seconds=2 * DAY,
                     aggregate=None if not (rule.decayed or rule.seasonal) else _aggregate([437.0]),
                     now=MONDAY) == block


def test_a_recorded_rule_with_an_unknown_or_misspelt_parameter_is_refused() -> None:
    with pytest.raises(InputError, match="field 'margn'"):
        SizingRule.from_dict({**PEAK_AWARE.as_dict(), "margn": 0.2})
    with pytest.raises(InputError, match="must be an object"):
        SizingRule.from_dict(["percentile", 0.99])  # type: ignore[arg-type]
    # a JSON writer that prints 3600.0 as 3600 still replays the same rule
    assert SizingRule.from_dict({"lookahead_seconds": 3600, "percentile": 1}) == replace(SizingRule(), percentile=1.0)


# --- confidence -------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(boost=st.floats(0, 10), full=st.floats(1, 1e9),
       h1=st.one_of(st.floats(-1e9, 2e9), st.just(0.0), st.just(math.inf)),
       h2=st.one_of(st.floats(-1e9, 2e9), st.just(math.inf)))
def test_confidence_is_monotone_and_bounded(boost: float, full: float, h1: float, h2: float) -> None:
    rule = replace(SizingRule(), short_history_boost=boost, full_history_seconds=full)
    lo, hi = sorted((h1, h2))
    assert 1.0 <= rule.confidence(hi) <= rule.confidence(lo) <= 1.0 + boost


def test_confidence_is_exact_at_its_ends_and_cautious_without_a_history() -> None:
    rule = replace(SizingRule(), short_history_boost=0.5, full_history_seconds=7 * DAY)
    assert rule.confidence(0.0) == 1.5 and rule.confidence(-DAY) == 1.5  # a clock-skewed start: no history
    assert rule.confidence(7 * DAY) == 1.0 and rule.confidence(math.inf) == 1.0
    assert rule.confidence(7 * DAY - 1) > 1.0
    assert rule.confidence(3.5 * DAY) == 1.25
    # an unknown history is a short one: the full boost, never none of it
    assert rule.confidence(math.nan) == 1.5
    unknown = recommend(rule, demand_quantile=100.0, history_seconds=math.nan)
    assert unknown["instances"] == 2 and unknown["history_seconds"] is None
    json.dumps(unknown, allow_nan=False)  # stored as JSON: no NaN in the record


# --- rounding: enough instances, not one too many ----------------------------------------------------------

@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(demand=st.floats(0, 1e7), margin=st.floats(0, 2), boost=st.floats(0, 2), history=st.floats(0, 2e6),
       target=st.floats(0.5, 1e4), minimum=st.integers(0, 3))
@example(demand=300.0000001, margin=0.0, boost=0.0, history=1e9, target=100.0, minimum=1)
@example(demand=300.00000005, margin=0.0, boost=0.0, history=1e9, target=100.0, minimum=0)
@example(demand=5e-324, margin=0.0, boost=0.0, history=1e9, target=2.0, minimum=0)  # demand / target underflows
def test_instances_cover_the_capacity_and_are_the_fewest_that_do(demand: float, margin: float, boost: float,
                                                                history: float, target: float,
                                                                minimum: int) -> None:
    rule = SizingRule(margin=margin, short_history_boost=boost, target_utilization=target, min_instances=minimum)
    out = recommend(rule, demand_quantile=demand, history_seconds=history)
    n, capacity = out["instances"], out["capacity"]
    assert isinstance(n, int) and n >= minimum
    assert capacity == pytest.approx(demand * (1 + margin) * rule.confidence(history), rel=1e-12)
    # enough: only float noise (a few ulps of the product) may be forgiven
    assert n * target >= capacity * (1 - 8 * sys.float_info.epsilon), out
    # not more than needed
    assert n == minimum or (n - 1) * target < capacity, out


@pytest.mark.parametrize("k", [1, 2, 3, 7, 10, 49, 100, 1000, 12345])
def test_demand_of_a_whole_number_of_instances_is_that_many_even_through_float_noise(k: int) -> None:
    assert recommend(EXACT, demand_quantile=100.0 * k, history_seconds=1e9)["instances"] == k
    # 3.0 × 100 must never become 2, and 3 + one ulp (an artefact of the product) must not become 4
    assert recommend(EXACT, demand_quantile=math.nextafter(100.0 * k, math.inf), history_seconds=1e9)[
        "instances"] == k
    assert recommend(EXACT, demand_quantile=math.nextafter(100.0 * k, 0), history_seconds=1e9)["instances"] == k
    # a margin that should land exactly on k instances: base × 1.1 is 100·k give or take an ulp
    with_margin = replace(EXACT, margin=0.1)
    assert recommend(with_margin, demand_quantile=100.0 * k / 1.1, history_seconds=1e9)["instances"] == k
    # a real excess over k instances takes one more
    assert recommend(EXACT, demand_quantile=100.0 * k * (1 + 1e-12), history_seconds=1e9)["instances"] == k + 1


# --- degenerate and hostile demand --------------------------------------------------------------------------

@pytest.mark.parametrize(("demand", "instances"), [(0.0, 1), (-0.0, 1), (-250.0, 1), (5e-324, 1), (None, None),
                                                   (math.nan, None), (math.inf, None), (-math.inf, None)])
def test_zero_negative_and_unknown_demand(demand: float | None, instances: int | None) -> None:
    out = recommend(SizingRule(), demand_quantile=demand, history_seconds=DAY)
    assert out["instances"] == instances
    if instances is None:
        assert out["reason"] and out["rule"] == SizingRule().as_dict()
    # without a minimum, no demand needs no instance, but any positive demand (even a denormal whose share of an
    # instance underflows to 0) needs one, as 1e-10 does
    unfloored = None if instances is None else (1 if demand > 0 else 0)
    assert recommend(replace(SizingRule(), min_instances=0), demand_quantile=demand,
                     history_seconds=DAY)["instances"] == unfloored
    msgspec.json.encode(out)


@pytest.mark.parametrize("demand", [1e20, 1e300, 1e308, 1.7e308, sys.float_info.max])
def test_huge_demand_never_crashes_and_never_yields_a_non_finite_record(demand: float) -> None:
    """1e308 × 1.1 × 1.5 overflows to inf: a count cannot be made of it (math.ceil(inf) raised OverflowError)."""
    out = recommend(SizingRule(), demand_quantile=demand, history_seconds=0.0)
    encoded = msgspec.json.encode(out)  # what the warehouse stores: no inf/NaN sneaks through
    assert b"Infinity" not in encoded and b"NaN" not in encoded
    if out["instances"] is None:
        assert "beyond any instance count" in out["reason"] and out["rule"]["name"] == "shadowing-percentile"
    else:
        assert out["instances"] * 100.0 >= out["capacity"] * (1 - 1e-15)


def test_observed_instances_zero_or_missing_do_not_change_the_sizing_and_are_recorded() -> None:
    sized = [recommend(SizingRule(), demand_quantile=420.0, history_seconds=7 * DAY, observed_instances=obs)
             for obs in (None, 0, 0.0, 3, 40.0)]
    assert {s["instances"] for s in sized} == {5}
    assert [s["observed_instances"] for s in sized] == [None, 0.0, 0.0, 3.0, 40.0]


def test_numpy_scalars_give_a_plain_json_record() -> None:
    """A window given as numpy floats (np.median of timestamps, a numpy grid) leaked np.float64 into the sizing
    block, which msgspec (the fingerprint's writer) refuses: the whole fingerprint could not be stored."""
    out = recommend(SizingRule(), demand_quantile=np.float64(250.0), history_seconds=np.float64(DAY),
                    observed_instances=np.float64(3.0))
    msgspec.json.encode(out)
    df = _frame({"api": [[20.0] * 120, [30.0] * 120]})
    end = np.float64(MONDAY + 120 * 60)
    fp = build(tidy.from_pandas(df), window=(np.float64(MONDAY), end))
    assert json.loads(dumps(fp))["services"]["api"]["sizing"]["instances"] == 1


def test_a_classic_rule_given_the_aggregate_sizes_from_it_without_the_window_end() -> None:
    """Only the seasonal form needs ``now``; the classic one was answered 'no cpu_utilization aggregate'."""
    agg = _aggregate([150.0, 250.0, 350.0])
    out = recommend(EXACT, aggregate=agg, history_seconds=1e9)
    assert out["instances"] == 4 and out["demand_quantile"] == pytest.approx(350.0, rel=0.011)
    decayed = recommend(replace(PEAK_AWARE, seasonal=False), aggregate=agg, history_seconds=1e9)
    assert decayed["instances"] == 4 and decayed["inputs"] == {"quantile_from": "decayed_sketch"}
    refused = recommend(PEAK_AWARE, aggregate=agg, history_seconds=1e9)
    assert refused["instances"] is None and "window end" in refused["reason"]


# --- the hour-of-week lookahead ----------------------------------------------------------------------------

SUNDAY_23 = MONDAY + 7 * DAY - H  # hour of week 167


@pytest.mark.parametrize(("now", "lookahead", "cells"), [
    (SUNDAY_23, H, [167]),  # exactly on the hour: [23:00, 00:00) is one cell
    (SUNDAY_23 + 1800, H, [0, 167]),  # 23:30 → Monday 00:30 wraps to the week's first hour
    (MONDAY + 7 * DAY - 1, 1.0, [167]),  # the last second of the week
    (MONDAY + 7 * DAY - 1, 2.0, [0, 167]),
    (MONDAY + 7 * DAY, 0.0, [0]),  # a zero lookahead still covers the hour it is in
    (SUNDAY_23 + 1800, 2 * DAY, [*range(0, 48), 167]),
    (MONDAY + 5 * H, 167 * H, [h for h in range(168) if h != 4]),  # 167 whole hours: all but 04:00
    (MONDAY + 5 * H + 1, 167 * H, list(range(168))),  # one second later touches 168 hours: each once
    (MONDAY + 5 * H, 1e15, list(range(168))),  # a huge lookahead: the whole week, not 2.8e11 hours
])
def test_lookahead_cells_across_the_week_wrap_and_on_hour_boundaries(now: float, lookahead: float,
                                                                    cells: list[int]) -> None:
    assert lookahead_cells(now, lookahead).tolist() == sorted(cells)


def test_seasonal_peak_across_the_wrap_with_nan_null_and_minus_inf_cells() -> None:
    peaks: list[float | None] = [math.nan] * HOURS_PER_WEEK
    peaks[0], peaks[167], peaks[1] = 410.0, None, -math.inf
    assert seasonal_peak(peaks, SUNDAY_23 + 1800, H) == 410.0  # Sunday 23:30 sees Monday 00:00's peak
    assert seasonal_peak(peaks, SUNDAY_23, H) is None  # only hour 167, which has no data
    assert seasonal_peak(peaks, MONDAY + 7 * DAY + H, H) is None  # -inf: no data, not a peak
    flat = replace(PEAK_AWARE, margin=0.0, short_history_boost=0.0)
    sized = size(flat, DemandSummary(120.0, 1e9, seasonal_peak(peaks, SUNDAY_23 + 1800, H)))
    assert sized["instances"] == 5 and sized["base_demand"] == 410.0
    # a non-finite quantile beside a usable peak: sized from the peak, and the record stays valid JSON
    odd = size(flat, DemandSummary(math.inf, 1e9, 410.0))
    assert odd["instances"] == 5 and odd["demand_quantile"] is None
    json.dumps(odd, allow_nan=False)


def test_the_stored_hour_of_week_peak_never_understates_the_peak() -> None:
    """Four instances at 75.01 % each on Monday 09:00 are 300.04 % of one instance: at 100 % per instance and
    no margin, a Monday 08:30 sizing must give 4, not 3."""
    values = np.full(10 * 60, 10.0)
    values[9 * 60:9 * 60 + 2] = 75.01  # Monday 09:00–09:02
    df = _frame({"api": [values] * 4})
    rule = replace(PEAK_AWARE, margin=0.0, short_history_boost=0.0)
    fp = build(tidy.from_pandas(df), params=ProfileParams(sizing=rule))
    agg = fp["services"]["api"]["aggregate"]["cpu_utilization"]
    assert agg["max"] == pytest.approx(300.04)
    assert agg["hour_of_week_peak"][9] >= agg["max"]
    at_0830 = recommend(rule, aggregate=agg, now=MONDAY + 7 * DAY + 8.5 * H, history_seconds=1e9)
    assert at_0830["instances"] == 4


# --- through the fingerprint ---------------------------------------------------------------------------------

def test_an_all_zero_service_is_sized_to_the_minimum_not_refused() -> None:
    df = _frame({"idle": [[0.0] * 90, [0.0] * 90, [0.0] * 90]})
    for rule, want in ((PEAK_AWARE, 1), (replace(PEAK_AWARE, min_instances=0), 0), (SizingRule(), 1)):
        sizing = build(tidy.from_pandas(df), params=ProfileParams(sizing=rule))["services"]["idle"]["sizing"]
        assert sizing["instances"] == want and sizing["capacity"] == 0.0, rule
        assert sizing["observed_instances"] == 3.0


# --- helpers -------------------------------------------------------------------------------------------------

def _frame(services: dict[str, list[Any]], *, start: float = MONDAY, step: float = 60.0) -> pd.DataFrame:
    """CPU series per service (one list of values per instance), every ``step`` from ``start``."""
    parts = []
    for svc, series in services.items():
        for i, values in enumerate(series):
            values = np.asarray(values, dtype=np.float64)
            ts = pd.to_datetime(start + step * np.arange(values.size), unit="s", utc=True)
            parts.append(pd.DataFrame({"timestamp": ts, "region": "us-east-1", "service": svc,
                                       "instance_id": f"{svc}-{i}", "metric": "cpu_utilization", "value": values}))
    return pd.concat(parts, ignore_index=True)


def _aggregate(levels: list[float]) -> dict[str, Any]:
    """A fingerprint's CPU aggregate entry for a service whose total runs at each level for an hour."""
    values = np.concatenate([np.full(60, level / 8) for level in levels])
    fp = build(tidy.from_pandas(_frame({"api": [values] * 8})))
    return fp["services"]["api"]["aggregate"]["cpu_utilization"]
