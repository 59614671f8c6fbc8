"""Runs of dictionary-encoded text columns read from the Parquet pages themselves (parquet_runs).

Every writer setting must give either exactly the runs pyarrow's decoded column has, or None (pyarrow then
decodes the chunk): never other runs, never an exception.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shadowing.metrics import frame
from shadowing.metrics.parquet_runs import dictionary_runs


def _names(kind: str, n: int, rng: np.random.Generator) -> list[str | None]:
    if kind == "series":  # what tidy files hold: a name per series of 1440 rows
        return [f"i-{k // 1440:05d}" for k in range(n)]
    if kind == "uneven":  # runs of random lengths, names coming back
        lengths = rng.integers(1, 3000, n)
        codes = np.repeat(rng.integers(0, 40, lengths.size), lengths)[:n]
        return [f"name-{c}" for c in codes.tolist()]
    if kind == "short":  # runs of 1–9 rows: bit-packed literal groups between RLE runs
        lengths = rng.integers(1, 10, n)
        codes = np.repeat(rng.integers(0, 300, lengths.size), lengths)[:n]
        return [f"s{c}" for c in codes.tolist()]
    if kind == "random":  # no runs at all: not this module's case
        return [f"r{c}" for c in rng.integers(0, 70_000, n).tolist()]
    if kind == "one":
        return ["only"] * n
    if kind == "nulls":
        names: list[str | None] = [f"i-{k // 1000}" for k in range(n)]
        names[n // 3] = None
        return names
    if kind == "unicode":
        return [f"sérvice-{k // 5000}-ü" for k in range(n)]
    raise AssertionError(kind)


def _expected(path: Path, i: int, column: str, pos: int) -> tuple[list[int], list[str]]:
    """Run starts and names from pyarrow's decoded column (consecutive equal names merged)."""
    source = frame._ParquetSource(path, read_dictionary=[column])
    try:
        chunks = frame._local_runs(source.read_row_group(i, [column]).column(column), pos)
    finally:
        source.close()
    starts = np.concatenate([c[0] for c in chunks]).tolist()
    names = [c[1][k] for c in chunks for k in c[2].tolist()]
    keep = [0] + [k for k in range(1, len(names)) if names[k] != names[k - 1]]
    return [starts[k] for k in keep], [names[k] for k in keep]


def _check_file(path: Path, column: str = "name") -> list[bool]:
    """For every row group: the runs equal pyarrow's, or None. Returns which row groups were taken."""
    source = frame._ParquetSource(path)
    meta = source.metadata
    j = source.names.index(column)
    taken = []
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        for i in range(meta.num_row_groups):
            got = dictionary_runs(fd, meta.row_group(i).column(j), meta.schema.column(j), pos)
            if got is not None:
                starts, names, index = got
                assert (starts.tolist(), [names[k] for k in index.tolist()]) == _expected(path, i, column, pos)
            taken.append(got is not None)
            pos += meta.row_group(i).num_rows
    finally:
        os.close(fd)
        source.close()
    return taken


def _write(path: Path, names: list[str | None], *, dictionary_array: bool = True, **options: Any) -> Path:
    column = pa.array(names, type=pa.string())
    table = pa.table({"name": column.dictionary_encode() if dictionary_array else column,
                      "value": np.arange(len(names), dtype=np.float64)})
    pq.write_table(table, path, **options)
    return path


