"""The capacity fingerprint (DESIGN §3): build it from a tidy frame, or fold a new interval into the last one.

Layout decisions (kept small: a few KB per service):

* ``services.<name>.metrics.<metric>``: statistics over ALL values of that service and metric (pooled over
  instances; the pooled sketch is the sum of the instance sketches), with the full mergeable state:
  ``sketch`` (counts), ``decayed_sketch`` (weights decayed with ``decay_half_life_seconds``, float16),
  ``hour_of_week_peak`` (168 values, 4 significant digits, null where no data) and ``ewma_log2_weight``.
* ``services.<name>.aggregate.<metric>``: the same for the service total, i.e. the time-aligned sum over
  instances (instances' values averaged per ``step_seconds`` step first, then summed).
* ``services.<name>.instances``: observed instance-count statistics per step, and ``by_id`` → instance →
  metric → a compact entry (count, mean, std, ewma, min, max, p50–p99 and the count sketch, which is what
  keeps per-instance percentiles foldable; no hour-of-week profile or decayed sketch per instance).
* ``services.<name>.sizing``: see :mod:`shadowing.capacity.sizing`.

Per-instance count sketches are written as zlib *stored* blocks (same format, any inflater reads them): there
are thousands of small ones, and deflating each cost more than the whole JSON write.

Computation paths (same results, chosen by the rows' layout, checked in a few vectorised passes): a *dense*
(series × steps) matrix when every series is one contiguous block on one shared step grid (what exporters
write; row reductions, blocks of rows on two threads), *runs* when series are contiguous and time-ordered but
uneven (``reduceat`` over runs), and the *general* path for anything else (group-code bincounts, duplicates
averaged per step). :func:`build_file` takes a big Parquet file on the dense path without building its columns:
each row group's series are profiled as they are decoded (:class:`~shadowing.metrics.frame.SeriesFile`).

``pNN`` are unweighted quantiles over everything folded so far (≤ 1 % relative error: see
:mod:`shadowing.metrics.sketch`); ``decayed_pNN`` weight recent data more (half-life 24 h by default, as the
Kubernetes VPA recommender). The window is half-open [start, end): points before ``end`` of the previous
fingerprint are late and are reported, not double counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict
from zlib import error as zlib_error

import numpy as np

from shadowing.capacity import batch as gb
from shadowing.capacity.sizing import CEIL_SLACK, PEAK_AWARE, SizingRule, recommend
from shadowing.errors import InputError
from shadowing.metrics import frame as tidy
from shadowing.metrics.names import PERCENT_METRICS
from shadowing.metrics.sketch import (
    LogSketch,
    SketchFormatError,
    decode_counts,
    decode_weights,
    encode_counts,
    encode_weights,
)

SCHEMA_VERSION = 1
QUANTILES = (0.5, 0.9, 0.95, 0.99)
Q_NAMES = ("p50", "p90", "p95", "p99")
_STEP_CHOICES = (1, 5, 10, 15, 30, 60, 120, 180, 300, 600, 900, 1800, 3600)
_DENSE_CELLS = 120_000_000
# Series named one by one in the gap report (the most samples missing first); the rest are counted.
_GAP_SERIES_NAMED = 10
# Inputs at least this long compute instance statistics on a second thread.
_THREAD_MIN_ROWS = 1_000_000
# Render the instances' entries on a thread from this many series (below, a thread is not worth starting).
_THREAD_MIN_SERIES = 256
# Service totals of matrices up to this many values gather the rows by service first (a 32 MB copy at most).
_GATHER_MAX_VALUES = 1 << 22


@dataclass(frozen=True)
class ProfileParams:
    ewma_half_life_seconds: float = 3600.0
    decay_half_life_seconds: float = 86400.0
    step_seconds: int | None = None  # aggregate alignment; inferred from the data when None
    sizing: SizingRule = PEAK_AWARE

    def as_dict(self, step: int) -> dict[str, Any]:
        return {"ewma_half_life_seconds": self.ewma_half_life_seconds,
                "decay_half_life_seconds": self.decay_half_life_seconds, "step_seconds": step}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """ISO-8601 → epoch seconds; a time without an offset is UTC (never the machine's local time)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def valid_step(step: object) -> bool:
    """Whether ``step`` can align a fingerprint: whole seconds dividing an hour (a step's hour is then its
    samples' hour, which the hour-of-week profile relies on)."""
    return isinstance(step, int) and not isinstance(step, bool) and 1 <= step <= 3600 and 3600 % step == 0


#: The step assumed when the data cannot show one (no series has two samples): CloudWatch's detailed period.
ASSUMED_STEP_SECONDS = 60
# A service without a sample this long (before the region's newest) is retired from the fingerprint: the
# DAG's max_gap, and seven decay half-lives (its decayed weight is below 1 %).
RETIRE_AFTER_SECONDS = 7 * 86400.0


def infer_step(cols: tidy.TidyColumns) -> int:
    """Median spacing of consecutive samples of a series, snapped to a usual CloudWatch period
    (:data:`ASSUMED_STEP_SECONDS` when it cannot be measured)."""
    return measured_step(cols) or ASSUMED_STEP_SECONDS


def measured_step(cols: tidy.TidyColumns) -> int | None:
    """:func:`infer_step`, None when the data shows no spacing (e.g. one sample per series).

    Measured on whole series (every row of a few instances), never on a row sample: sampling rows would widen
    the spacing it measures.
    """
    if len(cols) < 2:
        return None
    if cols.grid is not None:
        return _grid_step(cols.grid)
    # First the leading rows: contiguous, so their spacing is the series' own (one pass over a prefix).
    # Only when they are laid out series by series (few runs, time rising within each): a row sample of a
    # shuffled input would widen the spacing it measures.
    head = min(len(cols), 50_000)
    series = cols.instance[:head].astype(np.int64) * max(len(cols.metrics), 1) + cols.metric[:head]
    same = series[1:] == series[:-1]
    if int(same.size - same.sum()) <= head // 32 and bool(np.all(cols.ts[1:head][same] > cols.ts[:head - 1][same])):
        step = _median_step(series, cols.ts[:head])
        if step is not None:
            return step
    probe = tidy.distinct(cols.instance[:10_000])[:16]
    rows = np.flatnonzero(np.isin(cols.instance, probe)) if len(cols) > 400_000 else np.arange(len(cols))
    rows = rows[:2_000_000]
    series = cols.instance[rows].astype(np.int64) * max(len(cols.metrics), 1) + cols.metric[rows]
    return _median_step(series, cols.ts[rows])


def _grid_step(grid: np.ndarray) -> int | None:
    """The step of a grid every series is sampled at exactly: its spacing is the series' own."""
    return _median_step(np.zeros(grid.size, dtype=np.int64), grid)


def _on_step(grid: np.ndarray, step: int) -> bool:
    """Whether the grid is every step once, aligned to the step (what the dense layout needs)."""
    first = float(grid[0])
    return not first % step and np.array_equal(grid, first + step * np.arange(grid.size, dtype=np.float64))


def _median_step(series: np.ndarray, ts: np.ndarray) -> int | None:
    """Median positive spacing within series, snapped to a usual period; None without any spacing."""
    order = np.lexsort((ts, series))
    s, t = series[order], ts[order]
    dt = np.diff(t)[(np.diff(s) == 0)]
    dt = dt[dt > 0]
    # Fewer spacings than this (a prefix holding one sample per series): not a measurement.
    if dt.size < 16 and dt.size < series.size // 2:
        return None
    if dt.size == 0:
        return None
    # The middle order statistic (np.median would import numpy.ma, ~40 ms of a short process).
    median = float(np.partition(dt, dt.size // 2)[dt.size // 2])
    return min(_STEP_CHOICES, key=lambda c: abs(math.log(c / median)))


# --- the window's statistics --------------------------------------------------------------------------

@dataclass
class WindowState:
    """Mergeable state of one window (or of everything folded so far), keyed by names."""

    instance_keys: list[tuple[str, str, str]]  # (service, instance, metric)
    instances: gb.GroupBatch
    pool_keys: list[tuple[str, str]]  # (service, metric)
    pooled: gb.GroupBatch
    aggregate: gb.GroupBatch  # same keys as pooled
    counts: dict[str, dict[str, float]]  # service → instance-count stats
    # The instances' JSON entries, already being rendered on a thread while the pools are computed (the
    # rendering is mostly Python, the pools mostly numpy: they overlap on two cores). Only for this state's
    # own ``instances``; a merged state renders its own.
    instance_entries: gb.Background | None = None


def _empty_batch(reference: float) -> gb.GroupBatch:
    z = np.zeros(0)
    return gb.GroupBatch(0, z, z, z, z, z, z, z, np.zeros((0, gb.HOURS_PER_WEEK)), np.zeros(0, np.int64),
                         np.zeros(0, np.int32), z, z, reference)


@dataclass
class DenseLayout:
    """Rows laid out series by series, every series on the same regular grid: a (series × steps) matrix."""

    n_series: int
    length: int
    grid: np.ndarray  # epoch seconds of each step (shared by all series)


_DENSE_MIN_LENGTH = 32


def dense_layout(cols: tidy.TidyColumns, step: int) -> DenseLayout | None:
    """The matrix view of ``cols`` if every series is one contiguous block on one shared step grid, else None.

    What exporters (and the world's generator) write. Checked in a few vectorised passes: the first series'
    length from the first time reset, the shared grid (every step once, aligned to ``step``), and constant
    instance/metric codes per block with no series repeated.
    """
    n = len(cols)
    if n < _DENSE_MIN_LENGTH:
        return None
    implied = cols.grid is not None
    if cols.grid is not None:  # the reader checked every row against the grid already
        grid = cols.grid
        length = int(grid.size)
    else:
        ts = cols.ts
        probe = min(n, 1 << 16)
        length = 0
        while length == 0:
            back = np.flatnonzero(ts[1:probe] <= ts[:probe - 1])
            if back.size:
                length = int(back[0]) + 1
            elif probe == n:
                length = n
            else:
                probe = min(n, probe * 8)
        grid = ts[:length]
    if length < _DENSE_MIN_LENGTH or n % length:
        return None
    if not _on_step(grid, step):
        return None
    n_series = n // length
    if not implied and not bool((ts.reshape(n_series, length) == grid).all()):
        return None
    runs = cols.runs
    if runs is None or runs.size != n_series or not np.array_equal(runs, np.arange(0, n, length)):
        for codes in (cols.instance, cols.metric):
            block = codes.reshape(n_series, length)
            if not bool((block == block[:, :1]).all()):
                return None
    _, inst, met = cols.codes_at(np.arange(0, n, length))
    keys = inst.astype(np.int64) * max(len(cols.metrics), 1) + met
    if tidy.distinct(keys).size != n_series:
        return None
    return DenseLayout(n_series, length, grid.copy())


@dataclass
class _SeriesIndex:
    """Names and output order of the series of a dense layout, given each matrix row's codes."""

    order: np.ndarray | None  # output row k is matrix row order[k] (None: the rows are in output order)
    instance_keys: list[tuple[str, str, str]]  # (service, instance, metric), output order
    pool_keys: list[tuple[str, str]]  # (service, metric)
    pool_ids: np.ndarray  # service code × n metrics + metric code of every pool
    pool_of_series: np.ndarray  # output order
    pool_of_row: np.ndarray  # matrix row order
    svc_of_series: np.ndarray  # output order
    inst_of: np.ndarray  # output order
    n_met: int


def _series_index(svc_first: np.ndarray, inst_first: np.ndarray, met_first: np.ndarray, services: list[str],
                  instances: list[str], metrics: list[str]) -> _SeriesIndex | None:
    """Output order (by instance code, then metric code) and pools of the rows; None if a series repeats."""
    n_met = max(len(metrics), 1)
    raw = inst_first.astype(np.int64) * n_met + met_first
    order = np.argsort(raw, kind="stable")
    series_ids = raw[order]
    if series_ids.size > 1 and bool((series_ids[1:] == series_ids[:-1]).any()):
        return None
    inst_of, met_of = series_ids // n_met, series_ids % n_met
    svc_of_inst = np.zeros(len(instances), dtype=np.int64)
    svc_of_inst[inst_first] = svc_first
    svc_of_series = svc_of_inst[inst_of]
    instance_keys = [(services[s], instances[i], metrics[m])
                     for s, i, m in zip(svc_of_series.tolist(), inst_of.tolist(), met_of.tolist(), strict=True)]
    pool_ids, pool_of_series = tidy.distinct_inverse(svc_of_series * n_met + met_of)
    pool_keys = [(services[p // n_met], metrics[p % n_met]) for p in pool_ids.tolist()]
    pool_of_row = np.empty(order.size, dtype=np.int64)
    pool_of_row[order] = pool_of_series
    in_order = bool(np.all(order == np.arange(order.size)))
    return _SeriesIndex(None if in_order else order, instance_keys, pool_keys, pool_ids, pool_of_series,
                        pool_of_row, svc_of_series, inst_of, n_met)


def _dense_window_state(cols: tidy.TidyColumns, layout: DenseLayout, *, end: float, params: ProfileParams
                        ) -> WindowState:
    """:func:`window_state` on a dense layout: row reductions of the (series × steps) matrix."""
    length = layout.length
    svc_first, inst_first, met_first = cols.codes_at(np.arange(0, len(cols), length))
    index = _series_index(svc_first, inst_first, met_first, cols.services, cols.instances, cols.metrics)
    assert index is not None  # dense_layout checked that no series repeats
    matrix = cols.values.reshape(layout.n_series, length)
    kw = _dense_kw(end, params)
    inst = gb.compute_dense(matrix, layout.grid, row_order=index.order, **kw)
    entries = gb.Background(_entries, inst.batch, full=False) if layout.n_series >= _THREAD_MIN_SERIES else None
    n_pool = len(index.pool_keys)
    pool_of_row = index.pool_of_row
    # Service totals: every series reports every step, so the time-aligned sum is a sum of matrix rows.
    totals = np.zeros((n_pool, length))
    if matrix.size <= _GATHER_MAX_VALUES:
        # Small (a fold's new window): one gather of the rows by pool and one reduceat.
        by_pool = np.argsort(pool_of_row, kind="stable")
        totals = np.add.reduceat(matrix[by_pool], np.searchsorted(pool_of_row[by_pool], np.arange(n_pool)),
                                 axis=0)
    elif layout.n_series <= 20_000:
        # Row by row into its pool's total: no copy of the matrix (one Python step per series, not per point),
        # half of the rows on each of two threads into their own totals.
        def accumulate(rows: range) -> np.ndarray:
            part = np.zeros((n_pool, length))
            for row in rows:
                p = int(pool_of_row[row])
                np.add(part[p], matrix[row], out=part[p])
            return part

        half = layout.n_series // 2
        first, second = tidy.parallel_map(accumulate, [range(half), range(half, layout.n_series)], 2)
        totals = np.add(first, second, out=first)
    else:
        by_pool = np.argsort(index.pool_of_series, kind="stable")
        cuts = np.searchsorted(index.pool_of_series[by_pool], np.arange(n_pool + 1))
        row_of = by_pool if index.order is None else index.order[by_pool]
        for p in range(n_pool):
            np.sum(matrix[row_of[cuts[p]:cuts[p + 1]]], axis=0, out=totals[p])
    return _dense_finish(index, inst, entries, totals, layout.grid, kw, cols.services)


class _DenseKw(TypedDict):
    reference_time: float
    ewma_half_life: float
    decay_half_life: float


def _dense_kw(end: float, params: ProfileParams) -> _DenseKw:
    return {"reference_time": end, "ewma_half_life": params.ewma_half_life_seconds,
            "decay_half_life": params.decay_half_life_seconds}


def _dense_finish(index: _SeriesIndex, inst: gb.DenseResult, entries: gb.Background | None, totals: np.ndarray,
                  grid: np.ndarray, kw: _DenseKw, services: list[str]) -> WindowState:
    """The pools, the service totals' statistics and the instance counts of a dense layout."""
    n_pool = len(index.pool_keys)
    pooled = gb.pool(inst.batch, index.pool_of_series, n_pool, with_how=False)
    pooled.how_peak = gb.hour_of_week_peaks(index.pool_of_series, inst.hour_peaks, inst.hours, n_pool)
    agg = gb.compute_dense(totals, grid, **kw)
    agg.batch.how_peak = gb.hour_of_week_peaks(np.arange(n_pool), agg.hour_peaks, agg.hours, n_pool)
    members = np.bincount(index.pool_of_series, minlength=n_pool)
    svc_of_pool = index.pool_ids // index.n_met
    counts: dict[str, dict[str, float]] = {}
    for s in tidy.distinct(svc_of_pool).tolist():
        reporting = float(members[svc_of_pool == s].max())
        counts[services[s]] = {"min": reporting, "max": reporting, "mean": reporting, "last": reporting,
                               "steps": float(grid.size),
                               "distinct": float(tidy.distinct(index.inst_of[index.svc_of_series == s]).size),
                               "last_seen": float(grid[-1])}
    return WindowState(index.instance_keys, inst.batch, index.pool_keys, pooled, agg.batch, counts, entries)


def _series_gaps(series: np.ndarray, ts: np.ndarray, step: int, *, ordered: bool, t_idx: np.ndarray, n_t: int,
                 crowded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Gaps inside each series' span: (series, samples missing, timestamp of the sample before) per gap, or None.

    A gap is two consecutive samples of a series more than 1.5 steps apart (so a clock's jitter is none), and
    it misses round(Δt / step) − 1 samples. ``ordered``: rows are series after series in time (the profiler's
    runs), else they are put in that order first; ``crowded``: rows sharing a (series, step) cell with another.
    """
    if ts.size < 2:
        return None
    if not ordered:
        # Sorting is the cost: first find the series whose steps do not fill their span (unique cells by now),
        # and order only their rows. A jittered clock can leave a step empty without a gap: the Δt test decides.
        n_series = int(series.max()) + 1
        first = np.full(n_series, np.iinfo(t_idx.dtype).max, dtype=t_idx.dtype)  # t_idx's dtype: ufunc.at's fast path
        last = np.full(n_series, -1, dtype=t_idx.dtype)
        np.minimum.at(first, series, t_idx)
        np.maximum.at(last, series, t_idx)
        suspect = last - first + 1 > np.bincount(series, minlength=n_series)
        if crowded is not None:  # two samples in one step (a jittered clock) can hide an empty step
            suspect |= np.bincount(series[crowded], minlength=n_series) > 0
        if not suspect.any():
            return None
        rows = np.flatnonzero(suspect[series])
        order = rows[np.argsort(series[rows].astype(np.int64) * n_t + t_idx[rows])]
        series, ts = series[order], ts[order]
    after = np.flatnonzero(np.diff(ts) > 1.5 * step)  # the row before each candidate gap
    after = after[series[after] == series[after + 1]]  # not the jump from one series to the next
    if not after.size:
        return None
    missing = np.floor((ts[after + 1] - ts[after]) / step + 0.5) - 1
    return series[after].astype(np.int64), missing, ts[after]


def _duration(seconds: float) -> str:
    """'45 s', '30 min', '2 h 5 min', '3 d 4 h': a gap's length, readable."""
    minutes, hours = round(seconds / 60), seconds / 3600
    if seconds < 60:
        return f"{seconds:g} s"
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{minutes // 60} h" + (f" {minutes % 60} min" if minutes % 60 else "")
    return f"{int(hours // 24)} d" + (f" {int(hours % 24)} h" if int(hours % 24) else "")


def _gap_warnings(source: str, keys: list[tuple[str, str, str]], step: int, series: np.ndarray,
                  missing: np.ndarray, before: np.ndarray) -> list[str]:
    """A summary line, then one line per series with gaps (the most samples missing first, the first
    ``_GAP_SERIES_NAMED``) with its longest gap and the sample it follows. Kept, not dropped: a gap is missing
    data, not bad data; but a service total summed over instances that miss samples reads low there."""
    n = len(keys)
    total = np.bincount(series, weights=missing, minlength=n)
    n_gaps = np.bincount(series, minlength=n)
    # longest gap of each series: gaps sorted by (series, missing), the last of each series' block
    order = np.lexsort((missing, series))
    last_of_series = order[np.flatnonzero(np.r_[series[order][1:] != series[order][:-1], True])]
    longest = np.zeros(n, dtype=np.int64)
    longest[series[last_of_series]] = last_of_series
    # the most missing first, then by name: the same report whatever the input's row order
    ranked = sorted(np.flatnonzero(n_gaps).tolist(), key=lambda g: (-total[g], keys[g]))
    out = [f"{source}: {len(ranked)} series miss {total.sum():.0f} sample(s) in {n_gaps.sum()} gap(s) inside "
           f"their span, kept as they are (a service total reads low where an instance misses samples)"]
    for g in ranked[:_GAP_SERIES_NAMED]:
        k = int(longest[g])
        out.append(f"{source}: series {'/'.join(keys[g])} misses {total[g]:.0f} sample(s) in {n_gaps[g]} gap(s) "
                   f"(longest: {_duration(missing[k] * step)} without a sample after {iso(float(before[k]))})")
    if len(ranked) > _GAP_SERIES_NAMED:
        out.append(f"{source}: … and {len(ranked) - _GAP_SERIES_NAMED} more series with gaps")
    return out


def window_state(cols: tidy.TidyColumns, *, end: float, step: int, params: ProfileParams
                 ) -> tuple[WindowState, tidy.TidyColumns]:
    """Statistics of one cleaned window (vectorised); also returns the columns after de-duplication."""
    layout = dense_layout(cols, step)
    if layout is not None:
        return _dense_window_state(cols, layout, end=end, params=params), cols
    n_met = max(len(cols.metrics), 1)
    raw_series = cols.instance.astype(np.int64) * n_met + cols.metric
    t0 = math.floor(float(cols.ts.min()) / step)
    steps = cols.ts / step
    t_floor = np.floor(steps)
    aligned = bool(np.array_equal(steps, t_floor))
    del steps
    t_floor -= t0
    t_idx = t_floor.astype(np.int32 if float(t_floor.max()) < 2**31 else np.int64)
    del t_floor
    n_t = int(t_idx.max()) + 1
    grid = (np.arange(n_t, dtype=np.float64) + t0) * step
    kw = {"reference_time": end, "ewma_half_life": params.ewma_half_life_seconds,
          "decay_half_life": params.decay_half_life_seconds}
    runs = gb.find_runs(raw_series, t_idx)
    crowded_any, crowded = False, None
    if runs is not None:
        # Series by series in time order (what exporters write): reduceat over runs, no duplicates possible.
        series_ids = runs.raw_keys
        n_series = runs.n_groups
        series = runs.group_of_rows()
        del raw_series
        # The instance statistics and the pooled/aggregate passes below are independent: on big inputs run
        # them on two threads (numpy releases the GIL in its array loops), which is what the 2 cores are for.
        pending = gb.Background(gb.compute_runs, runs, series, cols.ts, t_idx, grid, aligned, cols.values,
                                  **kw) if len(cols) >= _THREAD_MIN_ROWS else None
        inst_batch = None if pending is not None else gb.compute_runs(runs, series, cols.ts, t_idx, grid,
                                                                      aligned, cols.values, **kw)
    else:
        used = np.bincount(raw_series, minlength=len(cols.instances) * n_met) > 0
        lookup = np.cumsum(used) - 1
        series = lookup[raw_series]
        n_series = int(used.sum())
        cell = series * n_t + t_idx
        if n_series * n_t <= _DENSE_CELLS:
            cell_count = np.bincount(cell, minlength=n_series * n_t)
            crowded = cell_count[cell] > 1
        else:
            crowded = np.ones(len(cols), dtype=bool)
        crowded_any = bool(crowded.any())
        if crowded_any:
            deduped = tidy.drop_duplicates(cols, crowded)
            if len(deduped) != len(cols):
                return window_state(deduped, end=end, step=step, params=params)
        series_ids = np.flatnonzero(used)
        pending = None
        inst_batch = gb.compute(series, n_series, cols.ts, cols.values, with_how=False, **kw)
    inst_of, met_of = series_ids // n_met, series_ids % n_met
    gap_step = step
    gaps = _series_gaps(series, cols.ts, step, ordered=runs is not None, t_idx=t_idx, n_t=n_t,
                        crowded=crowded if crowded_any else None)
    sampled = measured_step(cols) if gaps is not None else None
    if sampled is not None and sampled > step:
        # Sampled coarser than the fingerprint's step (a fold read at a longer period than the history began
        # with): every sample would read as a gap. Gaps are judged at the data's own spacing.
        gap_step = sampled
        gaps = _series_gaps(series, cols.ts, gap_step, ordered=runs is not None, t_idx=t_idx, n_t=n_t,
                            crowded=crowded if crowded_any else None)
    svc_of_inst = np.zeros(len(cols.instances), dtype=np.int64)
    svc_of_inst[cols.instance] = cols.service
    svc_of_series = svc_of_inst[inst_of]
    instance_keys = [(cols.services[s], cols.instances[i], cols.metrics[m])
                     for s, i, m in zip(svc_of_series.tolist(), inst_of.tolist(), met_of.tolist(), strict=True)]
    if gaps is not None:
        cols = replace(cols, warnings=[*cols.warnings, *_gap_warnings(cols.source, instance_keys, gap_step, *gaps)])

    # Pools: (service, metric) pairs present.
    raw_pool = svc_of_series * n_met + met_of
    pool_used = np.bincount(raw_pool, minlength=len(cols.services) * n_met) > 0
    pool_lookup = np.cumsum(pool_used) - 1
    pool_of_series = pool_lookup[raw_pool]
    pool_ids = np.flatnonzero(pool_used)
    n_pool = int(pool_ids.size)
    pool_keys = [(cols.services[p // n_met], cols.metrics[p % n_met]) for p in pool_ids.tolist()]
    # Hour of each step (steps divide an hour, so the step's hour is the sample's hour).
    hour_of_step = (np.floor(grid / 3600) + gb._EPOCH_HOUR_OF_WEEK).astype(np.int64)
    if runs is not None:
        g, hour, peaks = gb.run_hour_peaks(runs, cols.values, hour_of_step[t_idx])
        how_cells, how_values = pool_of_series[g] * gb.HOURS_PER_WEEK + hour % gb.HOURS_PER_WEEK, peaks
        pool_of_row = np.repeat(pool_of_series[runs.group_of_run].astype(np.int32), runs.lengths)
    else:
        pool_of_row = pool_of_series[series]
        how_cells = pool_of_row * gb.HOURS_PER_WEEK + gb.hour_of_week(cols.ts.astype(np.int64))
        how_values = cols.values

    # Aggregate: per step, each instance's mean, summed over instances.
    if crowded_any:
        cell = series * n_t + t_idx
        uniq_cell, inverse = np.unique(cell, return_inverse=True)
        cell_n = np.bincount(inverse)
        per_row = cols.values / cell_n[inverse]
        del uniq_cell
    else:
        per_row = cols.values
    agg_key = np.add(pool_of_row.astype(np.int64) * n_t, t_idx)  # int32 t_idx widens without a copy of its own
    del pool_of_row
    agg_sum = np.bincount(agg_key, weights=per_row, minlength=n_pool * n_t)
    if crowded_any:
        first_of_cell = np.zeros(len(cols), dtype=bool)
        first_of_cell[np.unique(cell, return_index=True)[1]] = True
        reporting = np.bincount(agg_key[first_of_cell], minlength=n_pool * n_t)
    else:
        reporting = np.bincount(agg_key, minlength=n_pool * n_t)
    del agg_key
    if pending is not None:
        inst_batch = pending.result()
    assert inst_batch is not None
    pooled = gb.pool(inst_batch, pool_of_series, n_pool)
    np.maximum.at(pooled.how_peak.reshape(-1), how_cells, how_values)
    del how_cells, how_values
    present = np.flatnonzero(reporting)
    agg_group, agg_t = present // n_t, present % n_t
    agg_ts = grid[agg_t]
    aggregate = gb.compute(agg_group, n_pool, agg_ts, agg_sum[present], with_how=True, **kw)

    # Instances reporting per service and step: the most over the service's metrics.
    counts: dict[str, dict[str, float]] = {}
    rep = reporting.reshape(n_pool, n_t)
    svc_of_pool = pool_ids // n_met
    distinct_of_svc = np.bincount(svc_of_inst[tidy.distinct(inst_of)], minlength=len(cols.services))
    # Each service's newest sample (not its step's start: a fold at an hourly step would say 10:00 for 10:21).
    series_last = np.full(n_series, -np.inf)
    if runs is not None:  # series after series in time: a run's last row is its newest
        series_last[runs.group_of_run] = cols.ts[runs.starts + runs.lengths - 1]
    else:
        np.maximum.at(series_last, series, cols.ts)
    svc_last = np.full(len(cols.services), -np.inf)
    np.maximum.at(svc_last, svc_of_series, series_last)
    for s in tidy.distinct(svc_of_pool).tolist():
        per_step = rep[svc_of_pool == s].max(axis=0)
        seen = per_step[per_step > 0].astype(np.float64)
        last_step = int(np.flatnonzero(per_step)[-1])
        counts[cols.services[s]] = {"min": float(seen.min()), "max": float(seen.max()),
                                    "mean": float(seen.mean()), "last": float(per_step[last_step]),
                                    "steps": float(seen.size), "distinct": float(distinct_of_svc[s]),
                                    "last_seen": float(svc_last[s])}
    return WindowState(instance_keys, inst_batch, pool_keys, pooled, aggregate, counts), cols


def merge_states(old: WindowState, new: WindowState, *, params: ProfileParams) -> WindowState:
    """Fold: ``old`` (rebased to the new reference time) + ``new``, matched by names."""
    ref = new.instances.reference_time
    kw = {"ewma_half_life": params.ewma_half_life_seconds, "decay_half_life": params.decay_half_life_seconds}

    def union(a: list[Any], b: list[Any]) -> tuple[list[Any], np.ndarray, np.ndarray]:
        keys = list(dict.fromkeys([*a, *b]))
        index = {k: i for i, k in enumerate(keys)}
        return keys, np.array([index[k] for k in a], dtype=np.int64), np.array([index[k] for k in b],
                                                                                   dtype=np.int64)

    ik, ia, ib = union(old.instance_keys, new.instance_keys)
    pk, pa, pb = union(old.pool_keys, new.pool_keys)
    # Instances keep no hour-of-week peaks (only pools and aggregates do): nothing to merge there.
    inst = gb.pool(gb.rebase(old.instances, ref, **kw), ia, len(ik), other=new.instances, other_mapping=ib,
                   with_how=False)
    pooled = gb.pool(gb.rebase(old.pooled, ref, **kw), pa, len(pk), other=new.pooled, other_mapping=pb)
    agg = gb.pool(gb.rebase(old.aggregate, ref, **kw), pa, len(pk), other=new.aggregate, other_mapping=pb)
    counts = dict(old.counts)
    instances_of: dict[str, set[str]] = {}
    for svc, iid, _ in ik:
        instances_of.setdefault(svc, set()).add(iid)
    for svc, c in new.counts.items():
        prev = counts.get(svc)
        if prev is None:
            counts[svc] = c
            continue
        steps = prev["steps"] + c["steps"]
        distinct = len(instances_of.get(svc, ()))
        counts[svc] = {"min": min(prev["min"], c["min"]), "max": max(prev["max"], c["max"]),
                       "mean": (prev["mean"] * prev["steps"] + c["mean"] * c["steps"]) / steps,
                       "last": c["last"], "steps": steps, "distinct": float(distinct),
                       "last_seen": max(prev.get("last_seen", -math.inf), c.get("last_seen", -math.inf))}
    return WindowState(ik, inst, pk, pooled, agg, counts)


# --- JSON ---------------------------------------------------------------------------------------------


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _ceil_noise_forgiven(scaled: np.ndarray) -> np.ndarray:
    """ceil, but a value a few ulps above a whole number (the float error of x·10^d) stays that number: a value
    already stored rounded (re-read by every fold) is rounded to itself, never one more unit each fold."""
    return np.ceil(scaled - np.abs(scaled) * CEIL_SLACK)


def _round_sig(values: np.ndarray, digits: int = 4) -> list[list[float | None]]:
    """Rows of ``values`` rounded *up* to ``digits`` significant digits (None where not finite), vectorised.

    Up, because these are peaks that size capacity: a Monday 09:00 peak of 300.04 stored as 300.0 would size
    3 instances where 4 are needed. ceil(x·10^d)/10^d with an exact power of ten is the double nearest the
    decimal, so JSON prints it short.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values) & (values != 0)
    mag = np.zeros(values.shape)
    mag[finite] = np.floor(np.log10(np.abs(values[finite])))
    d = np.clip(digits - 1 - mag, -300, 300).astype(np.int64)
    out = np.where(np.isfinite(values), values, 0.0)
    up, down = d >= 0, d < 0
    p_up = 10.0 ** np.minimum(np.where(up, d, 0), 22)
    p_down = 10.0 ** np.minimum(np.where(down, -d, 0), 22)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.where(up & (d <= 22), _ceil_noise_forgiven(out * p_up) / p_up, out)
        out = np.where(down & (d >= -22), _ceil_noise_forgiven(out / p_down) * p_down, out)
    rows = out.tolist()
    if not np.all(np.isfinite(values)):
        bad = ~np.isfinite(values)
        for i, j in zip(*np.nonzero(bad), strict=True):
            rows[i][j] = None
    return rows


def _column(values: np.ndarray) -> list[float | None]:
    """float64 → JSON numbers (None where not finite), in bulk."""
    values = np.asarray(values, dtype=np.float64)
    out = values.tolist()
    if not np.all(np.isfinite(values)):
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            out[i] = None
    return out


def _entries(b: gb.GroupBatch, *, full: bool) -> list[dict[str, Any]]:
    qs = b.quantiles(QUANTILES)
    cols: dict[str, list[Any]] = {"count": b.count.astype(np.int64).tolist(), "mean": _column(b.mean),
                                  "std": _column(b.std), "ewma": _column(b.ewma), "min": _column(b.minimum),
                                  "max": _column(b.maximum)}
    for j, name in enumerate(Q_NAMES):
        cols[name] = _column(qs[:, j])
    if full:
        dq = b.quantiles(QUANTILES, decayed=True)
        for j, name in enumerate(Q_NAMES):
            cols[f"decayed_{name}"] = _column(dq[:, j])
        cols["hour_of_week_peak"] = _round_sig(b.how_peak)
        cols["decayed_sketch"] = encode_weights(b.bin_group, b.bin_ord, b.bin_decayed, b.n_groups)
    cols["ewma_log2_weight"] = _column(b.ewma_log2w)
    # Per-instance sketches are many and small: stored, not deflated (see encode_counts).
    cols["sketch"] = encode_counts(b.bin_group, b.bin_ord, b.bin_count, b.n_groups, compress=full)
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]


def _batch_from_entries(entries: list[dict[str, Any]], reference: float) -> gb.GroupBatch:
    n = len(entries)
    if n == 0:
        return _empty_batch(reference)

    def col(name: str, default: float = math.nan) -> np.ndarray:
        return np.array([default if e.get(name) is None else float(e[name]) for e in entries], dtype=np.float64)

    count, mean, std = col("count", 0.0), col("mean"), col("std", 0.0)
    ewma, log2w = col("ewma"), col("ewma_log2_weight", -math.inf)
    how = np.full((n, gb.HOURS_PER_WEEK), -np.inf)
    with_how = [g for g, e in enumerate(entries) if e.get("hour_of_week_peak")]
    if with_how:
        peaks = np.array([entries[g]["hour_of_week_peak"] for g in with_how], dtype=np.float64)
        peaks[np.isnan(peaks)] = -np.inf  # JSON null (no data that hour) → -inf
        how[with_how] = peaks
    groups, ords, counts = decode_counts([e["sketch"] for e in entries])
    decayed = np.zeros(counts.size)
    with_decay = [g for g, e in enumerate(entries) if e.get("decayed_sketch")]
    if with_decay:
        dg, do, dw = decode_weights([entries[g]["decayed_sketch"] for g in with_decay])
        dg = np.asarray(with_decay, dtype=np.int64)[dg]
        shift = np.int64(1 << 20)
        key = groups * (2 * shift) + (ords.astype(np.int64) + shift)
        dkey = dg * (2 * shift) + (do.astype(np.int64) + shift)
        pos = np.searchsorted(key, dkey)
        ok = (pos < key.size) & (key[np.minimum(pos, key.size - 1)] == dkey)
        decayed[pos[ok]] = dw[ok]
    return gb.GroupBatch(n, count, mean, std * std * count, col("min"), col("max"), ewma, log2w, how,
                         groups, ords, counts, decayed, reference)


def state_from_fingerprint(fp: dict[str, Any]) -> WindowState:
    ref = parse_iso(fp["window"]["end"])
    ik, ie, pk, pe, ae = [], [], [], [], []
    counts: dict[str, dict[str, float]] = {}
    for svc, s in fp.get("services", {}).items():
        for metric, e in (s.get("metrics") or {}).items():
            pk.append((svc, metric))
            pe.append(e)
            ae.append((s.get("aggregate") or {}).get(metric) or {"count": 0, "sketch": LogSketch().to_compact()})
        inst = s.get("instances") or {}
        counts[svc] = {k: float(inst[k]) for k in ("min", "max", "mean", "last", "steps", "distinct") if k in inst}
        # Fingerprints from before last_seen was kept: seen at their window end, so retirement starts counting now.
        counts[svc]["last_seen"] = parse_iso(inst["last_seen"]) if isinstance(inst.get("last_seen"), str) else ref
        for iid, metrics in (inst.get("by_id") or {}).items():
            for metric, e in metrics.items():
                ik.append((svc, iid, metric))
                ie.append(e)

    def decoded(entries: list[dict[str, Any]], keys: list[Any], where: str) -> gb.GroupBatch:
        try:
            return _batch_from_entries(entries, ref)
        except SketchFormatError as exc:  # name the sketch's owner, not its position in the batch
            if not 0 <= exc.index < len(keys):
                raise
            key = keys[exc.index]
            path = f"services.{key[0]}.instances.by_id.{key[1]}.{key[2]}" if where == "instances" else \
                f"services.{key[0]}.{where}.{key[1]}"
            raise InputError(exc.reason, field=path) from exc

    return WindowState(ik, decoded(ie, ik, "instances"), pk, decoded(pe, pk, "metrics"),
                       decoded(ae, pk, "aggregate"), counts)


def render(state: WindowState, *, region: str | None, start: float, end: float, step: int,
           params: ProfileParams, warnings: list[str], history_start: float, folds: int) -> dict[str, Any]:
    services: dict[str, Any] = {}
    pooled = _entries(state.pooled, full=True)
    aggregate = _entries(state.aggregate, full=True)
    for (svc, metric), p, a in zip(state.pool_keys, pooled, aggregate, strict=True):
        s = services.setdefault(svc, {"instances": {}, "metrics": {}, "aggregate": {}})
        s["metrics"][metric] = p
        if a["count"]:
            s["aggregate"][metric] = a
    instance_entries = state.instance_entries.result() if state.instance_entries is not None else \
        _entries(state.instances, full=False)
    for (svc, iid, metric), e in zip(state.instance_keys, instance_entries, strict=True):
        by_id = services[svc]["instances"].setdefault("by_id", {})
        by_id.setdefault(iid, {})[metric] = e
    rule = params.sizing
    for svc, s in services.items():
        c = state.counts.get(svc, {})
        s["instances"] = {**{k: (int(v) if k in ("steps", "distinct") else iso(v) if k == "last_seen" else v)
                             for k, v in c.items()}, "by_id": s["instances"].get("by_id", {})}
        agg = s["aggregate"].get(rule.metric)
        if agg is None:
            s["sizing"] = {"instances": None, "reason": f"no {rule.metric} aggregate to size from",
                           "rule": rule.as_dict()}
        else:
            s["sizing"] = recommend(rule, aggregate=agg, now=end, history_seconds=end - history_start,
                                    observed_instances=c.get("max"))
    return {
        "schema_version": SCHEMA_VERSION,
        "region": region,
        "window": {"start": iso(start), "end": iso(end)},
        "history_start": iso(history_start),
        "generated_at": iso(datetime.now(UTC).timestamp()),
        "folds": folds,
        "params": {**params.as_dict(step), "quantile_relative_accuracy": 0.01},
        "services": dict(sorted(services.items())),
        "warnings": warnings,
    }


def dumps(fingerprint: dict[str, Any], *, indent: int = 0) -> bytes:
    """The fingerprint as UTF-8 JSON. msgspec writes it ~6× faster than the json module (a 30M-row
    fingerprint is 3.7 MB); non-finite numbers, which :func:`render` never emits, would become null."""
    import msgspec

    data = msgspec.json.encode(fingerprint)
    return msgspec.json.format(data, indent=indent) if indent else data


def loads(data: bytes | str, *, source: str) -> Any:
    """Parse fingerprint JSON (2–3× faster than the json module); malformed text → InputError naming it."""
    import msgspec

    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"unreadable fingerprint JSON: {exc}", source=source) from None


# --- entry points -------------------------------------------------------------------------------------

def check_previous(previous: Any, source: str) -> None:
    """Refuse a previous fingerprint that cannot be folded into, naming the file and the field."""
    if not isinstance(previous, dict):
        raise InputError(f"previous fingerprint must be a JSON object, got {type(previous).__name__}",
                         source=source)
    window = previous.get("window")
    if not isinstance(window, dict):
        raise InputError("previous fingerprint has no window object", source=source, field="window")
    bounds = {}
    for key in ("start", "end"):
        try:
            bounds[key] = parse_iso(str(window[key]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise InputError(f"not an ISO timestamp: {window.get(key)!r}", source=source,
                             field=f"window.{key}") from None
        if not tidy.EARLIEST_TIMESTAMP <= bounds[key] < tidy.LATEST_TIMESTAMP:
            raise InputError(f"out of range: {window[key]!r}", source=source, field=f"window.{key}")
    if bounds["start"] > bounds["end"]:
        raise InputError(f"the window ends ({window['end']}) before it starts ({window['start']})", source=source,
                         field="window")
    if "history_start" in previous:
        try:
            parse_iso(str(previous["history_start"]))
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"not an ISO timestamp: {previous['history_start']!r}", source=source,
                             field="history_start") from None
    version = previous.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise InputError(f"schema version {version!r} cannot be folded into (this version writes "
                         f"{SCHEMA_VERSION})", source=source, field="schema_version")
    for key in ("services", "params"):
        if key in previous and not isinstance(previous[key], dict):
            raise InputError("must be an object", source=source, field=key)
    folds = previous.get("folds", 0)
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 0:
        raise InputError(f"not a count: {folds!r}", source=source, field="folds")
    if previous.get("region") is not None and not isinstance(previous["region"], str):
        raise InputError(f"not a region name: {previous['region']!r}", source=source, field="region")
    params = previous.get("params") or {}
    step = params.get("step_seconds")
    if step is not None and not valid_step(step):
        raise InputError(f"not a step this profiler aligns to: {step!r} (whole seconds dividing an hour)",
                         source=source, field="params.step_seconds")
    for key in ("ewma_half_life_seconds", "decay_half_life_seconds"):
        value = params.get(key)
        if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)
                                      and math.isfinite(value) and value > 0):
            raise InputError(f"not a positive number of seconds: {value!r}", source=source,
                             field=f"params.{key}")


def _previous_state(previous: dict[str, Any], source: str) -> WindowState:
    try:
        return state_from_fingerprint(previous)
    except InputError as exc:  # a corrupt sketch, named by its owner (see state_from_fingerprint): add the source
        raise InputError(f"cannot be folded into: {getattr(exc.__cause__, 'reason', exc)}", source=source,
                         field=exc.field) from exc
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, zlib_error) as exc:
        raise InputError(f"previous fingerprint cannot be folded into ({type(exc).__name__}: {exc})",
                         source=source, field="services") from exc


def fold(previous: dict[str, Any] | None, cols: tidy.TidyColumns, *, window: tuple[float, float] | None = None,
         region: str | None = None, params: ProfileParams | None = None, max_warnings: int = 50,
         previous_source: str = "previous fingerprint", retire_after: float = RETIRE_AFTER_SECONDS
         ) -> dict[str, Any]:
    """Fold a new interval of tidy data into ``previous`` (None: build from scratch) → a new fingerprint.

    ``window`` is the half-open data interval [start, end) in epoch seconds; without it the window is the
    data's span (end = last sample + one step). ``previous_source`` names the previous fingerprint (a file,
    a warehouse row) in the :class:`InputError` raised when it is malformed. A service without a sample for
    ``retire_after`` seconds before the newest sample of any other is retired (see :func:`retire_services`).
    """
    if previous is not None:
        check_previous(previous, previous_source)
    params = params or ProfileParams()
    if previous is not None:
        p = previous.get("params") or {}
        params = ProfileParams(p.get("ewma_half_life_seconds", params.ewma_half_life_seconds),
                               p.get("decay_half_life_seconds", params.decay_half_life_seconds),
                               p.get("step_seconds", params.step_seconds), params.sizing)
    watermark = parse_iso(previous["window"]["end"]) if previous is not None else None
    cleaned = tidy.clean(cols, window=window, watermark=watermark, allow_empty=previous is not None)
    step_warnings: list[str] = []
    if params.step_seconds:
        step = int(params.step_seconds)
    else:
        measured = measured_step(cleaned) if len(cleaned) else None
        step = measured or ASSUMED_STEP_SECONDS
        if measured is None and len(cleaned):
            # The step is stored with the fingerprint and every later fold keeps it: say it was a guess.
            step_warnings.append(f"{cols.source}: the sampling step cannot be measured (no series has two "
                                 f"samples): assumed {step} s, which later folds keep; give the step "
                                 f"(--step-seconds) if the data is sampled otherwise")
    data_region = region or (cols.region if cols.region != "unknown" else None)
    if previous is not None and previous.get("region") and data_region and data_region != previous["region"]:
        # Another region's history would be decayed and summed into this one's.
        raise InputError(f"the previous fingerprint is of region {previous['region']}, the new data of "
                         f"{data_region}: not folded", source=previous_source, field="region")
    region = region or data_region or (previous or {}).get("region") or cols.region
    if not len(cleaned):
        if previous is None or window is None:
            reasons = cleaned.warnings[len(cols.warnings):] or cleaned.warnings
            raise InputError("no usable metric rows" + (f" ({'; '.join(reasons[:3])})" if reasons else ""),
                             source=cols.source)
        # Nothing new: the previous state, decayed to the new window end. Never to an earlier end (a replayed
        # older interval): that would move the late-point watermark back and double count the next fold.
        end = max(window[1], parse_iso(previous["window"]["end"]))
        state = _previous_state(previous, previous_source)
        kw = {"ewma_half_life": params.ewma_half_life_seconds, "decay_half_life": params.decay_half_life_seconds}
        state = WindowState(state.instance_keys, gb.rebase(state.instances, end, **kw), state.pool_keys,
                            gb.rebase(state.pooled, end, **kw), gb.rebase(state.aggregate, end, **kw),
                            state.counts)
        warnings = [*cleaned.warnings, f"{cols.source}: no new metric rows in the window"]
        fp = render(state, region=region, start=parse_iso(previous["window"]["start"]), end=end, step=step,
                    params=params, warnings=warnings[:max_warnings],
                    history_start=parse_iso(previous.get("history_start", previous["window"]["start"])),
                    folds=int(previous.get("folds", 0)) + 1)
        fp["warnings"][:0] = retire_services(fp, state.counts, retire_after)
        fp["quality"] = window_quality(cleaned, window=(window[0], end))
        return fp
    span_start, span_end = cleaned.ts_bounds()
    start = window[0] if window else math.floor(span_start / step) * step
    end = window[1] if window else (math.floor(span_end / step) + 1) * step
    state, cleaned = window_state(cleaned, end=end, step=step, params=params)
    quality = window_quality(cleaned, window=(start, end), state=state)
    history_start = start
    folds = 0
    if previous is not None:
        state = merge_states(_previous_state(previous, previous_source), state, params=params)
        start = parse_iso(previous["window"]["start"])
        history_start = parse_iso(previous.get("history_start", previous["window"]["start"]))
        folds = int(previous.get("folds", 0)) + 1
    warnings = [*step_warnings, *cleaned.warnings]
    if len(warnings) > max_warnings:
        warnings = [*warnings[:max_warnings], f"… {len(warnings) - max_warnings} more warning(s)"]
    fp = render(state, region=region, start=start, end=end, step=step, params=params, warnings=warnings,
                history_start=history_start, folds=folds)
    fp["warnings"][:0] = retire_services(fp, state.counts, retire_after)
    fp["quality"] = quality
    return fp


def retire_services(fingerprint: dict[str, Any], counts: dict[str, dict[str, float]], retire_after: float
                    ) -> list[str]:
    """Drop from ``fingerprint`` the services last seen ``retire_after`` seconds or more before the newest sample
    of any service, and say so (one warning each).

    A fold never forgets a service by itself: a retired one would stay sized for ever and the blueprint would
    keep a shadow (and a "not ready" drift) for it. Measured against the newest sample, not the clock, so
    that a region whose metrics stopped altogether (a broken pipeline, not a retirement) keeps every service.
    """
    seen = {svc: c["last_seen"] for svc, c in counts.items()
            if math.isfinite(c.get("last_seen", math.nan)) and svc in fingerprint["services"]}
    if not seen or not math.isfinite(retire_after):
        return []
    newest = max(seen.values())
    retired = sorted(svc for svc, t in seen.items() if newest - t >= retire_after)
    for svc in retired:
        del fingerprint["services"][svc]
    return [f"service {svc}: no sample since {iso(seen[svc])}, {_duration(newest - seen[svc])} before the newest "
            f"of the region (retired after {_duration(retire_after)}): dropped from the fingerprint, no longer "
            f"sized" for svc in retired]


def window_quality(cleaned: tidy.TidyColumns | None, *, window: tuple[float, float],
                   state: WindowState | None = None) -> dict[str, Any]:
    """Rows of the newest window kept and rejected (impossible values) per service and metric.

    ``cleaned``: the window's rows after :func:`~shadowing.metrics.frame.clean` (None: nothing was rejected,
    and ``state`` counts the rows kept).

    The validation suite turns them into a rejected share: a stray impossible point is dropped and reported,
    a source that is mostly impossible (a broken agent, a unit change) fails the refresh instead.
    """
    kept: dict[str, dict[str, int]] = {}
    if state is not None:
        # The window's own pooled counts are exactly the rows kept per (service, metric): no pass over rows.
        for (svc, metric), c in zip(state.pool_keys, state.pooled.count.tolist(), strict=True):
            if c:
                kept.setdefault(svc, {})[metric] = int(c)
    elif cleaned is not None and len(cleaned):
        n_met = max(len(cleaned.metrics), 1)
        counts = np.bincount(cleaned.service.astype(np.int64) * n_met + cleaned.metric,
                             minlength=len(cleaned.services) * n_met)
        for k in np.flatnonzero(counts).tolist():
            c = counts[k]
            kept.setdefault(cleaned.services[k // n_met], {})[cleaned.metrics[k % n_met]] = int(c)
    rejected: dict[str, dict[str, int]] = {}
    for (svc, metric), c in sorted((cleaned.rejected if cleaned is not None else {}).items()):
        rejected.setdefault(svc, {})[metric] = int(c)
    return {"window": {"start": iso(window[0]), "end": iso(window[1])}, "kept_rows": kept,
            "rejected_rows": rejected}


def build(cols: tidy.TidyColumns, **kwargs: Any) -> dict[str, Any]:
    """A fingerprint of ``cols`` from scratch (see :func:`fold`)."""
    return fold(None, cols, **kwargs)


# Files smaller than this are read whole: streaming buys nothing there.
_STREAM_MIN_ROWS = 1_000_000


def build_file(path: str | Path, *, region: str | None = None, params: ProfileParams | None = None,
               max_warnings: int = 50, stream_min_rows: int = _STREAM_MIN_ROWS) -> dict[str, Any]:
    """``build(read_metrics(path))``, streamed when the file allows it.

    A big Parquet file laid out series after series on one time grid (what exporters write) is profiled row
    group by row group as it is decoded (:class:`~shadowing.metrics.frame.SeriesFile`): the values are never
    held whole, which halves the peak memory and saves a pass over them. Anything the streamed path does not
    take as it is (an impossible value, a gap, a repeated series, another step) sends the file to
    :func:`build`, whose cleaning reports it. Same fingerprint, except that the service totals are summed in
    another order (aggregate statistics may differ in the last bit).
    """
    params = params or ProfileParams()
    path = Path(path)
    if path.suffix.lower() in {".parquet", ".pq"} and path.is_file():
        from pyarrow import ArrowException

        tidy.avoid_hugepage_compaction()
        try:
            fp = _build_streamed(path, region=region, params=params, max_warnings=max_warnings,
                                 min_rows=stream_min_rows)
        except (tidy.NotSeriesLayout, OSError, ArrowException):  # a corrupt file: read_metrics names it
            fp = None
        if fp is not None:
            return fp
    return build(tidy.read_metrics(path, region=region), region=region, params=params, max_warnings=max_warnings)


@dataclass
class _Scanned:
    """What a streamed scan of a file leaves: per block its series, names and statistics, and the totals."""

    step: int
    start: float
    end: float
    weights: gb.DenseWeights
    kw: _DenseKw
    blocks: list[tuple[np.ndarray, dict[str, list[str]], list[dict[str, np.ndarray]]]]
    totals_of: dict[int, dict[tuple[str, str], np.ndarray]]  # reader thread → (service, metric) → total
    n_series: int
    length: int


def _scan(sf: tidy.SeriesFile, params: ProfileParams) -> _Scanned | None:
    """Every block's statistics and the service totals, on the reader's threads (None: not on the step)."""
    import threading

    grid = sf.grid
    step = int(params.step_seconds or _grid_step(grid) or ASSUMED_STEP_SECONDS)
    if not _on_step(grid, step):
        return None  # not on the step's grid: the general path aligns it
    first, end = float(grid[0]), float(grid[-1]) + step
    kw = _dense_kw(end, params)
    weights = gb.DenseWeights.of(grid, **kw)
    per_block = weights.rows_per_block
    limits: dict[str, tuple[float, float]] = {}
    totals_of: dict[int, dict[tuple[str, str], np.ndarray]] = {}

    def limit(metric: str) -> tuple[float, float]:
        if metric not in limits:
            limits[metric] = (0.0 if metric in tidy.NON_NEGATIVE_METRICS else -tidy.MAX_MAGNITUDE,
                              100.0 if metric in PERCENT_METRICS else tidy.MAX_MAGNITUDE)
        return limits[metric]

    def visit(block: tidy.SeriesBlock) -> tuple[np.ndarray, dict[str, list[str]], list[dict[str, np.ndarray]]]:
        lo, hi = np.array([limit(m) for m in block.names["metric"]]).reshape(-1, 2).T
        parts = []
        for a in range(0, block.values.shape[0], per_block):
            def check(low: np.ndarray, high: np.ndarray, a: int = a) -> None:
                # Anything clean() would drop (NaN, ±inf, negative, above 100 % or beyond MAX_MAGNITUDE): the
                # general path reports it.
                if not (np.isfinite(low).all() and np.isfinite(high).all()
                        and (low >= lo[a:a + low.size]).all() and (high <= hi[a:a + high.size]).all()):
                    raise tidy.NotSeriesLayout

            with np.errstate(invalid="ignore", over="ignore"):  # ±inf rows are given up in check()
                parts.append(weights.block(block.values[a:a + per_block], check))
        totals = totals_of.setdefault(threading.get_ident(), {})
        for row, key in enumerate(zip(block.names["service"], block.names["metric"], strict=True)):
            total = totals.get(key)
            if total is None:
                totals[key] = block.values[row].copy()
            else:
                np.add(total, block.values[row], out=total)
        return block.series, block.names, parts

    blocks = sf.scan(visit)
    return _Scanned(step, first, end, weights, kw, blocks, totals_of, sf.n_series, sf.length)


def _build_streamed(path: Path, *, region: str | None, params: ProfileParams, max_warnings: int, min_rows: int
                    ) -> dict[str, Any] | None:
    """:func:`build_file`'s streamed path; None (or :class:`~shadowing.metrics.frame.NotSeriesLayout`) when
    the file is not one it takes."""
    series_file = tidy.SeriesFile.open(path)
    if series_file is None:
        return None
    with series_file as sf:
        if sf.n_rows < max(min_rows, _DENSE_MIN_LENGTH) or sf.length < _DENSE_MIN_LENGTH:
            return None
        scanned = _scan(sf, params)
    if scanned is None:
        return None
    n_series = scanned.n_series
    # Names in file order, coded by first appearance (as read_parquet codes them).
    names: dict[str, list[str]] = {c: [""] * n_series for c in ("region", "service", "instance_id", "metric")}
    for series, block_names, _ in scanned.blocks:
        for c, column in names.items():
            for i, name in zip(series.tolist(), block_names[c], strict=True):
                column[i] = name
    coded: dict[str, dict[str, int]] = {c: {} for c in names}
    codes = {c: np.array([coded[c].setdefault(v, len(coded[c])) for v in column], dtype=np.int64)
             for c, column in names.items()}
    services, instances, metrics = (list(coded[c]) for c in ("service", "instance_id", "metric"))
    pairs, pair_of_series = tidy.distinct_inverse(codes["service"] * max(len(instances), 1) + codes["instance_id"])
    index = _series_index(codes["service"], pair_of_series, codes["metric"], services,
                          [instances[p % len(instances)] for p in pairs.tolist()], metrics)
    if index is None:
        return None  # a series repeats: the general path averages its duplicates
    position = np.empty(n_series, dtype=np.int64)
    position[np.concatenate([series for series, _, _ in scanned.blocks])] = np.arange(n_series)
    gather = position if index.order is None else position[index.order]
    inst = scanned.weights.result([p for _, _, parts in scanned.blocks for p in parts],
                                  None if bool(np.all(gather == np.arange(n_series))) else gather)
    # The totals before the entries' thread starts: hundreds of small numpy calls on this thread would each
    # wait for the GIL that thread's Python holds (measured: 80 ms instead of 3).
    totals = np.zeros((len(index.pool_keys), scanned.length))
    for p, key in enumerate(index.pool_keys):
        for per_thread in scanned.totals_of.values():
            if key in per_thread:
                totals[p] += per_thread[key]
    entries = gb.Background(_entries, inst.batch, full=False) if n_series >= _THREAD_MIN_SERIES else None
    state = _dense_finish(index, inst, entries, totals, sf.grid, scanned.kw, services)
    region_rows = dict.fromkeys(coded["region"], 0)
    for name in names["region"]:
        region_rows[name] += scanned.length
    top_region = max(region_rows, key=region_rows.__getitem__) if region_rows else None
    warnings = []
    if len(region_rows) > 1 and region is None:
        warnings.append(tidy.several_regions_warning(str(path), list(region_rows), top_region))
    unknown = sorted(set(metrics) - set(tidy.CANONICAL_METRICS))
    if unknown:
        warnings.append(tidy.unknown_metrics_warning(str(path), unknown))
    start, end = scanned.start, scanned.end
    fp = render(state, region=region or top_region, start=start, end=end, step=scanned.step, params=params,
                warnings=warnings[:max_warnings], history_start=start, folds=0)
    fp["quality"] = window_quality(None, window=(start, end), state=state)
    return fp


def params_dict(params: ProfileParams) -> dict[str, Any]:
    return asdict(params)
