"""Unusual but valid inputs for the tidy-metrics readers and the streamed fingerprint build.

Every Parquet or CSV file here must read, through the fast paths (implied timestamps, text runs from the
pages, the pyarrow-typed CSV), to the rows a plain pandas reading of the same file gives once coded the same
way (:func:`frame.from_pandas`); and ``build_file`` must give the fingerprint ``build(read_metrics())`` gives:
instances and pooled metric entries identical once serialised, aggregates equal up to their summation order.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shadowing.capacity.fingerprint import build, build_file
from shadowing.metrics import frame
from tests.support.fingerprints import assert_same_fingerprint, streamed_or_none

LENGTH = 240  # samples per series
STEP_S = 60
START_S = 1_741_132_800  # a Wednesday, 00:00 UTC
TEXT = ("region", "service", "instance_id", "metric")
PAGE_CODECS = ("NONE", "SNAPPY", "GZIP", "ZSTD", "BROTLI")  # what parquet_runs decompresses itself


@pytest.fixture(autouse=True)
def _fast_paths_on_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Implied timestamps and page runs on files of tens of thousands of rows (tests that need the real
    64K-row threshold restore it)."""
    monkeypatch.setattr(frame, "_IMPLIED_TS_MIN_ROWS", 0)
    monkeypatch.setattr(frame, "_PAGE_RUNS_MIN_ROWS", 0)


def _grid(unit: str = "s") -> np.ndarray:
    return (START_S + STEP_S * np.arange(LENGTH, dtype=np.int64)) * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]


def _columns(series: int = 120, *, seed: int = 0, **override: Any) -> dict[str, Any]:
    """A tidy table laid out series after series (5 services, 2 metrics an instance); ``override`` replaces
    columns (None drops one)."""
    rng = np.random.default_rng(seed)
    n = series * LENGTH
    metric = np.repeat(np.array(["cpu_utilization", "network_in_bytes"])[np.arange(series) % 2], LENGTH)
    values = rng.uniform(1, 90, n)
    values[metric == "network_in_bytes"] *= 1e5
    out: dict[str, Any] = {
        "timestamp": pa.array(np.tile(_grid("ms"), series), pa.timestamp("ms", tz="UTC")),
        "region": pa.array(["us-east-1"] * n),
        "service": pa.array(np.repeat([f"svc-{k % 5}" for k in range(series)], LENGTH)),
        "instance_id": pa.array(np.repeat([f"i-{k // 2:05d}" for k in range(series)], LENGTH)),
        "metric": pa.array(metric),
        "value": pa.array(values),
    }
    out.update(override)
    return {k: v for k, v in out.items() if v is not None}


def _write(path: Path, columns: dict[str, Any], **options: Any) -> Path:
    options.setdefault("row_group_size", 7 * LENGTH + 13)  # row groups cutting series in odd places
    pq.write_table(pa.table(columns), path, **options)
    return path


def _names(cols: frame.TidyColumns) -> dict[str, np.ndarray]:
    return {"service": np.asarray(cols.services, dtype=object)[cols.service],
            "instance": np.asarray(cols.instances, dtype=object)[cols.instance],
            "metric": np.asarray(cols.metrics, dtype=object)[cols.metric]}


def _assert_same_rows(got: frame.TidyColumns, want: frame.TidyColumns) -> None:
    """Same timestamps, values (NaN where NaN) and names row by row, and the same region."""
    assert len(got) == len(want)
    np.testing.assert_array_equal(got.ts, want.ts, err_msg="ts")
    np.testing.assert_array_equal(got.values, want.values, err_msg="values")
    got_names, want_names = _names(got), _names(want)
    for column, names in want_names.items():
        mismatch = np.flatnonzero(got_names[column] != names)
        assert mismatch.size == 0, (column, got_names[column][mismatch[:3]], names[mismatch[:3]])
    assert got.region == want.region


def _pandas_parquet(path: Path) -> frame.TidyColumns:
    return frame.from_pandas(pd.read_parquet(path), source=str(path))


