"""The tidy metrics frame in columnar form, its readers and its cleaning rules.

:class:`TidyColumns` is the tidy frame (DESIGN §3) as numpy arrays with dictionary-encoded text columns
(integer codes + names), which is what the vectorised profiler needs; readers produce it straight from
Parquet (pyarrow, only the needed columns; text runs from the pages, :mod:`shadowing.metrics.parquet_runs`),
tidy CSV (typed by pyarrow, pandas only for what does not parse), raw CloudWatch-export CSV
(``timestamp,value``, metric named by the file) and pandas frames. :class:`SeriesFile` streams a big Parquet
file laid out series after series to a visitor instead (the profiler's ``build_file``).

:func:`clean` applies the bad-input rules: rows that cannot be good (unparseable, NaN/inf, negative where the
metric cannot be negative, utilisation outside 0–100, a magnitude beyond 1e100, exact duplicates, clock skew
beyond the window) are dropped and *reported* (series and row numbers) as warnings; unknown metric names are
kept and profiled generically; an input with nothing usable left raises :class:`~shadowing.errors.InputError`.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shadowing.errors import InputError
from shadowing.metrics.names import CANONICAL_METRICS, PERCENT_METRICS, TIDY_COLUMNS
from shadowing.metrics.parquet_runs import dictionary_runs

if TYPE_CHECKING:  # pandas costs about a second to import: the Parquet path of the profiler never needs it
    import pandas as pd

NON_NEGATIVE_METRICS = frozenset(CANONICAL_METRICS)
_MAX_EXAMPLES = 5
# Sample timestamps more than this beyond the window end (or now) are clock skew.
CLOCK_SKEW_TOLERANCE_SECONDS = 300.0
# No metric comes near this (a minute of a 400 Gb/s link is 3e12 bytes), and the statistics need the headroom:
# the sum of squared deviations of values beyond ~1e150 overflows a double, leaving the std null.
MAX_MAGNITUDE = 1e100
_MEMORY_MAP = False
_READ_THREADS = 2
_PARALLEL_READ_MIN_ROWS = 10_000_000
# The tidy frame's text columns (read as dictionary codes wherever they can be).
_TEXT_COLUMNS = ("region", "service", "instance_id", "metric")
# Raw chunk bytes are read with os.pread (safe from several threads): text columns' runs from their pages
# (parquet_runs) and timestamp chunks compared by their bytes. Where pread is missing, pyarrow decodes both.
_PREAD = hasattr(os, "pread")
# Below this many rows pyarrow decodes a text chunk (≈3 ns a row) faster than its page headers parse in Python.
_PAGE_RUNS_MIN_ROWS = 1 << 16


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values: ``np.unique`` without its ``numpy.ma`` import (~40 ms of a process start)."""
    ordered = np.sort(np.asarray(values).reshape(-1))
    if ordered.size < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def distinct_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` without the numpy.ma import (~11 ms of a process)."""
    flat = np.asarray(values).reshape(-1)
    uniq = distinct(flat)
    return uniq, np.searchsorted(uniq, flat)


def parallel_map(fn: Any, items: list[Any], threads: int) -> list[Any]:
    """[fn(x) for x in items] with items dealt round-robin to ``threads`` threads (for GIL-releasing work).

    Plain threading: concurrent.futures would import logging (~40 ms of a short process's start).
    """
    import threading

    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    results: dict[int, list[Any]] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = [fn(x) for x in items[k::threads]]
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    helpers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(1, threads)]
    for h in helpers:
        h.start()
    work(0)
    for h in helpers:
        h.join()
    if errors:
        raise errors[0]
    out: list[Any] = [None] * len(items)
    for k in range(threads):
        out[k::threads] = results.get(k, [])
    return out


@dataclass
class TidyColumns:
    """Columnar tidy frame: codes index the name lists; ``ts`` is epoch seconds (float64, UTC).

    ``grid``, when a reader sets it, says more: the rows are whole series one after another, every one sampled
    exactly at ``grid`` (what exporters write). ``ts`` is then implied, and only built (``np.tile``) if some
    code asks for it: the profiler's fast path never does, which saves a 240 MB column at 30M rows. The
    statement holds whether or not ``ts`` was built; assigning ``ts`` or :meth:`take` drops ``grid``.
    """

    _ts: np.ndarray | None
    values: np.ndarray
    _service: np.ndarray | None
    _instance: np.ndarray | None
    _metric: np.ndarray | None
    services: list[str]
    instances: list[str]
    metrics: list[str]
    region: str | None = None
    source: str = "frame"
    # Original row number (1-based data line) of each row, kept for messages; None = position + 1.
    rows: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    # (service, metric) → rows :func:`clean` dropped because their value was impossible (missing, infinite,
    # negative, utilisation above 100 %): the share of such rows tells a broken source from a stray point.
    rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    # Optional layout hint from readers: first row of every run of constant (service, instance, metric),
    # ascending (a tidy file holds long runs). Lets checks work per run instead of per row; dropped by take().
    runs: np.ndarray | None = None
    grid: np.ndarray | None = None
    # With ``runs``: the (service, instance, metric) codes of each run. Readers that set it may leave the
    # per-row code columns to be expanded on first use (30M rows × 3 columns is 90 MB the fast path never reads).
    run_codes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def ts(self) -> np.ndarray:
        if self._ts is None:
            if self.grid is None or self.grid.size == 0 or len(self) % self.grid.size:
                raise ValueError("TidyColumns without timestamps")
            self._ts = np.tile(self.grid, len(self) // self.grid.size)
        return self._ts

    @ts.setter
    def ts(self, value: np.ndarray) -> None:
        self._ts, self.grid = value, None

    def _expanded(self, which: int) -> np.ndarray:
        if self.run_codes is None or self.runs is None:
            raise ValueError("TidyColumns without code columns")
        codes = self.run_codes[which]
        n = len(self)
        if self.runs.size > max(n >> 8, 64):
            return np.repeat(codes, np.diff(np.append(self.runs, n)))
        # Few long runs: filling slices runs at memset speed (np.repeat copies element by element).
        out = np.empty(n, dtype=codes.dtype)
        bounds = [*self.runs.tolist(), n]
        for a, b, code in zip(bounds[:-1], bounds[1:], codes.tolist(), strict=True):
            out[a:b] = code
        return out

    @property
    def service(self) -> np.ndarray:
        if self._service is None:
            self._service = self._expanded(0)
        return self._service

    @property
    def instance(self) -> np.ndarray:
        if self._instance is None:
            self._instance = self._expanded(1)
        return self._instance

    @property
    def metric(self) -> np.ndarray:
        if self._metric is None:
            self._metric = self._expanded(2)
        return self._metric

    def codes_at(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(service, instance, metric) codes of the given rows, without expanding implied columns."""
        if self.run_codes is not None and self.runs is not None:
            run = np.searchsorted(self.runs, rows, side="right") - 1
            return self.run_codes[0][run], self.run_codes[1][run], self.run_codes[2][run]
        return self.service[rows], self.instance[rows], self.metric[rows]

    def ts_bounds(self) -> tuple[float, float]:
        """(min, max) of the timestamps (NaN if any is NaN), without building an implied column."""
        if not len(self):
            return 0.0, 0.0
        source = self.grid if self.grid is not None else self.ts
        return float(source.min()), float(source.max())

    def row_numbers(self, mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return (self.rows[idx] if self.rows is not None else idx + 1).astype(np.int64)

    def take(self, mask: np.ndarray) -> TidyColumns:
        rows = self.rows[mask] if self.rows is not None else np.flatnonzero(mask) + 1
        return replace(self, _ts=self.ts[mask], values=self.values[mask], _service=self.service[mask],
                       _instance=self.instance[mask], _metric=self.metric[mask], rows=rows, runs=None, grid=None,
                       run_codes=None)

    @property
    def span(self) -> tuple[float, float] | None:
        if not len(self):
            return None
        return self.ts_bounds()


def tidy_names(names: list[str]) -> tuple[list[str], np.ndarray | None]:
    """Names as the frame keeps them: surrounding whitespace stripped, an empty name "unknown" (as a missing one
    is). Returns the names and, when any changed, each old code's new code (variants merge, first one's place)."""
    cleaned = [name.strip() or "unknown" for name in names]
    if cleaned == names:
        return names, None
    merged: dict[str, int] = {}
    remap = np.array([merged.setdefault(name, len(merged)) for name in cleaned], dtype=np.int32)
    return list(merged), remap


def _codes(values: Any) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(values, copy=False).fillna("unknown").astype(str), sort=False)
    names, remap = tidy_names([str(u) for u in uniques])
    codes = codes.astype(np.int32)
    return (codes if remap is None else remap[codes]), names


def from_pandas(df: pd.DataFrame, *, source: str = "frame", region: str | None = None) -> TidyColumns:
    """A tidy pandas frame → columns (timestamps and values coerced; bad cells become NaN → reported)."""
    import pandas as pd

    missing = [c for c in ("timestamp", "metric", "value") if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; expected {', '.join(TIDY_COLUMNS)}",
                         source=source)
    warnings: list[str] = []
    n = len(df)
    filled: dict[str, Any] = {}
    for col in ("region", "service", "instance_id"):
        if col in df.columns:
            filled[col] = df[col]
        else:
            filled[col] = np.full(n, "unknown" if col != "region" else (region or "unknown"), dtype=object)
            if col != "region":
                warnings.append(f"{source}: no {col!r} column; rows attributed to 'unknown'")
    ts = _epoch_seconds(df["timestamp"], warnings=warnings, source=source)
    met, metrics = _codes(df["metric"])
    values = _numeric_values(df["value"], met, metrics, warnings=warnings, source=source)
    regions = list(dict.fromkeys(str(r).strip() or "unknown" for r in pd.unique(pd.Series(filled["region"]).dropna())))
    svc, services = _codes(filled["service"])
    # Instance ids are scoped by service: one code per (service, instance) pair, by first appearance.
    name, names = _codes(filled["instance_id"])
    inst, pairs = pd.factorize(svc.astype(np.int64) * max(len(names), 1) + name, sort=False)
    instances = [names[p % max(len(names), 1)] for p in pairs.tolist()]
    cols = TidyColumns(ts, values, svc, inst.astype(np.int32), met, services, instances,
                       metrics, region=region or (str(regions[0]) if len(regions) else None), source=source,
                       warnings=warnings)
    if len(regions) > 1:
        cols.warnings.append(several_regions_warning(source, regions, cols.region))
    return cols


# A value written with its unit ("12.5 Percent", "512 Bytes"): the unit names of each canonical metric's
# CloudWatch unit that are read as that unit (no conversion: another unit is not guessed at).
_UNIT_NAMES = {"Percent": ("percent", "%", "pct"), "Bytes": ("bytes", "byte", "b"), "Count": ("count",),
               "Milliseconds": ("milliseconds", "millisecond", "ms")}
_VALUE_WITH_UNIT = r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z%/]+)\s*$"


def _numeric_values(column: pd.Series, met: np.ndarray, metrics: list[str], *, warnings: list[str],
                    source: str) -> np.ndarray:
    """The value column as float64, NaN where it is not a number. A number followed by its metric's unit
    (or, for a metric this project does not know, by the one unit all its values carry) is that number."""
    import pandas as pd

    from shadowing.metrics.names import METRICS

    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(column.dtype) or not np.isnan(values).any():
        return values
    missing = np.flatnonzero(np.isnan(values) & column.notna().to_numpy())
    parts = column.iloc[missing].astype(str).str.extract(_VALUE_WITH_UNIT)
    has = parts[0].notna().to_numpy()
    if not has.any():
        return values
    rows, numbers = missing[has], parts[0].to_numpy()[has].astype(np.float64)
    values = values.copy()  # pandas may hand out a read-only view
    units, metric_of = parts[1].to_numpy()[has], met[rows]
    read: dict[str, int] = {}
    refused: list[str] = []
    for code in distinct(metric_of).tolist():
        here = metric_of == code
        spoken = {str(u).lower() for u in units[here]}
        spec = METRICS.get(metrics[code])
        if spec is not None:
            ok = np.isin(np.char.lower(units[here].astype(str)), _UNIT_NAMES.get(spec.unit, (spec.unit.lower(),)))
        else:  # unknown metric: one unit throughout is a label, several would need converting
            ok = np.full(int(here.sum()), len(spoken) == 1)
        idx = np.flatnonzero(here)
        values[rows[idx[ok]]] = numbers[idx[ok]]
        for unit in sorted({str(u) for u in units[idx[ok]]}):
            read[unit] = read.get(unit, 0) + int((units[idx[ok]] == unit).sum())
        if (~ok).any():
            example = column.iloc[int(rows[idx[~ok][0]])]
            want = spec.unit if spec is not None else "one unit"
            refused.append(f"{int((~ok).sum())} value(s) of {metrics[code]} in another unit than {want} "
                           f"(e.g. {example!r}) not converted")
    if read:
        shown = ", ".join(f"{n} in {u!r}" for u, n in read.items())
        warnings.append(f"{source}: values written with their unit read as numbers ({shown})")
    warnings.extend(f"{source}: {r}" for r in refused)
    return values


def several_regions_warning(source: str, regions: Sequence[str], profiled_as: str | None) -> str:
    return f"{source}: several regions in one input ({', '.join(map(str, regions))}); profiled as {profiled_as}"


def unknown_metrics_warning(source: str, metrics: Sequence[str]) -> str:
    return f"{source}: unknown metric name(s) {', '.join(metrics)} profiled generically"


# Numeric timestamps: epoch seconds unless their magnitude says milliseconds, microseconds or nanoseconds
# (seconds below 1e11 reach the year 5138; exporters that write finer units write them whole).
_EPOCH_UNITS = ((1e11, "seconds", 1.0), (1e14, "milliseconds", 1e3), (1e17, "microseconds", 1e6),
                (math.inf, "nanoseconds", 1e9))


def _epoch_numbers(values: np.ndarray, warnings: list[str] | None, source: str) -> np.ndarray:
    """Numeric timestamps → epoch seconds, the unit read from the typical (median) magnitude."""
    finite = np.abs(values[np.isfinite(values)])
    if not finite.size:
        return values
    typical = float(np.partition(finite, finite.size // 2)[finite.size // 2])
    unit, scale = next((u, k) for limit, u, k in _EPOCH_UNITS if typical < limit)
    if scale == 1.0:
        return values
    if warnings is not None:
        message = f"{source}: numeric timestamps read as epoch {unit}"
        if message not in warnings:
            warnings.append(message)
    return values / scale


def _epoch_seconds(column: pd.Series, *, warnings: list[str] | None = None, source: str = "") -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return np.full(len(column), np.nan)
    if pd.api.types.is_numeric_dtype(column):
        return _epoch_numbers(column.to_numpy(dtype=np.float64, na_value=np.nan), warnings, source)
    parsed = pd.to_datetime(column, utc=True, errors="coerce", format="mixed")
    unparsed = parsed.isna().to_numpy()
    if unparsed.any() and (column.dtype == object or pd.api.types.is_string_dtype(column.dtype)):
        # Epoch seconds as text (CSV timestamps are read as text): numbers, as a numeric column is read.
        numbers = pd.to_numeric(column, errors="coerce")
        blank = column.isna() | (column.astype(str).str.strip() == "")
        if numbers.notna().any() and bool((numbers.notna() | blank).all()):
            return _epoch_numbers(numbers.to_numpy(dtype=np.float64, na_value=np.nan), warnings, source)
    out = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    out[unparsed] = np.nan
    return out


class _ParquetSource:
    """A Parquet file's footer and row groups through pyarrow's own reader class.

    Not ``pyarrow.parquet.ParquetFile`` (whose module imports pyarrow.fs and friends, ~40 ms of a short
    process) nor ``read_table`` (pyarrow.dataset, which imports pandas). Falls back to ParquetFile if the
    low-level class ever moves.
    """

    def __init__(self, path: Path, read_dictionary: list[str] | None = None, metadata: Any = None) -> None:
        try:
            from pyarrow._parquet import ParquetReader

            reader = ParquetReader()
            reader.open(str(path), use_memory_map=_MEMORY_MAP, read_dictionary=read_dictionary, metadata=metadata)
            self._file: Any = None
        except (ImportError, AttributeError, TypeError):
            import pyarrow.parquet as pq

            self._file = pq.ParquetFile(path, read_dictionary=read_dictionary, memory_map=_MEMORY_MAP,
                                        metadata=metadata)
            reader = self._file.reader
        self._reader = reader
        self.metadata = reader.metadata
        self.num_row_groups = int(reader.num_row_groups)
        self.names = list(reader.schema_arrow.names)

    @classmethod
    def with_text(cls, path: Path) -> _ParquetSource:
        """The file with the tidy text columns it has read as dictionary codes (the footer is read first to
        know which it has: pyarrow refuses a dictionary request for a missing column)."""
        with cls(path) as plain:
            return cls(path, read_dictionary=plain.text, metadata=plain.metadata)  # the footer parsed once

    @property
    def text(self) -> list[str]:
        """The tidy text columns this file has (flat ones: a nested column cannot be read as a dictionary, and
        the readers refuse it, naming it)."""
        return [c for c in _TEXT_COLUMNS if c in self.names and self.leaf(c) is not None]

    def arrow_type(self, name: str) -> str:
        return str(self._reader.schema_arrow.field(name).type)

    def leaf(self, name: str) -> int | None:
        """The Parquet column (leaf) index of the top-level flat column ``name``, None if it is nested or
        missing. Not its position among the Arrow fields: a struct, map or list column before it has several
        leaves (or longer paths), and the footer's column chunks are numbered by leaf."""
        try:
            return int(self._reader.column_name_idx(name))
        except KeyError:
            return None

    def read_row_group(self, i: int, columns: list[str]) -> Any:
        indices = [self._reader.column_name_idx(c) for c in columns]
        return self._reader.read_row_group(i, column_indices=indices, use_threads=False)

    def close(self) -> None:
        (self._file or self._reader).close()

    def __enter__(self) -> _ParquetSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Below this many rows a materialised timestamp column costs nothing worth avoiding.
_IMPLIED_TS_MIN_ROWS = 1_000_000
_SECONDS_PER = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


@dataclass
class _Grid:
    """The shared time grid of a file laid out series after series (raw timestamp units and seconds)."""

    raw: np.ndarray  # int64, in the column's unit
    unit: str
    seconds: np.ndarray  # float64 epoch seconds

    def matches(self, raw: np.ndarray, pos: int, unit: str) -> bool:
        """Whether rows [pos, pos + len(raw)) hold exactly the grid, series after series (no copy)."""
        length = self.raw.size
        if unit != self.unit:
            return False
        k = pos % length
        head = min(raw.size, length - k)
        if not np.array_equal(raw[:head], self.raw[k:k + head]):
            return False
        whole = (raw.size - head) // length
        body = raw[head:head + whole * length]
        if whole and not bool((body.reshape(whole, length) == self.raw).all()):
            return False
        tail = raw[head + whole * length:]
        return bool(np.array_equal(tail, self.raw[:tail.size]))

    def holds(self, column: Any, pos: int) -> bool:
        """Whether a row group's timestamp column (starting at row ``pos``) is null-free timestamps that are
        exactly the grid, series after series."""
        import pyarrow as pa

        if not pa.types.is_timestamp(column.type):
            return False
        whole = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        raw = whole.view(pa.int64())
        return not raw.null_count and self.matches(_buffer(raw, np.int64), pos, column.type.unit)

    def materialize(self, off_grid: dict[int, tuple[Any, int]], n: int) -> np.ndarray:
        """The full column: the grid everywhere, then the row groups that did not match from their values."""
        ts = np.tile(self.seconds, n // self.seconds.size) if n % self.seconds.size == 0 else \
            self.seconds[np.arange(n) % self.seconds.size]
        import pyarrow as pa

        for column, pos in off_grid.values():
            if pa.types.is_timestamp(column.type):
                raw = column.combine_chunks().view(pa.int64())
                part = raw.to_numpy(zero_copy_only=False).astype(np.float64) / _SECONDS_PER[column.type.unit]
                if raw.null_count:
                    part[np.asarray(raw.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = np.nan
            else:
                part = _epoch_seconds(column.to_pandas())
            ts[pos:pos + len(part)] = part
        return ts


def _probe_grid(pf: _ParquetSource, n: int) -> _Grid | None:
    """The first series' timestamps, if the file looks laid out series after series on one grid.

    Read from the first row group: the first time the timestamps stop rising ends the first series. The
    per-row-group checks then confirm (or refute) that every series repeats it.
    """
    import pyarrow as pa

    if pf.num_row_groups == 0:
        return None
    column = pf.read_row_group(0, ["timestamp"]).column("timestamp")
    if not pa.types.is_timestamp(column.type) or column.null_count:
        return None
    chunks = [np.frombuffer(c.buffers()[1], dtype=np.int64, count=len(c) + c.offset)[c.offset:]
              for c in column.chunks]  # the raw values, without pyarrow's pandas-importing conversions
    raw = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    back = np.flatnonzero(raw[1:] <= raw[:-1])
    if back.size == 0:
        return None
    length = int(back[0]) + 1
    if length < 32 or n % length:
        return None
    grid = raw[:length].copy()
    return _Grid(grid, column.type.unit, grid / _SECONDS_PER[column.type.unit])


class _Compute:
    # pyarrow.compute costs ~0.1 s to import: only inputs with nulls or plain (non-dictionary) text need it.
    def __getattr__(self, name: str) -> Any:
        import pyarrow.compute

        return getattr(pyarrow.compute, name)


_compute = _Compute()


def _buffer(arr: Any, np_dtype: Any) -> np.ndarray:
    """The data buffer of a null-free primitive array as numpy (no copy, no pandas import)."""
    return np.frombuffer(arr.buffers()[1], dtype=np_dtype, count=len(arr) + arr.offset)[arr.offset:]


def _local_runs(col: Any, pos: int) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
    """Per chunk of a text column starting at row ``pos``: run starts (global rows), the names its runs use,
    and each run's index into them.

    Only the dictionary entries that runs use are turned into Python strings: a writer may store the whole
    category list (thousands of names) in every row group's dictionary.
    """
    import pyarrow as pa

    pc = _compute
    out = []
    for chunk in col.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        dictionary = chunk.dictionary
        idx = chunk.indices
        if chunk.null_count:
            idx = pc.fill_null(idx, len(dictionary))  # one past the dictionary: "unknown"
        if not pa.types.is_signed_integer(idx.type) and not pa.types.is_unsigned_integer(idx.type):
            idx = idx.cast(pa.int32())
        idx_np = _buffer(idx, idx.type.to_pandas_dtype())
        starts = np.concatenate(([0], np.flatnonzero(idx_np[1:] != idx_np[:-1]) + 1)) if len(idx_np) else \
            np.zeros(0, dtype=np.int64)
        at_starts = idx_np[starts].astype(np.int64)
        used = distinct(at_starts)
        listed = used[used < len(dictionary)].tolist()
        # Scalar access, not Array.take: take would import pyarrow.compute (~0.1 s of a short process).
        if 4 * len(listed) > len(dictionary):
            everything = dictionary.to_pylist()
            picked = [everything[k] for k in listed]
        else:
            picked = [dictionary[k].as_py() for k in listed]
        # Binary (not UTF-8 annotated) names as text, as the page runs and pandas read them, not as "b'…'".
        local = ["unknown" if v is None else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                 for v in picked]
        local += ["unknown"] * (used.size - len(listed))
        out.append((starts + pos, local, np.searchsorted(used, at_starts)))
        pos += len(chunk)
    return out


def _constant_text(metadata: Any, i: int, text: list[str]) -> dict[str, str]:
    """Text columns of row group i holding one value throughout (from the footer's statistics)."""
    out = {}
    group = metadata.row_group(i)
    for j in range(group.num_columns):
        column = group.column(j)
        name = column.path_in_schema
        stats = column.statistics
        if name in text and stats is not None and stats.has_min_max and stats.null_count == 0 \
                and isinstance(stats.min, str) and stats.min == stats.max and len(stats.min) < 64:
            out[name] = stats.min
    return out


class _CheckedChunks:
    """Timestamp column chunks already checked against the grid, remembered by their encoded bytes.

    Row groups that start at the same offset into the series and hold as many rows must hold the same
    timestamps. A chunk whose bytes (and codec) equal a checked one's decodes to the same values, so its check
    is one read and compare of the compressed bytes instead of a decode and a pass over 8 bytes a row.
    """

    def __init__(self, fd: int | None, source: _ParquetSource, length: int) -> None:
        column = source.leaf("timestamp")
        # No flat timestamp column to compare by bytes: every row group is decoded and checked.
        self._fd, self._meta, self._length = (fd if column is not None else None), source.metadata, length
        self._column = column if column is not None else -1
        self._seen: dict[tuple[int, int, str], bytes] = {}

    def _key(self, i: int, pos: int) -> tuple[int, int, str]:
        chunk = self._meta.row_group(i).column(self._column)
        return pos % self._length, int(chunk.num_values), str(chunk.compression)

    def _bytes(self, i: int) -> bytes:
        assert self._fd is not None
        chunk = self._meta.row_group(i).column(self._column)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page and chunk.dictionary_page_offset \
            else chunk.data_page_offset
        return os.pread(self._fd, int(chunk.total_compressed_size), int(start))

    def known(self, i: int, pos: int) -> bool:
        """Whether row group i's timestamps are, byte for byte, a chunk already checked at this alignment."""
        if self._fd is None or not self._seen:
            return False
        want = self._seen.get(self._key(i, pos))
        return want is not None and self._bytes(i) == want

    def checked(self, i: int, pos: int) -> None:
        """Row group i's timestamps were decoded and matched the grid."""
        if self._fd is not None:
            key = self._key(i, pos)
            if key not in self._seen:
                self._seen[key] = self._bytes(i)


def _page_runs(fd: int | None, source: _ParquetSource, i: int, column: str, pos: int
               ) -> list[tuple[np.ndarray, list[str], np.ndarray]] | None:
    """Row group i's runs of a text column (as :func:`_local_runs`) straight from its pages, or None: decode
    it with pyarrow (:mod:`shadowing.metrics.parquet_runs` does not take the chunk, or ``fd`` is None)."""
    meta = source.metadata
    if fd is None or meta.row_group(i).num_rows < _PAGE_RUNS_MIN_ROWS:
        return None
    j = source.leaf(column)
    if j is None:
        return None
    runs = dictionary_runs(fd, meta.row_group(i).column(j), meta.schema.column(j), pos)
    return None if runs is None else [runs]


def read_parquet(path: Path, *, region: str | None = None) -> TidyColumns:
    """Parquet tidy frame → columns, reading only the needed columns, text as dictionary codes.

    Text columns come as dictionary indices and are handled as runs (a tidy file repeats each name over a
    whole series): run starts from one comparison pass over the narrow indices, then one ``np.repeat`` per
    output column; the (service, instance) pair code is assigned per run, never per row.
    """
    import pyarrow as pa

    pc = _compute
    pf = _ParquetSource.with_text(path)
    wanted = [c for c in TIDY_COLUMNS if c in pf.names]
    missing = [c for c in ("timestamp", "metric", "value") if c not in wanted]
    if missing:
        pf.close()
        raise InputError(f"missing column(s) {', '.join(missing)}; expected {', '.join(TIDY_COLUMNS)}",
                         source=str(path))
    nested = [c for c in wanted if pf.leaf(c) is None]
    if nested:
        kind = pf.arrow_type(nested[0])
        pf.close()
        raise InputError(f"a {kind} column; expected a flat column of "
                         f"{'timestamps' if nested[0] == 'timestamp' else 'numbers' if nested[0] == 'value' else 'text'}",
                         source=str(path), field=nested[0])
    ts_warnings: list[str] = []  # how numeric timestamps were read (appended from the reader threads)
    text = pf.text
    n = pf.metadata.num_rows
    n_groups = pf.num_row_groups
    first_row = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(n_groups)]).tolist()
    grid = _probe_grid(pf, n) if n >= _IMPLIED_TS_MIN_ROWS else None
    # With a grid, each row group's timestamps are checked against it in place; the column is only built
    # (from the grid, or from the raw values kept for row groups that do not match) if a check fails.
    ts = np.empty(n, dtype=np.float64) if grid is None else None
    off_grid: dict[int, tuple[Any, int]] = {}  # row group → (its timestamp column, first row)
    values = np.empty(n, dtype=np.float64)
    names: dict[str, dict[str, int]] = {c: {} for c in _TEXT_COLUMNS}

    constants = [_constant_text(pf.metadata, i, text) for i in range(n_groups)]

    def load(reader: Any, i: int) -> tuple[list[np.ndarray], dict[str, Any]]:
        """Row group i into ts/values (its own rows) and its text runs; safe to run on several threads."""
        # A text column constant over the row group is one run: no need to decode it; nor one whose runs
        # can be read from its pages.
        pos = first_row[i]
        page_runs = {c: runs for c in text if c not in constants[i]
                     and (runs := _page_runs(fd, pf, i, c, pos)) is not None}
        same_ts = checked is not None and checked.known(i, pos)
        rg = reader.read_row_group(i, [c for c in wanted if c not in constants[i] and c not in page_runs
                                       and not (c == "timestamp" and same_ts)])
        nulls: list[np.ndarray] = []
        ts_col = None if same_ts else rg.column("timestamp")
        if ts_col is None:
            pass  # the same bytes as a chunk already checked against the grid
        elif grid is not None:
            if not grid.holds(ts_col, pos):
                off_grid[i] = (ts_col, pos)
            elif checked is not None:
                checked.checked(i, pos)
        elif pa.types.is_timestamp(ts_col.type):
            assert ts is not None  # materialised whenever there is no grid
            per_second = _SECONDS_PER[ts_col.type.unit]
            at = pos
            for chunk in ts_col.chunks:
                raw = chunk.view(pa.int64())
                if raw.null_count:
                    nulls.append(np.flatnonzero(_buffer(pc.is_null(raw).cast(pa.uint8()), np.uint8)) + at)
                    raw = pc.fill_null(raw, 0)
                np.divide(_buffer(raw, np.int64), per_second, out=ts[at:at + len(raw)])
                at += len(raw)
        else:
            assert ts is not None
            ts[pos:pos + rg.num_rows] = _epoch_seconds(ts_col.to_pandas(), warnings=ts_warnings, source=str(path))
        at = pos
        for chunk in rg.column("value").chunks:
            if pa.types.is_decimal(chunk.type):
                # Through the decimal text: Arrow's decimal → float cast is not correctly rounded (1 ulp off).
                chunk = pc.cast(chunk, pa.string())
            if not pa.types.is_float64(chunk.type):
                try:
                    chunk = pc.cast(chunk, pa.float64(), safe=False)
                except pa.ArrowInvalid:  # text that is not all numbers: NaN where it is not, which clean reports
                    import pandas as pd

                    chunk = pa.array(pd.to_numeric(chunk.to_pandas(), errors="coerce").to_numpy(
                        dtype=np.float64, na_value=np.nan))
            if chunk.null_count:
                chunk = pc.fill_null(chunk, math.nan)
            values[at:at + len(chunk)] = _buffer(chunk, np.float64)
            at += len(chunk)
        runs_of: dict[str, Any] = {}
        for c in names:
            if c in constants[i]:
                runs_of[c] = [(np.array([pos], dtype=np.int64), [constants[i][c]], np.zeros(1, dtype=np.int64))]
            elif c in page_runs:
                runs_of[c] = page_runs[c]
            else:
                runs_of[c] = _local_runs(rg.column(c), pos) if c in rg.column_names else None
        return nulls, runs_of

    # Row groups on two threads (pyarrow decoding and numpy copies release the GIL), each with its own
    # reader; names get their global codes afterwards, in row-group order, so codes are deterministic.
    # Smaller files read faster on one thread: two threads faulting in fresh pages contend in the kernel.
    threads = _READ_THREADS if n >= _PARALLEL_READ_MIN_ROWS else 1

    def share(k: int) -> list[tuple[list[np.ndarray], dict[str, Any]]]:
        if k == 0:
            return [load(pf, i) for i in range(k, n_groups, threads)]
        with _ParquetSource(path, read_dictionary=text, metadata=pf.metadata) as reader:
            return [load(reader, i) for i in range(k, n_groups, threads)]

    fd = os.open(path, os.O_RDONLY) if _PREAD else None
    checked = _CheckedChunks(fd, pf, grid.raw.size) if grid is not None else None
    try:
        with pf:
            shares = parallel_map(share, list(range(min(threads, max(n_groups, 1)))), threads)
    finally:
        if fd is not None:
            os.close(fd)
    loaded = [shares[i % len(shares)][i // len(shares)] for i in range(n_groups)]
    run_starts: dict[str, list[np.ndarray]] = {c: [] for c in names}
    run_codes: dict[str, list[np.ndarray]] = {c: [] for c in names}
    if grid is not None and off_grid:
        ts = grid.materialize(off_grid, n)
        grid = None
    for i, (nulls, text_runs) in enumerate(loaded):
        for rows in nulls:
            assert ts is not None
            ts[rows] = np.nan
        for c, chunks in text_runs.items():
            known = names[c]
            if chunks is None:
                run_starts[c].append(np.array([first_row[i]], dtype=np.int64))
                run_codes[c].append(np.array([known.setdefault("unknown", len(known))], dtype=np.int32))
                continue
            for starts, local, at_starts in chunks:
                # Coded in the order the rows first name them (as the streamed scan and pandas.factorize number
                # them), not in the dictionary's: a categorical's sorted categories would reorder the output.
                rank, _ = _first_seen(at_starts, len(local))
                for k in np.argsort(rank).tolist():
                    known.setdefault(local[k], len(known))
                lookup = np.array([known[v] for v in local], dtype=np.int32)
                run_starts[c].append(starts)
                run_codes[c].append(lookup[at_starts] if lookup.size else np.zeros(0, np.int32))

    def runs(c: str) -> tuple[np.ndarray, np.ndarray]:
        starts = np.concatenate(run_starts[c]) if run_starts[c] else np.zeros(0, np.int64)
        codes = np.concatenate(run_codes[c]) if run_codes[c] else np.zeros(0, np.int32)
        return starts.astype(np.int64), codes.astype(np.int32)

    def narrow(codes: np.ndarray) -> np.ndarray:
        # The narrowest integer type that holds the codes: the row columns expanded from them stay small.
        top = int(codes.max()) if codes.size else 0
        return codes.astype(np.int8 if top < 127 else np.int16 if top < 32767 else np.int32)

    services, instances, metrics = (list(names[c]) for c in ("service", "instance_id", "metric"))
    svc_starts, svc_codes = runs("service")
    inst_starts, inst_codes = runs("instance_id")
    # Instance ids are scoped by service: one dense code per (service, instance) pair, assigned per run.
    both = distinct(np.concatenate((svc_starts, inst_starts)))
    pair_key = (svc_codes[np.searchsorted(svc_starts, both, side="right") - 1].astype(np.int64)
                * max(len(instances), 1) + inst_codes[np.searchsorted(inst_starts, both, side="right") - 1])
    used_pairs, pair_of_run = distinct_inverse(pair_key)
    run_starts_metric, run_codes_metric = runs("metric")
    inst_names = [instances[p % len(instances)] for p in used_pairs.tolist()]
    reg_starts, reg_codes = runs("region")
    region_count = np.bincount(reg_codes, weights=np.diff(np.append(reg_starts, n)),
                               minlength=len(names["region"])) if reg_codes.size else np.zeros(0)
    region_rows = {name: int(region_count[code]) for name, code in names["region"].items()
                   if code < region_count.size and region_count[code] > 0}
    regions = list(region_rows)
    top_region = max(region_rows, key=region_rows.__getitem__) if region_rows else None
    series_runs = distinct(np.concatenate((both, run_starts_metric))) if n else None
    series_codes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    svc: np.ndarray | None = None
    pair_codes: np.ndarray | None = None
    met: np.ndarray | None = None
    if series_runs is None:
        svc = pair_codes = met = np.zeros(0, dtype=np.int8)
    else:
        # Codes per series run; the per-row columns are expanded only if something asks for them.
        at = [np.searchsorted(starts, series_runs, side="right") - 1
              for starts in (svc_starts, both, run_starts_metric)]
        codes = (narrow(svc_codes[at[0]]), narrow(pair_of_run[at[1]]), narrow(run_codes_metric[at[2]]))
        # Row groups cut runs: a run whose codes equal the previous run's continues it.
        new_run = np.ones(series_runs.size, dtype=bool)
        new_run[1:] = np.logical_or.reduce([c[1:] != c[:-1] for c in codes])
        series_runs = series_runs[new_run]
        series_codes = (codes[0][new_run], codes[1][new_run], codes[2][new_run])
    cols = TidyColumns(ts, values, svc, pair_codes, met, services, inst_names, metrics,
                       region=region or top_region, source=str(path), runs=series_runs,
                       grid=None if grid is None else grid.seconds, run_codes=series_codes)
    if len(regions) > 1 and region is None:
        cols.warnings.append(several_regions_warning(str(path), regions, cols.region))
    cols.warnings.extend(dict.fromkeys(ts_warnings))
    return cols


class NotSeriesLayout(Exception):
    """A file (or a visitor of it) gave up on :class:`SeriesFile`'s streamed scan: read it the general way."""


@dataclass
class SeriesBlock:
    """Whole series of a file, one per row of ``values``, as a :class:`SeriesFile` scan hands them over."""

    series: np.ndarray  # int64: each row's series number in file order (row // grid size)
    values: np.ndarray  # (rows, grid size) float64; a view of the reader's buffer, valid during the visit only
    names: dict[str, list[str]]  # column → each row's name ("region", "service", "instance_id", "metric")


class SeriesFile:
    """A Parquet tidy frame laid out series after series on one time grid, streamed row group by row group.

    What exporters write, and what the profiler's dense path needs: instead of building the columns (a
    240 MB value column at 30M rows, faulted in page by page, then read again by the profiler), every row
    group's whole series are handed to a visitor as a (series × steps) view of the decoded buffer while it is
    still in cache, on two threads, each with its own reader. Series cut by a row-group boundary are copied
    out and handed over last. A missing region, service or instance_id column is "unknown" throughout, as
    :func:`read_parquet` names it. Anything else (a timestamp off the grid, a null or non-float value, a name
    changing inside a series, no timestamp/metric/value column) stops the scan with :class:`NotSeriesLayout`,
    and the caller reads the file with :func:`read_parquet`, whose cleaning reports what is wrong.
    """

    def __init__(self, path: Path, source: _ParquetSource, grid: _Grid) -> None:
        self.path = path
        self._source = source
        self._grid = grid
        self.grid = grid.seconds
        self.length = int(grid.raw.size)
        self.n_rows = int(source.metadata.num_rows)
        self.n_series = self.n_rows // self.length
        self._fd: int | None = os.open(path, os.O_RDONLY) if _PREAD else None

    @classmethod
    def open(cls, path: Path | str) -> SeriesFile | None:
        """The file, if its columns and first series fit the layout (None otherwise; only the first row
        group's timestamps were read)."""
        path = Path(path)
        source = _ParquetSource.with_text(path)
        try:
            if any(c not in source.names or source.leaf(c) is None for c in ("timestamp", "metric", "value")) \
                    or any(source.leaf(c) is None for c in _TEXT_COLUMNS if c in source.names):
                raise NotSeriesLayout  # read_parquet names what is missing or nested
            grid = _probe_grid(source, int(source.metadata.num_rows))
            if grid is None:
                raise NotSeriesLayout
        except NotSeriesLayout:
            source.close()
            return None
        return cls(path, source, grid)

    def close(self) -> None:
        self._source.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SeriesFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan(self, visit: Any, *, threads: int = _READ_THREADS) -> list[Any]:
        """``visit(block)`` for every :class:`SeriesBlock` of the file; the results in file order, then the
        results for the series cut by row-group boundaries. Raises :class:`NotSeriesLayout` (from the file, or
        from ``visit``) when the layout does not hold; ``visit`` runs on the reader threads."""
        import pyarrow as pa

        meta = self._source.metadata
        n_groups = self._source.num_row_groups
        first_row = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(n_groups)]).tolist()
        # A text column the file lacks is "unknown" throughout (as read_parquet names it).
        absent = {c: "unknown" for c in _TEXT_COLUMNS if c not in self._source.names}
        constants = [{**absent, **_constant_text(meta, i, list(_TEXT_COLUMNS))} for i in range(n_groups)]
        length, grid = self.length, self._grid
        checked = _CheckedChunks(self._fd, self._source, length)
        stop: list[BaseException] = []
        columns = ["timestamp", *_TEXT_COLUMNS, "value"]

        def load(reader: _ParquetSource, i: int) -> tuple[list[Any], list[tuple[int, int, np.ndarray, Any]]]:
            pos, end = first_row[i], first_row[i + 1]
            if end == pos:
                return [], []
            text_runs = {c: runs for c in _TEXT_COLUMNS if c not in constants[i]
                         and (runs := _page_runs(self._fd, self._source, i, c, pos)) is not None}
            same_ts = checked.known(i, pos)
            rg = reader.read_row_group(i, [c for c in columns if c not in constants[i] and c not in text_runs
                                           and not (c == "timestamp" and same_ts)])
            if not same_ts:
                if not grid.holds(rg.column("timestamp"), pos):
                    raise NotSeriesLayout
                checked.checked(i, pos)
            value_col = rg.column("value")
            chunk = value_col.chunk(0) if value_col.num_chunks == 1 else value_col.combine_chunks()
            if not pa.types.is_float64(chunk.type) or chunk.null_count:
                raise NotSeriesLayout
            values = _buffer(chunk, np.float64)
            # Series starting inside this row group, and the rows where names may change: series starts only.
            first_full = -(-pos // length) * length
            starts = np.arange(first_full, end, length, dtype=np.int64)
            heads = np.concatenate(([pos], starts)) if pos < first_full else starts
            names: dict[str, list[str]] = {}  # column → the name at every head
            for c in _TEXT_COLUMNS:
                if c in constants[i]:
                    names[c] = [constants[i][c]] * heads.size
                    continue
                run_starts, run_names = [], []
                for starts_c, local, index in text_runs.get(c) or _local_runs(rg.column(c), pos):
                    run_starts.append(starts_c)
                    run_names += [local[k] for k in index.tolist()]
                # A chunk boundary starts a run that only continues the previous one.
                keep = [0] + [j for j in range(1, len(run_names)) if run_names[j] != run_names[j - 1]]
                at = np.concatenate(run_starts)[keep]
                if not np.isin(at, heads).all():
                    raise NotSeriesLayout  # a name changes inside a series
                names[c] = [run_names[keep[j]] for j in (np.searchsorted(at, heads, side="right") - 1).tolist()]
            out, cut = [], []
            if pos < first_full:  # the tail of a series that began in an earlier row group
                k = min(first_full, end) - pos
                cut.append((pos // length, pos % length, values[:k].copy(), tuple(n[0] for n in names.values())))
            whole_starts = starts[starts + length <= end]
            offset = 1 if pos < first_full else 0
            if whole_starts.size:
                a = int(whole_starts[0]) - pos
                block = values[a:a + whole_starts.size * length].reshape(whole_starts.size, length)
                out.append(visit(SeriesBlock(whole_starts // length, block,
                                             {c: v[offset:offset + whole_starts.size] for c, v in names.items()})))
            if starts.size > whole_starts.size:  # the head of a series that ends in a later row group
                s0 = int(starts[-1])
                cut.append((s0 // length, 0, values[s0 - pos:].copy(), tuple(n[-1] for n in names.values())))
            return out, cut

        def share(k: int) -> list[tuple[list[Any], list[Any]]]:
            done = []
            reader = self._source if k == 0 else _ParquetSource(self.path, read_dictionary=self._source.text,
                                                                   metadata=self._source.metadata)
            try:
                for i in range(k, n_groups, threads):
                    if stop:
                        break
                    try:
                        done.append(load(reader, i))
                    except BaseException as exc:
                        stop.append(exc)
                        raise
            finally:
                if k:
                    reader.close()
            return done

        shares = parallel_map(share, list(range(min(threads, max(n_groups, 1)))), threads)
        loaded = [shares[i % len(shares)][i // len(shares)] for i in range(n_groups)]
        results = [r for out, _ in loaded for r in out]
        pieces: dict[int, list[tuple[int, np.ndarray, Any]]] = {}
        for _, cut in loaded:
            for series, offset, part, key in cut:
                pieces.setdefault(series, []).append((offset, part, key))
        if pieces:
            stitched = sorted(pieces)
            block = np.empty((len(stitched), length))
            keys = []
            for row, series in enumerate(stitched):
                parts = sorted(pieces[series], key=lambda p: p[0])
                at = 0
                for offset, part, key in parts:
                    if offset != at or key != parts[0][2]:
                        raise NotSeriesLayout
                    block[row, at:at + part.size] = part
                    at += part.size
                if at != length:
                    raise NotSeriesLayout
                keys.append(parts[0][2])
            results.append(visit(SeriesBlock(np.asarray(stitched, dtype=np.int64), block,
                                             {c: [k[j] for k in keys] for j, c in enumerate(_TEXT_COLUMNS)})))
        return results


def read_csv(path: Path, *, region: str | None = None) -> TidyColumns:
    """Tidy CSV, or a raw CloudWatch export (``timestamp,value``: metric and instance named by the file).

    The header's names are matched whatever their case and surrounding spaces; a two-column file without a
    header whose first line is a sample is a raw export. Rows with the wrong number of fields are skipped and
    reported by file line; a quote left open is a malformed line, not the end of the file (the reader would
    otherwise take every later line as part of that one field). Text that is not UTF-8 is decoded byte by
    byte as Windows-1252 (UTF-16 by its byte-order mark) and reported, rather than refusing the file.
    """
    import pyarrow as pa

    source = str(path)
    warnings: list[str] = []
    data: bytes | None = None  # the file as UTF-8 when it had to be decoded or repaired; else read from path
    try:
        head = _head_bytes(path)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            data = _as_utf8(_file_bytes(path), source, warnings)
            head = _head_bytes(data)
        layout = _csv_layout(head, source)
        try:
            cols, bad_rows = _parse_csv(path if data is None else data, layout, source=source, region=region,
                                        typed=data is None and {"timestamp", "metric", "value"} <= set(
                                            _csv_header(path)))
        except _NotUtf8 as exc:
            raw = _file_bytes(path)
            data = _as_utf8(raw, source, warnings)
            if data is raw:  # it was UTF-8 after all: what failed is something else
                raise InputError(f"unreadable CSV: {exc.__cause__}", source=source) from exc
            try:
                cols, bad_rows = _parse_csv(data, layout, source=source, region=region, typed=False)
            except _NotUtf8 as again:
                raise InputError(f"unreadable CSV: {again.__cause__}", source=source) from again
        lines = None
        if bad_rows:
            # The rare path: find every record's file line (and lines a stray quote swallowed) with Python's
            # csv reader, then read again without the stray quotes' lines.
            text = data if data is not None else _file_bytes(path)
            scan = _scan_records(text, layout.names, layout.header_line,
                                 swallowed=any(r.spans_lines for r in bad_rows))
            if scan is not None and scan.stray:
                data = _blank_lines(text, scan.stray)
                cols, bad_rows = _parse_csv(data, layout, source=source, region=region, typed=False)
            if scan is not None and len(scan.kept) == len(cols):
                lines = np.asarray(scan.kept, dtype=np.int64)
            if scan is not None:
                bad_rows = scan.bad
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"unreadable CSV: {exc}", source=source) from exc
    if layout.note:
        warnings.append(f"{source}: {layout.note}")
    cols.warnings[:0] = warnings
    # Messages name file lines (the header is line 1).
    cols.rows = lines if lines is not None else np.arange(len(cols)) + layout.header_line + 1
    if bad_rows:
        shown = "; ".join(r.describe() for r in bad_rows[:_MAX_EXAMPLES])
        more = "; …" if len(bad_rows) > _MAX_EXAMPLES else ""
        cols.warnings.append(f"{source}: {len(bad_rows)} malformed row(s) skipped ({shown}{more})")
    return cols


class _NotUtf8(Exception):
    """The reader met text that is not UTF-8: decode the file first (:func:`_as_utf8`)."""


@dataclass
class _BadRow:
    line: int | None  # file line (None: only the parser's text is known)
    fields: int
    expected: int
    text: str
    spans_lines: bool = False  # a quote left open swallowed the lines after it
    header: bool = False  # the header line again (files concatenated)

    def describe(self) -> str:
        where = f"line {self.line}" if self.line is not None else repr(self.text[:60])
        if self.spans_lines:
            return f"{where}: a quote is not closed"
        if self.header:
            return f"{where}: the header repeated"
        return f"{where}: {self.fields} field(s), expected {self.expected}"


@dataclass
class _CsvLayout:
    """How a CSV file's first line says to read it."""

    kind: str  # "tidy", or "export" (raw CloudWatch export: timestamp,value; the metric named by the file)
    names: list[str]  # the columns as read: the header's names stripped and lower-cased
    column_names: list[str] | None  # given to the reader when they differ from the header line, or it has none
    header_line: int  # file line of the header (0: none, the first line is data)
    note: str | None = None  # how the layout was guessed, reported as a warning


def _file_bytes(path: Path) -> bytes:
    import pyarrow as pa

    with pa.input_stream(str(path), compression="detect") as stream:  # .csv.gz as pyarrow's reader takes it
        return bytes(stream.read())


def _head_bytes(source: Path | bytes, limit: int = 1 << 20) -> bytes:
    """The start of the file up to its first non-blank line's end (blank lines are skipped, as the reader
    skips them; their count is kept as leading newlines)."""
    import pyarrow as pa

    if isinstance(source, bytes):
        chunk = source[:limit]
    else:
        with pa.input_stream(str(source), compression="detect") as stream:
            chunk = bytes(stream.read(limit))
    lines = chunk.splitlines(keepends=True)
    for k, line in enumerate(lines):
        if line.strip(b" \t\r\n\xef\xbb\xbf\x00"):
            return b"".join(lines[:k + 1])
    return chunk


def _decode_line(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape").lstrip("\ufeff") if raw else ""


def _csv_layout(head: bytes, source: str) -> _CsvLayout:
    """Read the header (the first non-blank line) into a layout, or refuse it naming line and column."""
    import csv

    lines = head.splitlines()
    if not head.strip(b" \t\r\n\xef\xbb\xbf\x00"):
        raise InputError("empty file (no header line)", source=source)
    header_line = len(lines)
    text = _fix_undecodable(_decode_line(lines[-1]))
    raw = next(csv.reader([text]), [])
    names = [h.strip().lower() for h in raw]
    for name in TIDY_COLUMNS:
        if names.count(name) > 1:
            raise InputError(f"column {name!r} appears {names.count(name)} times in the header", source=source,
                             line=header_line, field=name)
    # Other repeated names are renamed (pyarrow needs distinct names; those columns are not read anyway).
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}.{seen[name] - 1}")
    override = unique if unique != raw else None
    has = set(names)
    if {"timestamp", "metric", "value"} <= has:
        return _CsvLayout("tidy", unique, override, header_line)
    if {"timestamp", "value"} <= has and not has & {"service", "instance_id", "region"}:
        return _CsvLayout("export", unique, override, header_line)
    if len(raw) == 2 and _looks_like_sample(raw) and header_line == 1:
        return _CsvLayout("export", ["timestamp", "value"], ["timestamp", "value"], 0,
                          "no header line: read as a raw CloudWatch export (timestamp,value)")
    missing = [c for c in ("timestamp", "metric", "value") if c not in has]
    shown = ", ".join(repr(h) for h in raw[:8]) + (", …" if len(raw) > 8 else "")
    raise InputError(f"missing column(s) {', '.join(missing)}: the header has {shown}; expected "
                     f"{', '.join(TIDY_COLUMNS)} (tidy frame) or timestamp,value (raw CloudWatch export), "
                     f"comma-separated", source=source, line=header_line, field=missing[0])


def _looks_like_sample(fields: list[str]) -> bool:
    """Whether a two-field first line is a (timestamp, value) sample rather than a header."""
    from datetime import datetime

    try:
        float(fields[1])
    except ValueError:
        return False
    stamp = fields[0].strip()
    try:
        float(stamp)
        return True
    except ValueError:
        pass
    try:
        datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def _fix_undecodable(text: str) -> str:
    """Bytes that were not UTF-8 (surrogate-escaped) as Windows-1252 (Latin-1 where it has no character)."""
    def one(match: re.Match[str]) -> str:
        byte = bytes([ord(match.group()) - 0xDC00])
        try:
            return byte.decode("cp1252")
        except UnicodeDecodeError:
            return byte.decode("latin-1")

    return re.sub("[\udc80-\udcff]", one, text)


def _as_utf8(raw: bytes, source: str, warnings: list[str]) -> bytes:
    """A CSV file's bytes as UTF-8: UTF-16 decoded by its byte-order mark; elsewhere every byte that is not
    part of UTF-8 read as Windows-1252, with the lines that had any reported (names may be misspelt)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            pass
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        pass
    out, lines = [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
            out.append(line)
        except UnicodeDecodeError:
            lines.append(number)
            out.append(_fix_undecodable(line.decode("utf-8", "surrogateescape")).encode("utf-8"))
    shown = ", ".join(map(str, lines[:_MAX_EXAMPLES])) + ("…" if len(lines) > _MAX_EXAMPLES else "")
    warnings.append(f"{source}: {len(lines)} line(s) not UTF-8, read as Windows-1252 (lines {shown})")
    return b"\n".join(out)


def _parse_csv(src: Path | bytes, layout: _CsvLayout, *, source: str, region: str | None, typed: bool
               ) -> tuple[TidyColumns, list[_BadRow]]:
    """One pyarrow read of the file (or of its repaired bytes) into columns, and the rows it skipped."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    bad_rows: list[_BadRow] = []

    def on_invalid(row: Any) -> str:
        if row.text.strip():  # a line of spaces is blank, not a row
            bad_rows.append(_BadRow(None, row.actual_columns, row.expected_columns, row.text[:200],
                                    "\n" in row.text or "\r" in row.text))
        return "skip"

    def read(column_types: dict[str, Any]) -> Any:
        wanted = [c for c in TIDY_COLUMNS if c in layout.names]
        # A malformed row that is not UTF-8 fails inside pyarrow before the handler is called (its text cannot
        # be decoded): pyarrow then reports the row as a parse error and prints the decoding error as
        # "Exception ignored". Caught here instead, it means: decode the file first.
        undecodable: list[BaseException] = []
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: undecodable.append(unraisable.exc_value)
        try:
            return pacsv.read_csv(
                str(src) if isinstance(src, Path) else pa.BufferReader(src),
                read_options=pacsv.ReadOptions(column_names=layout.column_names,
                                               skip_rows=layout.header_line if layout.column_names else 0),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(include_columns=wanted,
                                                     column_types={c: t for c, t in column_types.items()
                                                                   if c in wanted}))
        except pa.ArrowInvalid as exc:
            if any(isinstance(e, UnicodeDecodeError) for e in undecodable):
                raise _NotUtf8 from exc
            raise
        finally:
            sys.unraisablehook = hook

    def not_utf8(exc: Exception) -> bool:
        return isinstance(exc, UnicodeDecodeError) or "UTF8" in str(exc)

    if typed and layout.kind == "tidy":
        # A tidy CSV whose values all parse as numbers: typed by pyarrow and coded without pandas (about ten
        # times faster). A cell that does not parse sends the file to the tolerant path below, which reports it.
        try:
            table = read({"timestamp": pa.string(), "value": pa.float64(),
                          **{c: pa.dictionary(pa.int32(), pa.string()) for c in _TEXT_COLUMNS}})
            return _from_arrow(table, source=source, region=region), bad_rows
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if not_utf8(exc):
                raise _NotUtf8 from exc
            bad_rows.clear()
        except _NotUtf8:
            raise
    try:
        table = read({c: pa.string() for c in TIDY_COLUMNS})
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if not_utf8(exc):
            raise _NotUtf8 from exc
        raise
    df = table.to_pandas()
    # The header line again inside the file (CSV files concatenated): not a row, and reported as such.
    repeated = np.logical_and.reduce([df[c].str.strip().str.lower().eq(c).to_numpy() for c in ("timestamp", "value")])
    if repeated.any():
        bad_rows.extend(_BadRow(None, len(layout.names), len(layout.names), "", header=True)
                        for _ in range(int(repeated.sum())))
        df = df[~repeated].reset_index(drop=True)
    if layout.kind == "export":
        return from_cloudwatch_export(df, Path(source), region=region), bad_rows
    return from_pandas(df, source=source, region=region), bad_rows


@dataclass
class _RecordScan:
    kept: list[int]  # file line of every well-formed data row, in order
    bad: list[_BadRow]  # rows with the wrong number of fields
    stray: list[int]  # lines whose quote is not closed (each is blanked before reading again)


# Past this size, malformed rows are reported without their line numbers (a Python pass over every record
# costs about a second per 50 MB) unless a quote left open makes the pass necessary to recover later rows.
_SCAN_MAX_BYTES = 64 << 20


def _scan_records(data: bytes, header: list[str], header_line: int, *, swallowed: bool) -> _RecordScan | None:
    """Every record's first file line and field count, as pyarrow splits them (quotes may span lines). A
    record of the wrong width that spans lines is a quote left open: its first line is malformed, and the
    scan restarts on the next line."""
    import csv
    import io
    import itertools

    if len(data) > _SCAN_MAX_BYTES and not swallowed:
        return None
    width = len(header)
    lines = list(io.StringIO(data.decode("utf-8", "replace"), newline=""))
    kept: list[int] = []
    bad: list[_BadRow] = []
    stray: list[int] = []
    start = header_line  # index of the first data line
    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        while start < len(lines):
            reader = csv.reader(itertools.islice(lines, start, None))
            done = 0  # lines consumed before the current record
            restart = None
            try:
                for record in reader:
                    first = start + done + 1  # file line (1-based) of the record's first line
                    span = reader.line_num - done
                    done = reader.line_num
                    if not record or (len(record) == 1 and not record[0].strip()):
                        continue
                    if len(record) == width and [f.strip().lower() for f in record] == header:
                        bad.append(_BadRow(first, width, width, "", header=True))
                    elif len(record) == width:
                        kept.append(first)
                    elif span > 1:
                        restart = first
                        break
                    else:
                        bad.append(_BadRow(first, len(record), width, lines[first - 1].rstrip("\r\n")))
            except csv.Error:  # an unclosed quote at the end of the file
                restart = start + done + 1
            if restart is None:
                break
            stray.append(restart)
            bad.append(_BadRow(restart, 0, width, lines[restart - 1].rstrip("\r\n"), spans_lines=True))
            start = restart
    finally:
        csv.field_size_limit(limit)
    return _RecordScan(kept, bad, stray)


def _blank_lines(data: bytes, numbers: list[int]) -> bytes:
    """The file with the given lines emptied (line numbering kept: the reader skips empty lines)."""
    import io

    lines = list(io.BytesIO(data))
    for number in numbers:
        if number - 1 < len(lines):
            line = lines[number - 1]
            lines[number - 1] = line[len(line.rstrip(b"\r\n")):]
    return b"".join(lines)


def _csv_header(path: Path) -> list[str]:
    """The column names on a CSV file's first line, stripped and lower-cased ([] if it cannot be read as
    UTF-8 text): whether the typed path may take the file."""
    import csv

    try:
        head = _head_bytes(path).splitlines()[-1].decode("utf-8").lstrip("\ufeff")
    except (OSError, UnicodeDecodeError, IndexError):
        return []
    except Exception:  # pyarrow's stream errors
        return []
    return [h.strip().lower() for h in next(csv.reader([head]), [])]


def _nulls(array: Any) -> np.ndarray:
    """The null mask of an Arrow array, from its validity bitmap (to_numpy would import pandas)."""
    validity = array.buffers()[0]
    if validity is None or not array.null_count:
        return np.zeros(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return ~bits[array.offset:array.offset + len(array)].astype(bool)


def _numbers(array: Any, dtype: Any, fill: Any) -> np.ndarray:
    """A primitive Arrow array as numpy ``dtype``, ``fill`` at its nulls."""
    out = _buffer(array, array.type.to_pandas_dtype()).astype(dtype)
    if array.null_count:
        out[_nulls(array)] = fill
    return out


def _first_seen(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, int]:
    """Each code's rank by first appearance in ``codes`` (what pandas.factorize(sort=False) numbers; codes
    that never appear rank last), and how many codes appear."""
    first = np.full(n_codes, codes.size, dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)  # repeated indices: the last write (first row) wins
    rank = np.empty(n_codes, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(n_codes)
    return rank, int((first < codes.size).sum())


def _from_arrow(table: Any, *, source: str, region: str | None) -> TidyColumns:
    """A tidy table typed by pyarrow's CSV reader (timestamps as text) → columns: :func:`from_pandas`'s
    result without pandas (unless the timestamps need its mixed-format parsing).

    Names are coded per run of rows naming the same series (a tidy file holds long ones), in the order they
    first appear, as pandas.factorize numbers them; the per-row code columns are implied by the runs. The
    reader makes no nulls of text (an empty cell is the name ""): a null raises ArrowInvalid and sends the file
    to the tolerant path.
    """
    import pyarrow as pa

    n = table.num_rows
    warnings: list[str] = []
    text = table.column("timestamp")
    ts = None
    for typ in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):  # offsets or Z, then naive (UTC)
        try:
            parsed = text.cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        raw_ts = parsed.combine_chunks().view(pa.int64()) if parsed.num_chunks else pa.array([], pa.int64())
        ts = _numbers(raw_ts, np.float64, math.nan) / 1e9  # not to_numpy: that imports pandas for timestamps
        break
    if ts is None:  # mixed or unusual formats: pandas parses what it can, the rest is reported
        ts = _epoch_seconds(text.to_pandas(), warnings=warnings, source=source)
    values = np.concatenate([_numbers(c, np.float64, math.nan) for c in table.column("value").chunks]) \
        if table.column("value").num_chunks else np.zeros(0)
    raw: dict[str, np.ndarray] = {}  # dictionary index of every row
    names: dict[str, list[str]] = {}
    for col in _TEXT_COLUMNS:
        if col not in table.column_names:
            names[col] = ["unknown" if col != "region" else (region or "unknown")]
            if col not in ("region", "metric"):
                warnings.append(f"{source}: no {col!r} column; rows attributed to 'unknown'")
            continue
        column = table.column(col)
        if column.null_count:
            raise pa.ArrowInvalid("null names")
        column = column.unify_dictionaries()
        names[col] = [str(v) for v in column.chunk(0).dictionary.to_pylist()] if column.num_chunks else []
        raw[col] = np.concatenate([_buffer(c.indices, c.indices.type.to_pandas_dtype()) for c in column.chunks]) \
            if column.num_chunks else np.zeros(0, dtype=np.int32)
        names[col], remap = tidy_names(names[col])
        if remap is not None:  # " api" and "api" are one service; an empty name is "unknown"
            raw[col] = remap[raw[col]]

    def run_starts(columns: list[str]) -> np.ndarray:
        change = np.zeros(n, dtype=bool)
        change[:1] = True
        for c in columns:
            if c in raw:
                change[1:] |= raw[c][1:] != raw[c][:-1]
        return np.flatnonzero(change)

    def coded(col: str, starts: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Codes of the runs (numbered by first appearance) and the names in that order."""
        if col not in raw:
            return np.zeros(starts.size, dtype=np.int32), names[col]
        at = raw[col][starts].astype(np.int64)
        rank, seen = _first_seen(at, len(names[col]))
        ordered = sorted(range(len(names[col])), key=lambda k: int(rank[k]))[:seen]
        return rank[at].astype(np.int32), [names[col][k] for k in ordered]

    runs = run_starts(["service", "instance_id", "metric"])
    svc, services = coded("service", runs)
    inst_name, inst_names = coded("instance_id", runs)
    met, metrics = coded("metric", runs)
    # Instance ids are scoped by service: one code per (service, instance) pair, by first appearance.
    pairs, pair_of_run = distinct_inverse(svc.astype(np.int64) * max(len(inst_names), 1) + inst_name)
    rank, _ = _first_seen(pair_of_run, pairs.size)
    instances = [""] * pairs.size
    for p, r in zip(pairs.tolist(), rank.tolist(), strict=True):
        instances[r] = inst_names[p % max(len(inst_names), 1)]
    regions = coded("region", run_starts(["region"]))[1]
    cols = TidyColumns(ts, values, None, None, None, services, instances, metrics,
                       region=region or (regions[0] if regions else None), source=source, warnings=warnings,
                       runs=runs, run_codes=(svc, rank[pair_of_run].astype(np.int32), met))
    if len(regions) > 1:
        cols.warnings.append(several_regions_warning(source, regions, cols.region))
    return cols


# NAB / CloudWatch export file names → canonical metric names (checked in order).
_EXPORT_METRICS = (
    (re.compile(r"cpu_?utili[sz]ation|cpuutilization|request_latency_system_failure", re.I), "cpu_utilization"),
    (re.compile(r"network_?in", re.I), "network_in_bytes"),
    (re.compile(r"network_?out", re.I), "network_out_bytes"),
    (re.compile(r"disk_?write_?bytes", re.I), "disk_write_bytes"),
    (re.compile(r"disk_?read_?bytes", re.I), "disk_read_bytes"),
    (re.compile(r"mem(ory)?_?(used_?percent|utili[sz]ation)", re.I), "memory_utilization"),
    (re.compile(r"request_?count", re.I), "request_count"),
)


def export_identity(path: Path) -> tuple[str, str, str]:
    """(service, instance, metric) for a raw export file, from its name (e.g. ec2_cpu_utilization_24ae8d)."""
    stem = path.stem
    metric = next((name for pattern, name in _EXPORT_METRICS if pattern.search(stem)), None)
    service = stem.split("_", 1)[0].lower() or "unknown"
    if metric is None:
        # Unknown metric: profiled generically under the file's name, never dropped.
        return service, stem, re.sub(r"[^a-z0-9_]+", "_", stem.lower())
    instance = stem.rsplit("_", 1)[-1] if "_" in stem else stem
    return service, instance, metric


def from_cloudwatch_export(df: pd.DataFrame, path: Path, *, region: str | None = None) -> TidyColumns:
    import pandas as pd

    service, instance, metric = export_identity(path)
    frame = pd.DataFrame({"timestamp": df["timestamp"], "value": df["value"], "metric": metric,
                          "service": service, "instance_id": instance, "region": region or "unknown"})
    return from_pandas(frame, source=str(path), region=region)


def avoid_hugepage_compaction() -> None:
    """Stop numpy from madvising its big arrays into transparent huge pages.

    With the kernel's THP defrag set to ``madvise`` (common), every fault in such an array may compact memory
    synchronously: measured here, reading 30M rows spent 1.4 s of system time in it vs 0.3 s without (and the
    arrays are filled once, so huge pages buy nothing back). Same as NUMPY_MADVISE_HUGEPAGE=0.
    """
    setter = getattr(np._core.multiarray, "_set_madvise_hugepage", None)  # type: ignore[attr-defined]
    if setter is not None:
        setter(False)


def read_metrics(path: Path | str, *, region: str | None = None) -> TidyColumns:
    """Any supported source: Parquet/CSV tidy frame, a raw export CSV, or a folder of them (concatenated)."""
    avoid_hugepage_compaction()
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".csv", ".parquet", ".pq"}
                       and not p.is_dir())
        if not files:
            raise InputError("no .csv or .parquet metric files", source=str(path))
        # One unreadable or empty file does not cost the others: it is skipped and reported.
        parts, skipped = [], []
        for p in files:
            try:
                part = read_metrics(p, region=region)
            except InputError as exc:
                skipped.append(f"{exc} (file skipped)")
                continue
            if len(part):
                parts.append(part)
            else:
                skipped.append(f"{p}: no data rows (file skipped)")
        if not parts:
            raise InputError(f"no readable metric rows in {len(files)} file(s) ({'; '.join(skipped[:3])})",
                             source=str(path))
        cols = concat(parts, source=str(path))
        cols.warnings[:0] = skipped
        return cols
    if not path.exists():
        raise InputError("no such file", source=str(path))
    if path.suffix.lower() in {".parquet", ".pq"}:
        try:
            return read_parquet(path, region=region)
        except InputError:
            raise
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise InputError(f"unreadable Parquet: {exc}", source=str(path)) from exc
    return read_csv(path, region=region)


def concat(parts: Sequence[TidyColumns], *, source: str) -> TidyColumns:
    """Concatenate column sets, re-coding names into shared dictionaries."""
    def merged(attr_codes: str, attr_names: str, key: Any = None) -> tuple[np.ndarray, list[str]]:
        names: dict[Any, int] = {}
        out = []
        for part in parts:
            local = getattr(part, attr_names)
            keys = local if key is None else key(part)
            remap = np.array([names.setdefault(k, len(names)) for k in keys], dtype=np.int32)
            out.append(remap[getattr(part, attr_codes)] if len(remap) else getattr(part, attr_codes))
        ordered = sorted(names, key=names.__getitem__)
        return np.concatenate(out), [k if key is None else k[1] for k in ordered]

    svc, services = merged("service", "services")
    inst, instances = merged("instance", "instances",
                             key=lambda p: _instance_keys(p))
    met, metrics = merged("metric", "metrics")
    rows = np.concatenate([p.rows if p.rows is not None else np.arange(len(p)) + 1 for p in parts])
    region = next((p.region for p in parts if p.region and p.region != "unknown"), parts[0].region)
    return TidyColumns(np.concatenate([p.ts for p in parts]), np.concatenate([p.values for p in parts]), svc,
                       inst, met, services, instances, metrics, region=region, source=source, rows=rows,
                       warnings=[w for p in parts for w in p.warnings])


def _instance_keys(part: TidyColumns) -> list[tuple[str, str]]:
    # An instance code belongs to one service; find it from the first row using that code.
    first = np.full(len(part.instances), -1, dtype=np.int64)
    order = np.arange(len(part))[::-1]
    first[part.instance[order]] = order
    return [(part.services[part.service[i]] if i >= 0 else "unknown", name)
            for i, name in zip(first.tolist(), part.instances, strict=True)]


def _describe(cols: TidyColumns, mask: np.ndarray, what: str) -> str:
    """"N row(s) <what> in series a/b/c (rows 3, 7, …)" for the rows flagged by mask."""
    idx = np.flatnonzero(mask)
    series = sorted({f"{cols.services[cols.service[i]]}/{cols.instances[cols.instance[i]]}/"
                     f"{cols.metrics[cols.metric[i]]}" for i in idx[:200].tolist()})
    rows = cols.row_numbers(mask)[:_MAX_EXAMPLES].tolist()
    more = "…" if idx.size > _MAX_EXAMPLES else ""
    return (f"{cols.source}: {idx.size} row(s) {what} in series {', '.join(series[:_MAX_EXAMPLES])}"
            f"{' and others' if len(series) > _MAX_EXAMPLES else ''} (rows {', '.join(map(str, rows))}{more})")


# Timestamps outside [1900, 2300) are never a sample's (and the window's ISO dates could not be written).
EARLIEST_TIMESTAMP = -2208988800.0
LATEST_TIMESTAMP = 10413792000.0
# Without a window, a row is clock skew when it lies further from the rest than the rest's own span, and more
# than this: a gap of a day or less is a gap.
SKEW_MIN_SECONDS = 86400.0


def flag_skew(cols: TidyColumns, flag: Any, bad: np.ndarray | None,
              bounds: tuple[float, float] | None = None) -> None:
    """Flag rows dated far before or after the bulk of the others (see :func:`clean`).

    The bulk is the rows between the k-th earliest and the k-th latest (k: 1 % of the rows, at least 2 when
    there are enough): up to k rows on either side can be told apart from it. ``bounds``: the (finite) first
    and last timestamps when no row is flagged yet.
    """
    ts = cols.ts
    if bad is None and bounds is not None:
        good, (first, last) = ts, bounds
    else:
        good = ts[np.isfinite(ts) if bad is None else np.isfinite(ts) & ~bad]
        if not good.size:
            return
        first, last = float(good.min()), float(good.max())
    m = int(good.size)
    k = min(max(2, -(-m // 100)), (m - 1) // 2)
    if k < 1:
        return
    # More than k rows within a day of each end: neither end can be skew, and no partition is needed. The
    # usual case, found in the first few blocks (a partition costs ~0.8 s at 30M rows).
    late = early = 0
    for a in range(0, m, 1 << 20):
        block = good[a:a + (1 << 20)]
        if late <= k:
            late += int(np.count_nonzero(block >= last - SKEW_MIN_SECONDS))
        if early <= k:
            early += int(np.count_nonzero(block <= first + SKEW_MIN_SECONDS))
        if late > k and early > k:
            return
    part = np.partition(good, (k, m - 1 - k))
    low, high = float(part[k]), float(part[m - 1 - k])
    margin = max(high - low, SKEW_MIN_SECONDS)
    flag(ts > high + margin, "dated far after the rest of the input (clock skew) dropped")
    flag(ts < low - margin, "dated far before the rest of the input (clock skew) dropped")


def clean(cols: TidyColumns, *, window: tuple[float, float] | None = None, now: float | None = None,
          watermark: float | None = None, allow_empty: bool = False) -> TidyColumns:
    """Drop and report rows that cannot be good; keep everything else. See the module docstring.

    ``window`` (start, end) keeps rows with start ≤ ts < end; ``watermark`` drops late rows at or before an
    already folded window end; rows later than end (or ``now``) + tolerance are reported as clock skew.
    Nothing usable left raises :class:`InputError` unless ``allow_empty`` (a fold into earlier history).
    """
    warnings = list(cols.warnings)
    bad: np.ndarray | None = None  # allocated by the first flag that hits
    # Four reductions decide which row masks are needed at all (NaN propagates through min/max): a clean
    # input pays for no mask.
    n = len(cols)

    def bounds(column: np.ndarray) -> tuple[float, float]:
        return (float(column.min()), float(column.max())) if column.size else (math.inf, -math.inf)

    # Two columns (or two halves of the values when the timestamps are an implied grid) on two threads on big
    # inputs: the reductions release the GIL. NaN propagates through min/max.
    threads = 2 if n >= 1_000_000 else 1
    run_peaks: np.ndarray | None = None
    if cols.grid is not None:
        ts_lo, ts_hi = cols.ts_bounds()
        # Halves cut at a run boundary; with utilisation metrics present, each half also takes its runs'
        # peaks in the same visit (the check below needs them whenever any value exceeds 100).
        runs = cols.runs if cols.runs is not None and cols.runs.size and any(
            m in PERCENT_METRICS for m in cols.metrics) else None
        cut = n // 2 if runs is None else int(runs[np.searchsorted(runs, n // 2)]) if runs[-1] >= n // 2 else n
        parts = [(0, cut), (cut, n)] if 0 < cut < n else [(0, n)]

        def half_bounds(part: tuple[int, int]) -> tuple[float, float, np.ndarray | None]:
            a, b = part
            if runs is None or b == a:
                return (*bounds(cols.values[a:b]), None)
            starts = runs[(runs >= a) & (runs < b)] - a
            peaks = np.maximum.reduceat(cols.values[a:b], starts)
            # The half's maximum is its runs' (NaN propagates the same way): one pass fewer.
            return float(cols.values[a:b].min()), float(peaks.max()), peaks

        halves = parallel_map(half_bounds, parts, threads)
        v_lo, v_hi = min(h[0] for h in halves), max(h[1] for h in halves)
        if any(math.isnan(x) for h in halves for x in h[:2]):
            v_lo = v_hi = math.nan
        if runs is not None:
            run_peaks = np.concatenate([h[2] for h in halves if h[2] is not None])
    else:
        (ts_lo, ts_hi), (v_lo, v_hi) = parallel_map(bounds, [cols.ts, cols.values], threads) if n else \
            ((0.0, 0.0), (0.0, 0.0))
    ts_finite = math.isfinite(ts_lo) and math.isfinite(ts_hi)
    v_finite = math.isfinite(v_lo) and math.isfinite(v_hi)

    def flag(mask: np.ndarray, what: str) -> None:
        nonlocal bad
        if bad is not None:
            mask = mask & ~bad
        if mask.any():
            warnings.append(_describe(cols, mask, what))
            bad = mask.copy() if bad is None else bad | mask

    if not ts_finite:
        flag(~np.isfinite(cols.ts), "with an unparseable timestamp dropped")
    if not (ts_finite and ts_lo >= EARLIEST_TIMESTAMP and ts_hi < LATEST_TIMESTAMP):
        # Before 1900 or from 2300 on: a broken clock or a misread unit, and dates the output cannot write.
        flag((cols.ts < EARLIEST_TIMESTAMP) | (cols.ts >= LATEST_TIMESTAMP),
             "with a timestamp out of range (before 1900 or after 2300) dropped")
    if window is None and cols.grid is None and n >= 3 and not (ts_finite and ts_hi - ts_lo <= SKEW_MIN_SECONDS):
        # The window is the input's own span: one row dated years off would stretch it (and the decay, and the
        # arrays the profiler sizes by it) around a lone point. Rows far outside the span of the rest are skew.
        flag_skew(cols, flag, bad, (ts_lo, ts_hi) if ts_finite else None)
    if not v_finite:
        flag(np.isnan(cols.values), "with a missing or non-numeric value dropped")
        flag(np.isinf(cols.values), "with an infinite value dropped")
    if not (v_finite and -MAX_MAGNITUDE <= v_lo and v_hi <= MAX_MAGNITUDE):
        flag(np.abs(cols.values) > MAX_MAGNITUDE, f"with a magnitude beyond any metric (over {MAX_MAGNITUDE:g}) "
             f"dropped")
    metric_names = np.array(cols.metrics, dtype=object)
    if len(cols.metrics):
        non_negative = np.isin(metric_names, list(NON_NEGATIVE_METRICS))
        if non_negative.any() and not (v_finite and v_lo >= 0):
            flag(non_negative[cols.metric] & (cols.values < 0),
                 "with a negative value (impossible for this metric) dropped")
        percent = np.isin(metric_names, list(PERCENT_METRICS))
        if percent.any() and not (v_finite and v_hi <= 100):
            limit_of_metric = np.where(percent, 100.0, np.inf)
            suspect = True
            if cols.runs is not None and cols.runs.size and v_finite:
                # Per run of one series: a peak within the limit clears the whole run.
                peaks = run_peaks if run_peaks is not None and run_peaks.size == cols.runs.size else \
                    np.maximum.reduceat(cols.values, cols.runs)
                over = peaks > limit_of_metric[cols.codes_at(cols.runs)[2]]
                suspect = bool(over.any())
            if suspect:
                flag(cols.values > limit_of_metric[cols.metric], "with utilisation above 100 % dropped")
    impossible = None if bad is None else bad.copy()  # value-level rejections so far (timestamps/windows below are not the value's fault)
    if watermark is not None and not (ts_finite and ts_lo >= watermark):
        flag(cols.ts < watermark, "late (before the previous fingerprint's window end, already folded) dropped")
    limit = None
    if window is not None:
        if not (ts_finite and ts_lo >= window[0]):
            flag(cols.ts < window[0], "before the window start dropped")
        limit = window[1]
        if not (ts_finite and ts_hi < window[1]):
            flag((cols.ts >= window[1]) & (cols.ts <= window[1] + CLOCK_SKEW_TOLERANCE_SECONDS),
                 "at or after the window end dropped (next window)")
    elif now is not None:
        limit = now
    if limit is not None and not (ts_finite and ts_hi <= limit + CLOCK_SKEW_TOLERANCE_SECONDS):
        flag(cols.ts > limit + CLOCK_SKEW_TOLERANCE_SECONDS,
             "dated in the future (clock skew) dropped")
    unknown = sorted(set(cols.metrics) - set(CANONICAL_METRICS))
    if unknown:
        used = np.bincount(cols.metric if bad is None else cols.metric[~bad], minlength=len(cols.metrics)) > 0
        listed = [m for m in unknown if used[cols.metrics.index(m)]]
        if listed:
            warnings.append(unknown_metrics_warning(cols.source, listed))
    rejected = dict(cols.rejected)
    if impossible is not None:
        n_met = max(len(cols.metrics), 1)
        key = cols.service[impossible].astype(np.int64) * n_met + cols.metric[impossible]
        uniq, counts = np.unique(key, return_counts=True)
        for k, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            name = (cols.services[k // n_met], cols.metrics[k % n_met])
            rejected[name] = rejected.get(name, 0) + int(c)
    out = cols if bad is None else cols.take(~bad)
    out.warnings = warnings
    out.rejected = rejected
    if not len(out) and not allow_empty:
        raise InputError(("no usable metric rows" if n else "no data rows")
                         + (f" ({'; '.join(warnings[:3])})" if warnings else ""), source=cols.source)
    return out


def drop_duplicates(cols: TidyColumns, candidates: np.ndarray | None = None) -> TidyColumns:
    """Exact duplicates (same series and timestamp): keep the last row, report the others.

    ``candidates`` (a row mask) narrows the exact check to rows that may collide — the profiler knows them
    from its per-(series, step) counts, which keeps this off the hot path of clean inputs.
    """
    idx = np.arange(len(cols)) if candidates is None else np.flatnonzero(candidates)
    if idx.size < 2:
        return cols
    series = cols.instance[idx].astype(np.int64) * max(len(cols.metrics), 1) + cols.metric[idx]
    ts = cols.ts[idx]
    # Stable sort by (series, ts): within a run of equal keys the last row in input order comes last.
    order = np.lexsort((ts, series))
    same_as_next = (series[order][:-1] == series[order][1:]) & (ts[order][:-1] == ts[order][1:])
    exact = np.zeros(idx.size, dtype=bool)
    exact[order[:-1][same_as_next]] = True
    if not exact.any():
        return cols
    dup = np.zeros(len(cols), dtype=bool)
    dup[idx[exact]] = True
    message = _describe(cols, dup, "duplicating a timestamp of the same series dropped (last one kept)")
    out = cols.take(~dup)
    out.warnings = [*cols.warnings, message]
    return out
