"""Vectorised per-group statistics: one pass of numpy bincounts over millions of rows, no loop per point.

A :class:`GroupBatch` holds, for ``n`` groups, the mergeable state of every statistic the fingerprint reports:
count/mean/M2 (Chan et al. parallel moments), exact min/max, EWMA numerator/denominator at a reference time,
hour-of-week peaks, and the quantile sketch as sparse (group, ordinal, count, decayed weight) bins sorted by
(group, ordinal). Batches of disjoint data merge exactly (:func:`pool`), which gives both the pooled
per-service distribution (instance batches → service) and the incremental fold (old window + new window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shadowing.metrics import sketch
from shadowing.metrics.frame import parallel_map

HOURS_PER_WEEK = 168
# 1970-01-01 was a Thursday: shift so that hour-of-week 0 is Monday 00:00 UTC.
_EPOCH_HOUR_OF_WEEK = 3 * 24
# Dense (group × bucket) counting up to this many cells, sparse (np.unique) beyond.
_DENSE_LIMIT = 40_000_000


def hour_of_week(ts_seconds: np.ndarray) -> np.ndarray:
    return ((ts_seconds // 3600 + _EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK).astype(np.int64)


@dataclass
class GroupBatch:
    n_groups: int
    count: np.ndarray  # float64 (n,)
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from the mean
    minimum: np.ndarray
    maximum: np.ndarray
    ewma_value: np.ndarray  # Σ w·x / Σ w with w = 2^((t − ref)/h_ewma)
    ewma_log2w: np.ndarray  # log2(Σ w): kept in log form so that long-silent series do not underflow
    how_peak: np.ndarray  # (n, 168), -inf where no data
    bin_group: np.ndarray  # int64, sorted by (group, ordinal)
    bin_ord: np.ndarray  # int32
    bin_count: np.ndarray  # float64 (integers)
    bin_decayed: np.ndarray  # float64, weights 2^((t − ref)/h_decay)
    reference_time: float  # seconds since epoch the decayed weights refer to

    @property
    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, np.sqrt(np.maximum(self.m2, 0) / np.maximum(self.count, 1)), np.nan)

    @property
    def ewma(self) -> np.ndarray:
        return self.ewma_value

    def quantiles(self, qs: tuple[float, ...], *, decayed: bool = False) -> np.ndarray:
        weights = self.bin_decayed if decayed else self.bin_count
        return sketch.grouped_quantiles(self.bin_group, self.bin_ord, weights, self.n_groups, qs,
                                        self.minimum, self.maximum, weighted=decayed)

    def group_bins(self, g: int) -> slice:
        lo, hi = np.searchsorted(self.bin_group, [g, g + 1])
        return slice(int(lo), int(hi))


def _decay(ts: np.ndarray, reference: float, half_life: float) -> np.ndarray:
    return np.exp2((ts - reference) / half_life)


def _bin_counts(groups: np.ndarray, ords: np.ndarray, n_groups: int, weight_sets: list[np.ndarray | None]
                ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Sparse (group, ordinal) → summed weights for each weight set (None = count), sorted by (group, ord)."""
    omin, omax = int(ords.min()), int(ords.max())
    span = omax - omin + 1
    # Compact the ordinal space to the buckets that occur (a few hundred typically).
    present = np.bincount(ords - omin, minlength=span) > 0
    distinct = np.flatnonzero(present)
    lookup = np.cumsum(present) - 1
    width = distinct.size
    compact = lookup[ords - omin]
    if n_groups * width <= _DENSE_LIMIT:
        key = groups.astype(np.int64) * width + compact
        size = n_groups * width
        sums = [np.bincount(key, weights=w, minlength=size).astype(np.float64) for w in weight_sets]
        nonzero = np.flatnonzero(sums[0])
        return (nonzero // width).astype(np.int64), (distinct[nonzero % width] + omin).astype(np.int32), \
            [s[nonzero] for s in sums]
    key = groups.astype(np.int64) * width + compact
    uniq, inverse = np.unique(key, return_inverse=True)
    sums = [np.bincount(inverse, weights=w, minlength=uniq.size).astype(np.float64) for w in weight_sets]
    return (uniq // width).astype(np.int64), (distinct[uniq % width] + omin).astype(np.int32), sums


def compute(groups: np.ndarray, n_groups: int, ts: np.ndarray, values: np.ndarray, *, reference_time: float,
            ewma_half_life: float, decay_half_life: float, with_how: bool = True) -> GroupBatch:
    """Statistics of ``values`` per group code (0 ≤ groups < n_groups); ``ts`` in epoch seconds (float64)."""
    groups = np.asarray(groups, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    ts = np.asarray(ts, dtype=np.float64)
    count = np.bincount(groups, minlength=n_groups).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(groups, weights=values, minlength=n_groups) / count
    dev = values - mean[groups]
    m2 = np.bincount(groups, weights=dev * dev, minlength=n_groups)
    del dev
    ewma_value, ewma_log2w = _ewma(groups, n_groups, ts, values, reference_time, ewma_half_life)
    ords = sketch.ordinals(values)
    w_decay = _decay(ts, reference_time, decay_half_life)
    bin_group, bin_ord, (bin_count, bin_decayed) = _bin_counts(groups, ords, n_groups, [None, w_decay])
    del w_decay
    minimum, maximum = _extremes(groups, ords, values, n_groups, bin_group, bin_ord)
    how_peak = np.full((n_groups, HOURS_PER_WEEK), -np.inf)
    if with_how and values.size:
        flat = how_peak.reshape(-1)
        np.maximum.at(flat, groups * HOURS_PER_WEEK + hour_of_week(ts.astype(np.int64)), values)
    return GroupBatch(n_groups, count, np.where(count > 0, mean, np.nan), m2, minimum, maximum, ewma_value,
                      ewma_log2w, how_peak, bin_group, bin_ord, bin_count, bin_decayed, float(reference_time))


def _ewma(groups: np.ndarray, n_groups: int, ts: np.ndarray, values: np.ndarray, reference: float,
          half_life: float) -> tuple[np.ndarray, np.ndarray]:
    """Time-decayed mean and log2 of its total weight, per group (weights relative to ``reference``)."""
    w = _decay(ts, reference, half_life)
    num = np.bincount(groups, weights=w * values, minlength=n_groups)
    den = np.bincount(groups, weights=w, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = num / den
        log2w = np.log2(den)
    # Groups silent for many half-lives underflow: redo only their rows relative to their own last sample.
    tiny = (den < 1e-250) & (np.bincount(groups, minlength=n_groups) > 0)
    if tiny.any():
        rows = tiny[groups]
        g, t, v = groups[rows], ts[rows], values[rows]
        last = np.full(n_groups, -np.inf)
        np.maximum.at(last, g, t)
        w = _decay(t, last[g], half_life)
        num2 = np.bincount(g, weights=w * v, minlength=n_groups)
        den2 = np.bincount(g, weights=w, minlength=n_groups)
        value[tiny] = num2[tiny] / den2[tiny]
        log2w[tiny] = np.log2(den2[tiny]) + (last[tiny] - reference) / half_life
    empty = np.bincount(groups, minlength=n_groups) == 0
    value[empty], log2w[empty] = np.nan, -np.inf
    return value, log2w


def _combine_ewma(targets: np.ndarray, values: np.ndarray, log2w: np.ndarray, n_out: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(log2w) & np.isfinite(values)
    t, v, lw = targets[ok], values[ok], log2w[ok]
    top = np.full(n_out, -np.inf)
    np.maximum.at(top, t, lw)
    w = np.exp2(lw - top[t])
    den = np.bincount(t, weights=w, minlength=n_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.bincount(t, weights=w * v, minlength=n_out) / den
        return np.where(den > 0, value, np.nan), np.where(den > 0, top + np.log2(den), -np.inf)


def _extremes(groups: np.ndarray, ords: np.ndarray, values: np.ndarray, n_groups: int, bin_group: np.ndarray,
              bin_ord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact min/max per group, reducing only the rows of each group's lowest/highest bucket."""
    minimum = np.full(n_groups, np.inf)
    maximum = np.full(n_groups, -np.inf)
    if bin_group.size == 0:
        return np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    starts = np.searchsorted(bin_group, np.arange(n_groups), side="left")
    ends = np.searchsorted(bin_group, np.arange(n_groups), side="right")
    has = ends > starts
    low_ord = np.zeros(n_groups, dtype=np.int64)
    high_ord = np.zeros(n_groups, dtype=np.int64)
    low_ord[has] = bin_ord[starts[has]]
    high_ord[has] = bin_ord[ends[has] - 1]
    at_low = ords == low_ord[groups]
    np.minimum.at(minimum, groups[at_low], values[at_low])
    at_high = ords == high_ord[groups]
    np.maximum.at(maximum, groups[at_high], values[at_high])
    minimum[~has], maximum[~has] = np.nan, np.nan
    return minimum, maximum


def max_rows_into(out: np.ndarray, targets: np.ndarray, rows: np.ndarray) -> None:
    """out[targets[i]] = max(out[targets[i]], rows[i]) for every row i (targets may repeat).

    Repeated targets are reduced with one sort and ``maximum.reduceat`` over whole rows: ``np.maximum.at``
    would visit every element on its slow path (~30 ms for 3000 × 168 peaks).
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size == 0:
        return
    order = np.argsort(targets, kind="stable")
    ordered = targets[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    if starts.size == targets.size:
        out[targets] = np.maximum(out[targets], rows)
        return
    reduced = np.maximum.reduceat(rows[order], starts, axis=0)
    at = ordered[starts]
    out[at] = np.maximum(out[at], reduced)


def pool(batch: GroupBatch, mapping: np.ndarray, n_out: int, *, other: GroupBatch | None = None,
         other_mapping: np.ndarray | None = None, with_how: bool = True) -> GroupBatch:
    """Merge groups: group g of ``batch`` goes to ``mapping[g]`` (and likewise for ``other``).

    Used to pool instances into their service and to fold an old window's state into a new one (both must
    share ``reference_time``; see :func:`rebase`). ``with_how=False`` leaves the hour-of-week peaks empty, for
    callers that compute them from finer data.
    """
    parts = [(batch, np.asarray(mapping, dtype=np.int64))]
    if other is not None:
        if abs(other.reference_time - batch.reference_time) > 1e-6:
            raise ValueError("pool: batches must be rebased to the same reference time")
        parts.append((other, np.asarray(other_mapping, dtype=np.int64)))
    tgt = np.concatenate([m for _, m in parts])
    cnt = np.concatenate([b.count for b, _ in parts])
    mean_in = np.nan_to_num(np.concatenate([b.mean for b, _ in parts]))
    m2_in = np.concatenate([b.m2 for b, _ in parts])
    count = np.bincount(tgt, weights=cnt, minlength=n_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(tgt, weights=cnt * mean_in, minlength=n_out) / count
    delta = mean_in - np.nan_to_num(mean)[tgt]
    m2 = np.bincount(tgt, weights=m2_in + cnt * delta * delta, minlength=n_out)
    minimum = np.full(n_out, np.inf)
    maximum = np.full(n_out, -np.inf)
    how = np.full((n_out, HOURS_PER_WEEK), -np.inf)
    for b, m in parts:
        ok = b.count > 0
        np.minimum.at(minimum, m[ok], b.minimum[ok])
        np.maximum.at(maximum, m[ok], b.maximum[ok])
        if with_how:
            max_rows_into(how, m, b.how_peak)
    ewma_value, ewma_log2w = _combine_ewma(tgt, np.concatenate([b.ewma_value for b, _ in parts]),
                                           np.concatenate([b.ewma_log2w for b, _ in parts]), n_out)
    merged = _merge_sorted_bins(parts) if len(parts) == 2 else None
    if merged is None:
        bg = np.concatenate([m[b.bin_group] for b, m in parts])
        bo = np.concatenate([b.bin_ord for b, _ in parts])
        merged = _merge_bins(parts, bg, bo, n_out) if bg.size else \
            (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), np.zeros(0))
    bin_group, bin_ord, bc, bd = merged
    empty = count == 0
    minimum[empty], maximum[empty] = np.nan, np.nan
    return GroupBatch(n_out, count, np.where(empty, np.nan, mean), m2, minimum, maximum, ewma_value, ewma_log2w,
                      how, bin_group, bin_ord, bc, bd, batch.reference_time)


# Bin keys for the sorted merge: ordinals stay within ±(OFFSET + ~35,800) < 2**18 for any float64.
_ORD_SHIFT = 1 << 18
_KEY_SPAN = 1 << 19


def _sorted_keys(b: GroupBatch, m: np.ndarray) -> np.ndarray | None:
    """(group, ordinal) keys of a batch's bins under ``m``; None unless they come out strictly increasing."""
    if b.bin_group.size == 0:
        return np.zeros(0, np.int64)
    lo, hi = int(b.bin_ord.min()), int(b.bin_ord.max())
    if lo <= -_ORD_SHIFT or hi >= _ORD_SHIFT:
        return None
    keys = m[b.bin_group] * _KEY_SPAN
    keys += b.bin_ord
    keys += _ORD_SHIFT
    return keys if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])) else None


def _merge_sorted_bins(parts: list[tuple[GroupBatch, np.ndarray]]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The fold's merge (old state + a new window, each mapped monotonically): a sorted merge in which the
    new window's few bins are looked up in the old table's keys, added where the bucket exists and inserted
    where it does not. O(old + new·log old) without re-counting the old table; None if not applicable."""
    (a, ma), (b, mb) = parts
    if b.bin_group.size > a.bin_group.size:
        (a, ma), (b, mb) = (b, mb), (a, ma)
    ka, kb = _sorted_keys(a, ma), _sorted_keys(b, mb)
    if ka is None or kb is None:
        return None
    pos = np.searchsorted(ka, kb)
    hit = pos < ka.size
    hit[hit] = ka[pos[hit]] == kb[hit]
    miss = ~hit
    group_a = ma[a.bin_group]
    if miss.any():
        # New buckets go in before the old bin they precede; every new bin's final index is then its lookup
        # position plus the new buckets inserted before it (the new bins are sorted).
        at = pos[miss]
        group = np.insert(group_a, at, mb[b.bin_group[miss]])
        ords = np.insert(a.bin_ord, at, b.bin_ord[miss])
        count = np.insert(a.bin_count, at, b.bin_count[miss])
        decayed = np.insert(a.bin_decayed, at, b.bin_decayed[miss])
        final = pos + np.cumsum(miss) - miss
    else:
        group, ords, count, decayed = group_a, a.bin_ord.copy(), a.bin_count.copy(), a.bin_decayed.copy()
        final = pos
    count[final[hit]] += b.bin_count[hit]
    decayed[final[hit]] += b.bin_decayed[hit]
    return group.astype(np.int64, copy=False), ords.astype(np.int32, copy=False), count, decayed


def _merge_bins(parts: list[tuple[GroupBatch, np.ndarray]], bg: np.ndarray, bo: np.ndarray, n_out: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum the (target group, ordinal) bins of all parts; sorted by (group, ordinal).

    Cells are numbered group by group over each target group's own ordinal range (read off the first and
    last bin of each sorted source group), so the count tables stay as small as the bins themselves.
    """
    lo = np.full(n_out, np.iinfo(np.int64).max)
    hi = np.full(n_out, np.iinfo(np.int64).min)
    for b, m in parts:
        if b.bin_group.size == 0:
            continue
        ids = np.arange(b.n_groups)
        starts = np.searchsorted(b.bin_group, ids, side="left")
        ends = np.searchsorted(b.bin_group, ids, side="right")
        has = ends > starts
        np.minimum.at(lo, m[has], b.bin_ord[starts[has]].astype(np.int64))
        np.maximum.at(hi, m[has], b.bin_ord[ends[has] - 1].astype(np.int64))
    span = np.where(hi >= lo, hi - lo + 1, 0)
    cells = int(span.sum())
    bcount = np.concatenate([b.bin_count for b, _ in parts])
    bdecay = np.concatenate([b.bin_decayed for b, _ in parts])
    base = np.concatenate(([0], np.cumsum(span)[:-1]))
    key = base[bg] + (bo.astype(np.int64) - lo[bg])
    if cells <= 8 * key.size + (1 << 20):
        uniq = np.flatnonzero(np.bincount(key, minlength=cells))
        bc = np.bincount(key, weights=bcount, minlength=cells)[uniq]
        bd = np.bincount(key, weights=bdecay, minlength=cells)[uniq]
    else:  # zeros next to large values make wide ordinal ranges: sort instead of counting cells
        uniq, inverse = np.unique(key, return_inverse=True)
        bc = np.bincount(inverse, weights=bcount, minlength=uniq.size)
        bd = np.bincount(inverse, weights=bdecay, minlength=uniq.size)
    group = np.searchsorted(base, uniq, side="right") - 1
    return group.astype(np.int64), (uniq - base[group] + lo[group]).astype(np.int32), bc, bd


def rebase(batch: GroupBatch, reference_time: float, *, ewma_half_life: float, decay_half_life: float
           ) -> GroupBatch:
    """The same state with its decayed weights expressed relative to a later ``reference_time``."""
    dt = reference_time - batch.reference_time
    d = 2.0 ** (-dt / decay_half_life)
    return GroupBatch(batch.n_groups, batch.count, batch.mean, batch.m2, batch.minimum, batch.maximum,
                      batch.ewma_value, batch.ewma_log2w - dt / ewma_half_life, batch.how_peak, batch.bin_group, batch.bin_ord,
                      batch.bin_count, batch.bin_decayed * d, float(reference_time))


# --- fast path: rows grouped in contiguous, time-ordered runs (one run per group) ---------------------

@dataclass
class Runs:
    """Contiguous row runs, one per group: the layout every exporter writes (series by series, in time)."""

    starts: np.ndarray  # int64, first row of each run, in row order
    lengths: np.ndarray  # int64
    group_of_run: np.ndarray  # int64, dense group code (groups ordered by their raw key)
    raw_keys: np.ndarray  # int64, raw key of each group, sorted

    @property
    def n_groups(self) -> int:
        return int(self.raw_keys.size)

    def group_of_rows(self) -> np.ndarray:
        return np.repeat(self.group_of_run.astype(np.int32), self.lengths)


def find_runs(raw_key: np.ndarray, t_idx: np.ndarray) -> Runs | None:
    """Runs of equal ``raw_key`` if every key forms ONE run with strictly increasing ``t_idx``, else None.

    Then no (key, step) cell holds two rows, and per-group reductions are ``reduceat`` over the runs.
    """
    n = raw_key.size
    if n < 2:
        return None
    change = raw_key[1:] != raw_key[:-1]
    starts = np.concatenate(([0], np.flatnonzero(change) + 1))
    if starts.size > n // 4:
        return None
    step_up = t_idx[1:] > t_idx[:-1]
    step_up |= change
    if not step_up.all():
        return None
    keys = raw_key[starts].astype(np.int64)
    order = np.argsort(keys, kind="stable")
    if np.any(keys[order][1:] == keys[order][:-1]):
        return None  # a series split into several runs
    group_of_run = np.empty(starts.size, dtype=np.int64)
    group_of_run[order] = np.arange(starts.size)
    lengths = np.diff(np.append(starts, n))
    return Runs(starts, lengths, group_of_run, keys[order])


def _by_group(runs: Runs, per_run: np.ndarray) -> np.ndarray:
    out = np.empty(per_run.shape, dtype=per_run.dtype)
    out[runs.group_of_run] = per_run
    return out


def step_weights(ts: np.ndarray, t_idx: np.ndarray, grid: np.ndarray, reference: float, half_life: float,
                 aligned: bool) -> np.ndarray:
    """2^((ts − reference)/half_life) per row: one exp2 per grid step gathered when samples sit on the grid."""
    if aligned:
        return np.exp2((grid - reference) / half_life)[t_idx]
    return _decay(ts, reference, half_life)


def compute_runs(runs: Runs, group_rows: np.ndarray, ts: np.ndarray, t_idx: np.ndarray, grid: np.ndarray,
                 aligned: bool, values: np.ndarray, *, reference_time: float, ewma_half_life: float,
                 decay_half_life: float) -> GroupBatch:
    """:func:`compute` (without hour-of-week) for rows laid out in ``runs``; same results, far fewer passes."""
    n = runs.n_groups
    starts = runs.starts
    count = _by_group(runs, runs.lengths.astype(np.float64))
    total = _by_group(runs, np.add.reduceat(values, starts))
    mean = total / count
    dev = values - np.repeat(mean[runs.group_of_run], runs.lengths)
    dev *= dev
    m2 = _by_group(runs, np.add.reduceat(dev, starts))
    del dev
    minimum = _by_group(runs, np.minimum.reduceat(values, starts))
    maximum = _by_group(runs, np.maximum.reduceat(values, starts))
    # EWMA: weights relative to the reference; long-silent groups underflow → the exact (general) routine.
    w = step_weights(ts, t_idx, grid, reference_time, ewma_half_life, aligned)
    den = _by_group(runs, np.add.reduceat(w, starts))
    w *= values
    num = _by_group(runs, np.add.reduceat(w, starts))
    del w
    if np.any(den < 1e-250):
        ewma_value, ewma_log2w = _ewma(group_rows.astype(np.int64), n, ts, values, reference_time, ewma_half_life)
    else:
        ewma_value, ewma_log2w = num / den, np.log2(den)
    ords = sketch.ordinals(values)
    w_decay = step_weights(ts, t_idx, grid, reference_time, decay_half_life, aligned)
    bin_group, bin_ord, (bin_count, bin_decayed) = _bin_counts(group_rows, ords, n, [None, w_decay])
    return GroupBatch(n, count, mean, m2, minimum, maximum, ewma_value, ewma_log2w,
                      np.full((n, HOURS_PER_WEEK), -np.inf), bin_group, bin_ord, bin_count, bin_decayed,
                      float(reference_time))


def run_hour_peaks(runs: Runs, values: np.ndarray, hour_of_row: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, absolute hour, peak) per (run, hour) segment: maximum.reduceat over time-ordered runs."""
    seg = np.flatnonzero(hour_of_row[1:] != hour_of_row[:-1]) + 1
    seg = np.union1d(seg, runs.starts)
    peaks = np.maximum.reduceat(values, seg)
    run_of_seg = np.searchsorted(runs.starts, seg, side="right") - 1
    return runs.group_of_run[run_of_seg], hour_of_row[seg], peaks


# --- fastest path: a dense matrix (series × steps on one shared time grid) ----------------------------

# Rows per block: about 4 MB of float64 per block keeps each numpy pass in cache.
_BLOCK_VALUES = 1 << 19
_BLOCK_THREADS = 2


class Background:
    """``fn(*args, **kwargs)`` on a thread; :meth:`result` joins and returns it (or raises its exception).

    Plain threading: concurrent.futures would import logging (~40 ms of a short process's start).
    """

    def __init__(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        import threading

        self._value: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread by result()
                self._error = exc

        self._thread = threading.Thread(target=target, name="fingerprint", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class DenseResult:
    """Statistics of the rows of a dense matrix, plus the per-row peak of every hour the grid touches."""

    batch: GroupBatch
    hour_peaks: np.ndarray  # (rows, hours)
    hours: np.ndarray  # (hours,) absolute hour number (epoch seconds // 3600) of each column of hour_peaks


def _dense_block(block: np.ndarray, w_ewma: np.ndarray, w_decay_tiled: np.ndarray, hour_starts: np.ndarray,
                 check: Any = None) -> dict[str, np.ndarray]:
    """Every per-row statistic of one block of rows: a handful of cache-resident numpy passes.

    Fresh memory is expensive (page faults), so the block's temporaries reuse one scratch array and the
    bincount keys are built in place as int64 (bincount would otherwise copy them to intp). ``check``, if
    given, sees the rows' min and max before the sketch is counted, and may raise to give the block up.
    """
    rows, length = block.shape
    mean = np.add.reduce(block, axis=1) / length
    scratch = np.subtract(block, mean[:, None])
    m2 = np.einsum("ij,ij->i", scratch, scratch)
    peaks = np.maximum.reduceat(block, hour_starts, axis=1)
    # The row maximum is the maximum of its hour peaks (one pass fewer; NaN propagates the same way).
    out = {"mean": mean, "m2": m2, "ewma": np.einsum("ij,j->i", block, w_ewma), "peaks": peaks,
           "min": block.min(axis=1), "max": peaks.max(axis=1)}
    if check is not None:
        check(out["min"], out["max"])
    # Sketch bins: bucket ordinal of every value, counted per (row, ordinal) in one bincount over row-local
    # ordinal ranges (rows are time series: their values span a few hundred buckets at most).
    if float(out["min"].min()) > sketch.MIN_INDEXABLE:  # strictly: MIN_INDEXABLE itself is a zero (DDSketch)
        # sketch.keys, in place: ceil(log(x) / ln 2 · multiplier), the same operations bit for bit.
        np.log(block, out=scratch)
        scratch /= sketch._LN2
        scratch *= sketch.MULTIPLIER
        np.ceil(scratch, out=scratch)
        ords = scratch.astype(np.int64)
        ords += sketch.OFFSET
    else:
        ords = sketch.ordinals(block).astype(np.int64)
    del scratch
    weights = w_decay_tiled[:block.size]
    # Ordinals are monotone in the value: each row's lowest and highest are those of its min and max, from
    # two numbers per row instead of two more passes over the block. Widened by one bucket each way in case
    # numpy's vector and scalar log2 differ in the last bit at a bucket edge (empty cells are dropped below).
    extremes = np.stack((out["min"], out["max"]))
    if np.isfinite(extremes).all():
        ends = sketch.ordinals(extremes).astype(np.int64)
        omin = ends[0] - 1
        span = ends[1] - omin + 2
    else:
        omin = ords.min(axis=1)
        span = ords.max(axis=1) - omin + 1
    cells = int(span.sum())
    if cells > 8 * ords.size + (1 << 16):
        # Zeros/negatives next to large values (a wide ordinal range): the general sparse counting.
        groups = np.repeat(np.arange(rows, dtype=np.int64), length)
        bg, bo, (bc, bd) = _bin_counts(groups, ords.reshape(-1), rows, [None, weights])
        out.update(bin_group=bg, bin_ord=bo, bin_count=bc, bin_decayed=bd)
        return out
    base = np.concatenate(([0], np.cumsum(span)[:-1]))
    ords += (base - omin)[:, None]
    flat = ords.reshape(-1)
    counts = np.bincount(flat, minlength=cells)
    decayed = np.bincount(flat, weights=weights, minlength=cells)
    nonzero = np.flatnonzero(counts)
    row = np.searchsorted(base, nonzero, side="right") - 1
    out.update(bin_group=row.astype(np.int64), bin_ord=(nonzero - base[row] + omin[row]).astype(np.int32),
               bin_count=counts[nonzero].astype(np.float64), bin_decayed=decayed[nonzero])
    return out


@dataclass
class DenseWeights:
    """What every block of a (series × steps) matrix on one time grid shares: the EWMA and decay weights and
    the hour boundaries. Blocks computed with it (:meth:`block`, on any thread) assemble with :meth:`result`."""

    length: int
    w_ewma: np.ndarray  # normalised EWMA weight of each step
    log2w: float  # log2 of the EWMA weights' sum, relative to the reference time
    w_decay: np.ndarray
    hour_starts: np.ndarray  # first step of every hour the grid touches
    hours: np.ndarray  # absolute hour number (epoch seconds // 3600) of each of them
    reference_time: float
    rows_per_block: int
    _tiled: np.ndarray

    @classmethod
    def of(cls, grid: np.ndarray, *, reference_time: float, ewma_half_life: float, decay_half_life: float,
           rows: int | None = None) -> DenseWeights:
        """``rows``: how many rows will be computed at most, if fewer than a block (sizes the tiled weights)."""
        grid = np.asarray(grid, dtype=np.float64)
        # EWMA weights relative to the last step (no underflow), expressed relative to the reference in log2.
        w_ewma = np.exp2((grid - grid[-1]) / ewma_half_life)
        den = float(w_ewma.sum())
        w_ewma /= den
        log2w = math.log2(den) + (float(grid[-1]) - reference_time) / ewma_half_life
        w_decay = np.exp2((grid - reference_time) / decay_half_life)
        hour = np.floor(grid / 3600).astype(np.int64)
        hour_starts = np.concatenate(([0], np.flatnonzero(hour[1:] != hour[:-1]) + 1))
        per_block = max(1, _BLOCK_VALUES // max(grid.size, 1))
        return cls(int(grid.size), w_ewma, log2w, w_decay, hour_starts, hour[hour_starts], float(reference_time),
                   per_block, np.tile(w_decay, per_block if rows is None else max(1, min(rows, per_block))))

    def block(self, rows: np.ndarray, check: Any = None) -> dict[str, np.ndarray]:
        """The statistics of up to :attr:`rows_per_block` whole rows (see :func:`_dense_block`)."""
        return _dense_block(rows, self.w_ewma, self._tiled, self.hour_starts, check)

    def result(self, parts: list[dict[str, np.ndarray]], gather: np.ndarray | None = None) -> DenseResult:
        """The blocks' statistics as one batch, rows in block order, or reordered: row k is ``gather[k]``."""
        sizes = np.array([p["mean"].size for p in parts], dtype=np.int64)
        n_rows = int(sizes.sum())

        def cat(name: str) -> np.ndarray:
            return np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)

        offsets = np.repeat(np.cumsum(sizes) - sizes, [p["bin_group"].size for p in parts])
        bin_group = cat("bin_group").astype(np.int64) + offsets
        bin_ord, bin_count, bin_decayed = cat("bin_ord").astype(np.int32), cat("bin_count"), cat("bin_decayed")
        rows = {name: cat(name) for name in ("mean", "m2", "min", "max", "ewma")}
        peaks = np.concatenate([p["peaks"] for p in parts]) if parts else np.zeros((0, self.hour_starts.size))
        if gather is not None:
            rows = {name: x[gather] for name, x in rows.items()}
            peaks = peaks[gather]
            # Bins are contiguous per row: take row gather[k]'s run of bins for every k, in order.
            bounds = np.searchsorted(bin_group, np.arange(n_rows + 1))
            lengths = (bounds[1:] - bounds[:-1])[gather]
            take = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + \
                np.repeat(bounds[:-1][gather], lengths)
            bin_group = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
            bin_ord, bin_count, bin_decayed = bin_ord[take], bin_count[take], bin_decayed[take]
        batch = GroupBatch(n_rows, np.full(n_rows, float(self.length)), rows["mean"], rows["m2"], rows["min"],
                           rows["max"], rows["ewma"], np.full(n_rows, self.log2w),
                           np.full((n_rows, HOURS_PER_WEEK), -np.inf), bin_group, bin_ord, bin_count, bin_decayed,
                           self.reference_time)
        return DenseResult(batch, peaks, self.hours)


def compute_dense(matrix: np.ndarray, grid: np.ndarray, *, reference_time: float, ewma_half_life: float,
                  decay_half_life: float, row_order: np.ndarray | None = None) -> DenseResult:
    """:func:`compute` for a (series × steps) matrix whose columns are the time ``grid`` (epoch seconds).

    Same statistics, mergeable state and sketch bins, but with whole-row reductions instead of group-code
    bincounts, and blocks of rows on two threads.
    ``row_order``: the rows to use, in output order (default: all, as they are).
    """
    n_rows = matrix.shape[0] if row_order is None else int(row_order.size)
    weights = DenseWeights.of(grid, reference_time=reference_time, ewma_half_life=ewma_half_life,
                              decay_half_life=decay_half_life, rows=n_rows)
    per_block = weights.rows_per_block
    bounds = [(a, min(a + per_block, n_rows)) for a in range(0, n_rows, per_block)]

    def run(bound: tuple[int, int]) -> dict[str, np.ndarray]:
        a, b = bound
        return weights.block(matrix[a:b] if row_order is None else matrix[row_order[a:b]])

    return weights.result(parallel_map(run, bounds, _BLOCK_THREADS))


def hour_of_week_peaks(targets: np.ndarray, hour_peaks: np.ndarray, hours: np.ndarray, n_out: int) -> np.ndarray:
    """(n_out, 168) peaks: the max of ``hour_peaks`` rows per target and hour of the week."""
    slot = (hours + _EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK
    by_target = np.full((n_out, hour_peaks.shape[1]), -np.inf)
    max_rows_into(by_target, targets, hour_peaks)  # rows → targets first, then columns → hour of week
    how = np.full((n_out, HOURS_PER_WEEK), -np.inf)
    max_rows_into(how.T, slot, by_target.T)
    return how