def _check_parquet(path: Path, *, streamed: bool | None = True, grid: bool | None = True) -> frame.TidyColumns:
    """The reader against pandas, and build_file against build(read_metrics()). ``streamed``/``grid``: whether
    the streamed build / the implied timestamps must be taken (None: either)."""
    got = frame.read_metrics(path)
    if grid is not None:
        assert (got.grid is not None) == grid
    _assert_same_rows(got, _pandas_parquet(path))
    whole = build(frame.read_metrics(path))
    fast = streamed_or_none(path)
    if streamed is not None:
        assert (fast is not None) == streamed
    if fast is not None:
        assert_same_fingerprint(fast, whole, key_order=True)
    assert_same_fingerprint(build_file(path, stream_min_rows=0), whole, key_order=True)
    return got


@pytest.fixture
def taken_page_runs(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each page-run attempt of the reader was taken (runs) or left to pyarrow (None)."""
    taken: list[bool] = []
    original = frame.dictionary_runs

    def spy(*args: Any) -> Any:
        runs = original(*args)
        taken.append(runs is not None)
        return runs

    monkeypatch.setattr(frame, "dictionary_runs", spy)
    return taken


# --- Parquet writer settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [*PAGE_CODECS, "LZ4"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_every_codec_and_page_version_with_many_small_pages(tmp_path: Path, compression: str, page_version: str,
                                                            taken_page_runs: list[bool]) -> None:
    path = _write(tmp_path / "t.parquet", _columns(), compression=compression, data_page_version=page_version,
                  data_page_size=1_000)
    _check_parquet(path)
    assert taken_page_runs
    assert all(taken_page_runs) == (compression in PAGE_CODECS)  # LZ4's framing: pyarrow decodes it


@pytest.mark.parametrize("options", [
    {"use_dictionary": False},
    {"write_statistics": False, "row_group_size": 4 * LENGTH},  # no footer statistics: no constant columns
    {"version": "1.0"},  # PLAIN_DICTIONARY pages
    {"version": "2.4", "data_page_version": "2.0"},
    {"write_page_checksum": True, "write_page_index": True},  # CRCs in the page headers
    {"store_schema": False},
    {"use_dictionary": list(TEXT), "column_encoding": {"value": "BYTE_STREAM_SPLIT",
                                                       "timestamp": "DELTA_BINARY_PACKED"}},
    {"use_deprecated_int96_timestamps": True},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())[:60])
def test_other_writer_settings(tmp_path: Path, options: dict[str, Any]) -> None:
    _check_parquet(_write(tmp_path / "t.parquet", _columns(), **options))


def test_dictionary_falling_back_to_plain_pages_mid_chunk(tmp_path: Path, taken_page_runs: list[bool]) -> None:
    """Many distinct names (one per series) and a tiny dictionary page limit: the writer switches to PLAIN
    pages inside the chunk, which the page reader must leave to pyarrow."""
    series = 200
    columns = _columns(series, instance_id=pa.array(np.repeat([f"i-{k:06d}-{'x' * 20}" for k in range(series)],
                                                              LENGTH)))
    path = _write(tmp_path / "t.parquet", columns, dictionary_pagesize_limit=256, data_page_size=2_000,
                  row_group_size=20 * LENGTH)
    _check_parquet(path)
    assert True in taken_page_runs and False in taken_page_runs  # the instance ids' chunks fell back


# --- column types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "America/New_York"])
def test_timestamp_units_and_zones(tmp_path: Path, unit: str, tz: str | None) -> None:
    series = 60
    stamps = pa.array(np.tile(_grid(unit), series), pa.timestamp(unit, tz=tz))
    got = _check_parquet(_write(tmp_path / "t.parquet", _columns(series, timestamp=stamps)))
    np.testing.assert_array_equal(got.ts, np.tile(_grid("s"), series).astype(np.float64))


def _retyped(typ: pa.DataType, columns: tuple[str, ...] = ("service", "instance_id", "metric")) -> dict[str, Any]:
    base = _columns()
    return _columns(**{c: pa.array(base[c].to_pylist(), typ) for c in columns})


@pytest.mark.parametrize("kind", ["large_string", "string_view", "dictionary_int8", "dictionary_large_string",
                                  "binary", "integer_ids", "not_null_fields"])
def test_text_column_types(tmp_path: Path, kind: str) -> None:
    if kind == "large_string":
        columns = _retyped(pa.large_string())
    elif kind == "string_view":
        columns = _retyped(pa.string_view())
    elif kind == "dictionary_int8":
        columns = _columns(**{c: v.dictionary_encode().cast(pa.dictionary(pa.int8(), pa.string()))
                              for c, v in _columns().items() if c in TEXT})
    elif kind == "dictionary_large_string":
        columns = {c: v.dictionary_encode() if c in TEXT else v
                   for c, v in _retyped(pa.large_string(), TEXT).items()}
    elif kind == "binary":  # BYTE_ARRAY without the UTF-8 annotation (what some writers produce)
        columns = _retyped(pa.binary())
    elif kind == "integer_ids":
        columns = _columns(instance_id=pa.array(np.repeat(np.arange(120) // 2, LENGTH)))
    else:
        table = pa.table(_columns())
        table = table.cast(pa.schema([f.with_nullable(False) for f in table.schema]))
        columns = dict(zip(table.column_names, table.columns, strict=True))
    _check_parquet(_write(tmp_path / "t.parquet", columns))


def test_binary_names_read_the_same_from_pages_or_from_pyarrow(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: pyarrow's path named binary text "b'svc-0'" where the page runs (and pandas) say svc-0."""
    path = _write(tmp_path / "t.parquet", _retyped(pa.binary()))
    monkeypatch.setattr(frame, "_PAGE_RUNS_MIN_ROWS", 10**12)
    via_pyarrow = frame.read_metrics(path)
    assert via_pyarrow.services == [f"svc-{k}" for k in range(5)]
    _assert_same_rows(via_pyarrow, _pandas_parquet(path))
    assert_same_fingerprint(build_file(path, stream_min_rows=0), build(via_pyarrow), key_order=True)


def test_a_categorical_with_sorted_unused_categories_is_coded_by_first_appearance(tmp_path: Path) -> None:
    """Regression: pandas categoricals store their categories sorted (here in reverse of the rows' order, plus
    an unused one); the reader coded names in dictionary order, the streamed build by first appearance, so
    the fingerprint's instances came out in another order and pooled sums differed in their last bits."""
    df = pa.table(_columns(instance_id=pa.array(np.repeat([f"i-{(120 - k) // 2:05d}" for k in range(120)],
                                                          LENGTH)))).to_pandas()
    for c in ("service", "instance_id", "metric"):
        df[c] = pd.Categorical(df[c], categories=[*sorted(set(df[c])), "zz-unused"])
    path = tmp_path / "categorical.parquet"
    df.to_parquet(path, row_group_size=5_000)
    got = _check_parquet(path)
    want = _pandas_parquet(path)
    assert got.services == want.services and got.metrics == want.metrics  # first appearance, as pandas codes
    assert got.instances[:2] == ["i-00060", "i-00057"]  # svc-0's first two in the file (sorted: i-00000 first)


@pytest.mark.parametrize("kind", ["float32", "float16", "int64", "int32", "dictionary_float", "numeric_text"])
def test_value_types_other_than_float64_are_read_the_general_way(tmp_path: Path, kind: str) -> None:
    values = np.round(np.random.default_rng(1).uniform(1, 90, 120 * LENGTH), 2)
    column = {"float32": lambda: pa.array(values.astype(np.float32)),
              "float16": lambda: pa.array(values.astype(np.float16)),
              "int64": lambda: pa.array(values.astype(np.int64)),
              "int32": lambda: pa.array(values.astype(np.int32)),
              "dictionary_float": lambda: pa.array(np.round(values)).dictionary_encode(),
              "numeric_text": lambda: pa.array([repr(v) for v in values.tolist()])}[kind]()
    _check_parquet(_write(tmp_path / "t.parquet", _columns(value=column)),
                   streamed=None if kind == "dictionary_float" else False)


def test_decimal_values_are_the_nearest_doubles(tmp_path: Path) -> None:
    """Regression: Arrow's decimal → float64 cast is off by one ulp for values like 30.06."""
    values = np.round(np.random.default_rng(2).uniform(1, 90, 120 * LENGTH), 2)
    decimals = pa.array([Decimal(f"{v:.2f}") for v in values.tolist()], pa.decimal128(10, 2))
    got = _check_parquet(_write(tmp_path / "t.parquet", _columns(value=decimals)), streamed=False)
    np.testing.assert_array_equal(got.values, [float(f"{v:.2f}") for v in values.tolist()])


def test_a_non_numeric_text_value_drops_its_row_not_the_file(tmp_path: Path) -> None:
    """Regression: one unparseable text value made the whole Parquet file "unreadable"; it is dropped and
    reported like any missing value."""
    values = [repr(v) for v in np.random.default_rng(3).uniform(1, 90, 120 * LENGTH).tolist()]
    values[1234] = "n/a"
    path = _write(tmp_path / "t.parquet", _columns(value=pa.array(values)))
    got = _check_parquet(path, streamed=False)
    assert math.isnan(got.values[1234])
    cleaned = frame.clean(got)
    assert len(cleaned) == len(got) - 1
    assert any("missing or non-numeric value" in w for w in cleaned.warnings)


def test_null_values(tmp_path: Path) -> None:
    values = np.random.default_rng(4).uniform(1, 90, 120 * LENGTH)
    column = pa.array(values, mask=np.arange(values.size) % 9_999 == 5)
    _check_parquet(_write(tmp_path / "t.parquet", _columns(value=column)), streamed=False)


# --- column layouts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["reordered", "no_region", "no_service", "extra_flat_columns"])
def test_column_layouts(tmp_path: Path, layout: str) -> None:
    columns = _columns()
    if layout == "reordered":
        columns = dict(reversed(list(columns.items())))
    elif layout == "no_region":
        columns.pop("region")
    elif layout == "no_service":
        columns.pop("service")
    else:
        n = 120 * LENGTH
        columns = {"unit": pa.array(["Percent"] * n), **columns, "row": pa.array(np.arange(n))}
    _check_parquet(_write(tmp_path / "t.parquet", columns))


NESTED = {
    "struct": lambda n: pa.array([{"namespace": "AWS/EC2", "stat": "Average"}] * n),
    "map": lambda n: pa.array([[("InstanceType", "m5.large")]] * n, pa.map_(pa.string(), pa.string())),
    "list": lambda n: pa.array([["a", "b"]] * n),
}


@pytest.mark.parametrize("nested", list(NESTED))
def test_a_nested_column_before_the_tidy_ones_at_the_real_page_threshold(tmp_path: Path, nested: str,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        taken_page_runs: list[bool]) -> None:
    """Regression: page runs picked the column chunk by the Arrow field's position, but chunks are numbered by
    Parquet leaf; a struct or map column (two leaves) before the tidy columns made services read as regions
    and metrics as instance ids."""
    monkeypatch.setattr(frame, "_PAGE_RUNS_MIN_ROWS", 1 << 16)
    series = 300
    columns = {"dimensions": NESTED[nested](series * LENGTH), **_columns(series)}
    _check_parquet(_write(tmp_path / "t.parquet", columns, row_group_size=1 << 16))
    assert taken_page_runs and all(taken_page_runs)


@pytest.mark.parametrize("shifted", [False, True])
def test_a_nested_column_before_the_timestamps_of_aligned_row_groups(tmp_path: Path, shifted: bool) -> None:
    """Regression: timestamp chunks already checked were recognised by the bytes of the wrong column chunk (a
    constant struct's), so a shifted timestamp in a later aligned row group was taken for the grid."""
    series = 40
    columns = _columns(series)
    stamps = np.tile(_grid("ms"), series)
    if shifted:
        stamps[4 * LENGTH * 7 + 5] += 1_000
    columns = {"tags": NESTED["struct"](series * LENGTH), **_columns(series, timestamp=pa.array(
        stamps, pa.timestamp("ms", tz="UTC")))}
    path = _write(tmp_path / "t.parquet", columns, row_group_size=4 * LENGTH)
    got = _check_parquet(path, streamed=not shifted, grid=not shifted)
    np.testing.assert_array_equal(got.ts, stamps / 1000.0)


# --- row groups and series ------------------------------------------------------------------------------------


@pytest.mark.parametrize("row_group_size", [LENGTH + 1, 2 * LENGTH - 1, 2 * LENGTH + 1, 65_535, 65_536, 65_537])
def test_row_groups_around_the_page_run_threshold_and_series_boundaries(tmp_path: Path, row_group_size: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame, "_PAGE_RUNS_MIN_ROWS", 1 << 16)
    _check_parquet(_write(tmp_path / "t.parquet", _columns(300), row_group_size=row_group_size))


def test_a_first_row_group_shorter_than_a_series_gives_no_grid_but_the_same_rows(tmp_path: Path) -> None:
    _check_parquet(_write(tmp_path / "t.parquet", _columns(), row_group_size=LENGTH - 1), streamed=False, grid=False)


def test_row_groups_of_varying_sizes_and_an_empty_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame, "_PAGE_RUNS_MIN_ROWS", 1 << 16)
    table = pa.table(_columns(350))
    path = tmp_path / "t.parquet"
    with pq.ParquetWriter(path, table.schema) as writer:
        at = 0
        for size in (3 * LENGTH + 7, 1 << 16, 0, 100, 70_000):
            writer.write_table(table.slice(at, size))
            at += size
        writer.write_table(table.slice(at))
    assert pq.ParquetFile(path).metadata.num_row_groups >= 5
    _check_parquet(path)


