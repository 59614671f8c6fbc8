"""The numpy sketch: ≤ 1 % relative error against numpy's exact quantiles, exact merge, DDSketch-compatible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowing.metrics.frame import read_metrics
from shadowing.metrics.sketch import ALPHA, LogSketch, ordinals

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "metrics" / "nab_realAWSCloudwatch"
QS = [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]


def relative_errors(values: np.ndarray) -> np.ndarray:
    sketch = LogSketch.from_values(values)
    got = np.array(sketch.quantiles(QS, float(values.min()), float(values.max())), dtype=float)
    exact = np.quantile(values, QS)
    return np.abs(got - exact) / np.where(exact == 0, 1.0, np.abs(exact))


def _traces(folder: Path) -> list[np.ndarray]:
    cols = read_metrics(folder)
    return [cols.values[cols.instance == i] for i in range(len(cols.instances))]


def test_quantiles_within_one_percent_on_real_traces() -> None:
    traces = _traces(FIXTURES)
    assert len(traces) == 3
    for values in traces:
        assert relative_errors(values).max() <= ALPHA + 1e-12


def test_quantiles_within_one_percent_on_all_shared_traces() -> None:
    if not SHARED.exists():
        pytest.skip("shared NAB traces not present")
    worst = max(relative_errors(v).max() for v in _traces(SHARED))
    assert worst <= ALPHA + 1e-12


values_strategy = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)),
    min_size=1, max_size=300).map(lambda v: np.array(v, dtype=float))


@settings(max_examples=150, deadline=None)
@given(values_strategy)
def test_relative_error_and_order_property(values: np.ndarray) -> None:
    assert relative_errors(values).max() <= ALPHA + 1e-9
    s = LogSketch.from_values(values)
    p = s.quantiles([0.5, 0.9, 0.95, 0.99, 1.0], float(values.min()), float(values.max()))
    assert all(a <= b for a, b in zip(p, p[1:], strict=False))
    assert p[-1] == values.max()


@settings(max_examples=100, deadline=None)
@given(values_strategy, values_strategy)
def test_merge_equals_sketch_of_concatenation(a: np.ndarray, b: np.ndarray) -> None:
    assert LogSketch.from_values(a).merge(LogSketch.from_values(b)) == LogSketch.from_values(np.concatenate([a, b]))


def test_zeros_negatives_and_tiny_values_have_their_own_buckets() -> None:
    values = np.array([-5.0, -1e-6, 0.0, 0.0, 1e-300, 1e-6, 3.0])
    o = ordinals(values)
    assert (np.diff(o) > 0).all() or (np.diff(o) >= 0).all()
    assert o[2] == o[3] == 0 and o[0] < o[1] < 0 < o[4] < o[5] < o[6]
    s = LogSketch.from_values(values)
    assert s.quantiles([0.5], -5.0, 3.0)[0] == 0.0


def test_compact_round_trip_and_ddsketch_agreement() -> None:
    values = _traces(FIXTURES)[0]
    sketch = LogSketch.from_values(values)
    assert LogSketch.from_compact(sketch.to_compact()) == sketch
    assert len(sketch.to_compact()) < 1200
    reference = sketch.to_ddsketch()
    from ddsketch import DDSketch

    added = DDSketch(ALPHA)
    for v in values[:2000]:
        added.add(float(v))
    part = LogSketch.from_values(values[:2000]).to_ddsketch()
    for q in (0.5, 0.9, 0.99):
        assert part.get_quantile_value(q) == pytest.approx(added.get_quantile_value(q), rel=1e-12)
    assert reference.count == values.size


def test_decayed_weights_round_trip_to_half_precision() -> None:
    sketch = LogSketch.from_values(np.arange(1.0, 500.0), weights=np.exp2(-np.arange(499.0) / 100))
    back = LogSketch.weights_from_compact(sketch.weights_to_compact())
    assert np.array_equal(back.ords, sketch.ords)
    assert np.allclose(back.counts, sketch.counts, rtol=2e-3, atol=1e-6 * sketch.counts.max())


def test_bulk_codecs_round_trip_like_one_by_one() -> None:
    from shadowing.metrics.sketch import decode_counts, decode_weights, encode_counts, encode_weights

    rng = np.random.default_rng(7)
    sketches: dict[int, LogSketch] = {}
    for g in range(40):
        if g % 9 == 4:
            continue  # empty groups encode as empty sketches
        values = rng.gamma(2.0, 10.0 ** rng.integers(-2, 8), int(rng.integers(1, 2000)))
        if g % 5 == 0:
            values = np.concatenate((values, -values[:7], np.zeros(3)))  # negative and zero stores too
        sketches[g] = LogSketch.from_values(values)
    group = np.concatenate([np.full(s.ords.size, g) for g, s in sketches.items()])
    ords = np.concatenate([s.ords for s in sketches.values()])
    counts = np.concatenate([s.counts for s in sketches.values()])
    weights = counts * rng.random(counts.size)
    texts, wtexts = encode_counts(group, ords, counts, 40), encode_weights(group, ords, weights, 40)
    for g in range(40):
        one = sketches.get(g, LogSketch())
        assert LogSketch.from_compact(texts[g]) == one
        assert texts[g] == one.to_compact()
        mine, ref = LogSketch.weights_from_compact(wtexts[g]), LogSketch.weights_from_compact(
            LogSketch(one.ords, weights[group == g]).weights_to_compact())
        assert np.array_equal(mine.ords, ref.ords) and np.array_equal(mine.counts, ref.counts)
    g2, o2, c2 = decode_counts(texts)
    assert np.array_equal(g2, group) and np.array_equal(o2, ords) and np.array_equal(c2, counts)
    wg, wo, ww = decode_weights(wtexts)
    assert np.array_equal(wg, group) and np.array_equal(wo, ords)
    assert np.allclose(ww, weights, rtol=1e-3)