@pytest.mark.parametrize("compression", ["NONE", "SNAPPY", "GZIP", "ZSTD", "BROTLI"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
@pytest.mark.parametrize("kind", ["series", "uneven", "short", "one", "unicode"])
def test_runs_equal_pyarrows_for_every_codec_and_page_version(tmp_path: Path, compression: str,
                                                              page_version: str, kind: str) -> None:
    names = _names(kind, 50_000, np.random.default_rng(len(kind)))
    path = _write(tmp_path / "t.parquet", names, compression=compression, data_page_version=page_version,
                  row_group_size=17_000, data_page_size=2_000)  # several row groups, many small pages
    taken = _check_file(path)
    if kind != "short":
        assert all(taken)  # the run columns this module is for are read from the pages


@pytest.mark.parametrize("kind", ["random", "nulls", "series"])
@pytest.mark.parametrize("dictionary_array", [True, False])
def test_other_columns_are_left_to_pyarrow_or_match(tmp_path: Path, kind: str, dictionary_array: bool) -> None:
    names = _names(kind, 40_000, np.random.default_rng(1))
    path = _write(tmp_path / "t.parquet", names, dictionary_array=dictionary_array, row_group_size=15_000)
    taken = _check_file(path)
    if kind == "random":
        assert not any(taken)  # no runs: pyarrow decodes it
    if kind == "nulls":
        assert not taken[0] and all(taken[1:])  # the chunk with a null goes to pyarrow


def test_a_whole_category_list_in_every_row_group(tmp_path: Path) -> None:
    """Writers of categoricals store every category in every row group's dictionary: equal-length names
    (read at a fixed stride) and names of mixed lengths."""
    for width in ("fixed", "mixed"):
        categories = [f"i-{k:017d}" if width == "fixed" else f"i-{k}" for k in range(5000)]
        codes = np.repeat(np.arange(0, 5000, 97), 700)
        column = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(categories))
        path = tmp_path / f"{width}.parquet"
        pq.write_table(pa.table({"name": column, "value": np.zeros(codes.size)}), path, row_group_size=9_000)
        assert all(_check_file(path))


def test_plain_encoded_and_dictionary_fallback_chunks_go_to_pyarrow(tmp_path: Path) -> None:
    names = _names("series", 30_000, np.random.default_rng(2))
    assert not any(_check_file(_write(tmp_path / "plain.parquet", names, use_dictionary=False)))
    # A dictionary page limit this small makes the writer fall back to PLAIN pages inside the chunk.
    many = [f"n{k // 3}" for k in range(30_000)]
    _check_file(_write(tmp_path / "fallback.parquet", many, dictionary_pagesize_limit=64))


def test_corrupt_pages_never_raise(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.parquet", _names("uneven", 20_000, np.random.default_rng(3)),
                  data_page_size=1_000)
    source = frame._ParquetSource(path)
    chunk, column = source.metadata.row_group(0).column(0), source.metadata.schema.column(0)
    source.close()
    start, size = chunk.dictionary_page_offset, chunk.total_compressed_size
    original = path.read_bytes()
    rng = np.random.default_rng(4)
    for _ in range(200):
        damaged = bytearray(original)
        for at in rng.integers(start, start + size, 3).tolist():
            damaged[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(damaged))
        fd = os.open(path, os.O_RDONLY)
        try:
            got = dictionary_runs(fd, chunk, column, 0)  # None, or runs: never an exception
        finally:
            os.close(fd)
        if got is not None:
            starts, names, index = got
            assert starts.size == index.size and int(index.max()) < len(names)


@pytest.mark.parametrize("kind", ["series", "uneven", "nulls", "random"])
def test_the_reader_reads_the_same_columns_with_page_runs_or_without(tmp_path: Path, kind: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """read_parquet through page runs (every row group, however small) = read_parquet through pyarrow."""
    n = 30_000
    rng = np.random.default_rng(5)
    instance = _names(kind, n, rng)
    table = pa.table({
        "timestamp": pa.array(1_741_132_800_000 + 60_000 * (np.arange(n) % 1440), type=pa.timestamp("ms", tz="UTC")),
        "region": pa.array(["us-east-1"] * n).dictionary_encode(),
        "service": pa.array([f"svc-{k // 9000}" for k in range(n)]).dictionary_encode(),
        "instance_id": pa.array(instance, type=pa.string()).dictionary_encode(),
        "metric": pa.array(["cpu_utilization", "network_in_bytes"] * (n // 2)).dictionary_encode(),
        "value": rng.uniform(1, 90, n),
    })
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=7_000)

    def read(page_runs: bool) -> frame.TidyColumns:
        monkeypatch.setattr(frame, "_PAGE_RUNS_MIN_ROWS", 0 if page_runs else 10**12)
        return frame.read_metrics(path)

    got, want = read(True), read(False)
    for name in ("services", "instances", "metrics", "region"):
        assert getattr(got, name) == getattr(want, name)
    for name in ("service", "instance", "metric", "values", "ts"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