@pytest.mark.parametrize("where", ["whole_series", "inside_a_series"])
def test_null_names(tmp_path: Path, where: str) -> None:
    """Nulls are "unknown": for a whole series the streamed build takes them (regression: the reader coded
    "unknown" after the row group's other names, reordering the fingerprint); inside a series the name changes
    mid-series and the file is read whole."""
    n = 120 * LENGTH
    names = np.repeat([f"i-{k // 2:05d}" for k in range(120)], LENGTH).astype(object)
    if where == "whole_series":
        names[7 * LENGTH:8 * LENGTH] = None
    else:
        names[[3, 5_000, n - 1]] = None
    path = _write(tmp_path / "t.parquet", _columns(instance_id=pa.array(names, pa.string())), row_group_size=n)
    got = _check_parquet(path, streamed=where == "whole_series")
    assert "unknown" in got.instances


def test_a_shared_grid_that_is_not_on_one_step_is_read_whole(tmp_path: Path) -> None:
    grid = (START_S + STEP_S * np.concatenate([np.arange(100), np.arange(130, 130 + LENGTH - 100)])) * 1000
    stamps = pa.array(np.tile(grid, 120), pa.timestamp("ms", tz="UTC"))
    _check_parquet(_write(tmp_path / "t.parquet", _columns(timestamp=stamps)), streamed=False)


