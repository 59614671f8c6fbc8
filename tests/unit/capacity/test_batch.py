"""The fold's sorted bin merge must give exactly the general merge's table."""

from __future__ import annotations

import numpy as np
import pytest

from shadowing.capacity import batch as gb


def _batch(rng: np.random.Generator, n_groups: int, rows: int, spread: float) -> gb.GroupBatch:
    groups = rng.integers(0, n_groups, rows)
    values = rng.lognormal(3.0, spread, rows) * rng.choice([1.0, 1.0, 1.0, 0.0, -1.0], rows)
    ts = 1_700_000_000 + rng.uniform(0, 86_400, rows)
    return gb.compute(groups, n_groups, ts, values, reference_time=1_700_086_400.0, ewma_half_life=3600.0,
                      decay_half_life=86_400.0)


@pytest.mark.parametrize("seed", range(6))
def test_sorted_merge_equals_general_merge(seed: int) -> None:
    rng = np.random.default_rng(seed)
    old = _batch(rng, 40, 20_000, 1.0)
    new = _batch(rng, 25, 500, 2.5)  # wider spread: buckets the old table lacks get inserted
    n_out = 50
    old_map = np.sort(rng.choice(n_out, 40, replace=False))
    new_map = np.sort(rng.choice(n_out, 25, replace=False))
    parts = [(old, old_map), (new, new_map)]
    fast = gb._merge_sorted_bins(parts)
    assert fast is not None
    bg = np.concatenate([m[b.bin_group] for b, m in parts])
    bo = np.concatenate([b.bin_ord for b, _ in parts])
    slow = gb._merge_bins(parts, bg, bo, n_out)
    for got, want in zip(fast, slow, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    merged = gb.pool(old, old_map, n_out, other=new, other_mapping=new_map)
    np.testing.assert_array_equal(merged.count, np.bincount(old_map, old.count, n_out)
                                  + np.bincount(new_map, new.count, n_out))


def test_sorted_merge_declines_unsorted_mappings() -> None:
    rng = np.random.default_rng(7)
    a, b = _batch(rng, 5, 1000, 1.0), _batch(rng, 5, 100, 1.0)
    assert gb._merge_sorted_bins([(a, np.array([4, 3, 2, 1, 0])), (b, np.arange(5))]) is None


@pytest.mark.parametrize("seed", range(4))
def test_max_rows_into_equals_maximum_at(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(300, 7))
    rows[rng.random(rows.shape) < 0.2] = -np.inf
    targets = rng.integers(0, 40, 300)
    want = np.full((40, 7), -np.inf)
    np.maximum.at(want, targets, rows)
    got = np.full((40, 7), -np.inf)
    gb.max_rows_into(got, targets, rows)
    np.testing.assert_array_equal(got, want)


def test_hour_of_week_peaks_fold_hours_onto_the_week() -> None:
    rng = np.random.default_rng(3)
    hours = np.arange(400_000, 400_000 + 200)  # more than a week: some hours of the week repeat
    peaks = rng.uniform(0, 100, (12, hours.size))
    targets = rng.integers(0, 4, 12)
    want = np.full((4, gb.HOURS_PER_WEEK), -np.inf)
    slot = (hours + gb._EPOCH_HOUR_OF_WEEK) % gb.HOURS_PER_WEEK
    for r in range(12):
        for c in range(hours.size):
            want[targets[r], slot[c]] = max(want[targets[r], slot[c]], peaks[r, c])
    np.testing.assert_array_equal(gb.hour_of_week_peaks(targets, peaks, hours, 4), want)