# --- CSV ------------------------------------------------------------------------------------------------------

HEADER = ["timestamp", "region", "service", "instance_id", "metric", "value"]


def _csv_rows(series: int = 12, length: int = 60) -> list[list[str]]:
    rng = np.random.default_rng(5)
    rows = []
    for k in range(series):
        for m in range(length):
            rows.append([f"2025-03-05T{m // 60:02d}:{m % 60:02d}:00Z", "us-east-1", f"svc-{k % 3}", f"i-{k // 2}",
                         ("cpu_utilization", "network_in_bytes")[k % 2], repr(float(rng.uniform(1, 90)))])
    return rows


def _stamp(rows: list[list[str]], fn: Any) -> list[list[str]]:
    return [[fn(i, r[0]), *r[1:]] for i, r in enumerate(rows)]


def _csv_case(case: str) -> tuple[bytes, bool]:
    """(file bytes, whether the pyarrow-typed path must take it)."""
    rows, header, newline, quote = _csv_rows(), list(HEADER), "\n", False
    prefix, suffix, typed = "", "", True
    if case == "crlf":
        newline = "\r\n"
    elif case == "quoted":
        quote = True
    elif case == "bom":
        prefix = "\ufeff"
    elif case == "trailing_blank_lines":
        suffix = "\n\n"
    elif case == "no_final_newline":
        suffix = None  # type: ignore[assignment]
    elif case == "offsets":
        rows = _stamp(rows, lambda i, t: t.replace("Z", "+02:00"))
    elif case == "offsets_without_colon":
        rows = _stamp(rows, lambda i, t: t.replace("Z", "-0530"))
    elif case == "naive_with_space":
        rows = _stamp(rows, lambda i, t: t.rstrip("Z").replace("T", " "))
    elif case == "fractional_seconds":
        rows = _stamp(rows, lambda i, t: t.replace(":00Z", ":00.250Z"))
    elif case == "mixed_formats":
        rows = _stamp(rows, lambda i, t: (t, t.rstrip("Z"), t.replace("Z", "+01:00"), t[:10])[i % 4])
    elif case == "epoch_seconds":
        rows = _stamp(rows, lambda i, t: str(START_S + STEP_S * (i % 60)))
    elif case == "epoch_seconds_fractional":
        rows = _stamp(rows, lambda i, t: f"{START_S + STEP_S * (i % 60)}.5")
    elif case == "reordered":
        order = [5, 4, 0, 3, 2, 1]
        header, rows = [header[k] for k in order], [[r[k] for k in order] for r in rows]
    elif case == "no_region":
        header, rows = header[:1] + header[2:], [r[:1] + r[2:] for r in rows]
    elif case == "extra_quoted_columns":
        header, rows, quote = [*header, "note"], [[*r, "a, \"b\"\nc"] for r in rows], True
    elif case == "unicode_and_commas_in_names":
        rows, quote = [[r[0], r[1], f"sérvice,{r[2]}", f"i-ß{r[3]}", *r[4:]] for r in rows], True
    elif case == "integer_values":
        rows = [[*r[:5], str(i % 90)] for i, r in enumerate(rows)]
    else:
        raise AssertionError(case)

    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if quote else v

    text = newline.join(",".join(cell(v) for v in line) for line in [header, *rows])
    text = prefix + text + (newline + suffix if suffix is not None else "")
    return text.encode("utf-8"), typed


CSV_CASES = ["crlf", "quoted", "bom", "trailing_blank_lines", "no_final_newline", "offsets",
             "offsets_without_colon", "naive_with_space", "fractional_seconds", "mixed_formats", "epoch_seconds",
             "epoch_seconds_fractional", "reordered", "no_region", "extra_quoted_columns",
             "unicode_and_commas_in_names", "integer_values"]


@pytest.mark.parametrize("case", CSV_CASES)
def test_csv_variants_read_as_pandas_reads_them(tmp_path: Path, case: str) -> None:
    data, typed = _csv_case(case)
    path = tmp_path / f"{case}.csv"
    path.write_bytes(data)
    got = frame.read_metrics(path)
    assert (got.runs is not None) == typed  # the pyarrow-typed path (runs) took it
    want = frame.from_pandas(pd.read_csv(path), source=str(path))
    want.rows = np.arange(len(want)) + 2  # messages name file lines (the header is line 1)
    _assert_same_rows(got, want)
    assert np.isfinite(got.ts).all()
    fp_got, fp_want = build(got), build(want)
    for fp in (fp_got, fp_want):
        fp.pop("generated_at")
    assert fp_got == fp_want


def test_epoch_seconds_in_a_csv_are_timestamps(tmp_path: Path) -> None:
    """Regression: a CSV's timestamp column is read as text, and epoch seconds as text parsed as no date at
    all: every row was dropped as "unparseable" (pandas, and the Parquet reader, read them as seconds)."""
    path = tmp_path / "epoch.csv"
    path.write_bytes(_csv_case("epoch_seconds")[0])
    cleaned = frame.clean(frame.read_metrics(path))
    assert len(cleaned) == 12 * 60 and not cleaned.warnings
    assert float(cleaned.ts.min()) == START_S


def test_a_big_csv_read_in_several_blocks_with_an_extra_column_changing_type(tmp_path: Path) -> None:
    """Several of pyarrow's read blocks (dictionaries unified across them) and an extra column that looks
    numeric in the first block only."""
    rows = _csv_rows(series=40, length=1_440)
    lines = [",".join([*HEADER, "note"])]
    lines += [",".join([*r, "7" if i < len(rows) - 3 else "text"]) for i, r in enumerate(rows)]
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 3 << 20
    got = frame.read_metrics(path)
    assert got.runs is not None
    _assert_same_rows(got, frame.from_pandas(pd.read_csv(path), source=str(path)))
