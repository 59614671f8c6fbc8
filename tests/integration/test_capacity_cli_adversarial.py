"""``python -m shadowing fingerprint`` against bad input, end to end through the command line.

What a user sees: exit 0 with warnings on stderr when the input is recoverable, exit 2 with a one-line reason
naming the file and the line or field when it is not, never a traceback; and nothing good lost: the series the
bad rows did not touch come out exactly as if those rows had never been in the file (compared with the
fingerprint of the file without them). Most cases run ``shadowing.cli.main`` in-process (the same code path as
the subprocess, ~50 ms each); a few run a real subprocess for the no-traceback guarantee and what only a process
shows (stdout on a full device, a file-size limit). The readers' own edge cases (Parquet writer settings, column
types, CSV variants) are in tests/unit/metrics/test_reader_adversarial.py; these are what reaches the CLI user.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shadowing.cli import main
from shadowing.metrics.sketch import decode_weights

START = datetime(2025, 3, 5, tzinfo=UTC)
HEADER = "timestamp,region,service,instance_id,metric,value"
MINUTES = 120


@cache
def good_lines() -> tuple[str, ...]:
    """A clean tidy CSV (header first): 2 services × 2 instances × 2 metrics × 120 minutes, series by series.
    Data row k (0-based) is file line k + 2."""
    rng = np.random.default_rng(11)
    lines = [HEADER]
    for svc in ("api", "db"):
        for inst in ("i-0", "i-1"):
            for metric in ("cpu_utilization", "network_in_bytes"):
                for m in range(MINUTES):
                    value = rng.uniform(1, 90) if metric == "cpu_utilization" else rng.uniform(1e3, 1e6)
                    stamp = (START + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    lines.append(f"{stamp},us-east-1,{svc},{inst},{metric},{value!r}")
    return tuple(lines)


def lines_() -> list[str]:
    return list(good_lines())


def text(lines: list[str], newline: str = "\n", final: bool = True) -> str:
    return newline.join(lines) + (newline if final else "")


def with_field(lines: list[str], index: int, column: int, value: str) -> list[str]:
    out = list(lines)
    cells = out[index].split(",")
    cells[column] = value
    out[index] = ",".join(cells)
    return out


@dataclass
class Run:
    rc: int
    err: str
    fp: dict[str, Any] | None

    @property
    def warnings(self) -> str:
        return self.err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``shadowing fingerprint --metrics FILE --out OUT [args]`` in-process → exit code, stderr, the JSON."""
    def run(metrics: Path | str, *args: str, out: Path | None = None) -> Run:
        out = out or tmp_path / "fp.json"
        before = out.read_bytes() if out.is_file() else None
        capsys.readouterr()
        rc = main(["fingerprint", "--metrics", str(metrics), "--out", str(out), *args])
        err = capsys.readouterr().err
        assert "Traceback" not in err and "Exception ignored" not in err, err
        written = out.is_file() and out.read_bytes() != before  # every fingerprint has its own generated_at
        return Run(rc, err, json.loads(out.read_bytes()) if written else None)

    return run


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, newline="")
    return path


def one_line_error(run: Run, *needles: str) -> None:
    """Exit 2 and a single stderr line, the reason, holding every needle."""
    assert run.rc == 2, run.err
    assert run.fp is None
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shadowing fingerprint: error: "), run.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _close(got: Any, want: Any, path: str, out: list[str]) -> None:
    if isinstance(got, dict) and isinstance(want, dict):
        if set(got) != set(want):
            out.append(f"{path}: keys {sorted(set(got) ^ set(want))[:6]}")
        for key in set(got) & set(want):
            if key == "decayed_sketch" and isinstance(got[key], str) and isinstance(want[key], str):
                # Decayed weights are float16: a sum in another row order may round one step apart.
                (_, go, gw), (_, wo, ww) = decode_weights([got[key]]), decode_weights([want[key]])
                if not (np.array_equal(go, wo) and np.allclose(gw, ww, rtol=2e-3, atol=0)):
                    out.append(f"{path}/{key}")
            else:
                _close(got[key], want[key], f"{path}/{key}", out)
    elif isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]", out)
    elif isinstance(got, float) and isinstance(want, float | int) and not isinstance(want, bool):
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            out.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        out.append(f"{path}: {str(got)[:60]!r} != {str(want)[:60]!r}")


def assert_same_profile(got: dict[str, Any] | None, want: dict[str, Any] | None) -> None:
    """Same region, window and services (statistics to float noise: rows summed in another order)."""
    assert got is not None and want is not None
    diffs: list[str] = []
    for key in ("region", "window", "services"):
        _close(got[key], want[key], key, diffs)
    assert not diffs, diffs[:8]


# --- tidy CSV: rows and lines -------------------------------------------------------------------------------

def _lines_case(case: str) -> tuple[str | bytes, str | bytes, list[str]]:
    """(the bad file, the same file without what is bad, what the warnings must say)."""
    good = lines_()
    clean = text(good)
    if case == "too_few_fields":
        return text(good[:5] + ["2025-03-05T00:04:00Z,us-east-1,api"] + good[5:]), clean, \
            ["malformed", "line 6: 3 field(s), expected 6"]
    if case == "too_many_fields":
        return text(good[:5] + [good[5] + ",extra"] + good[6:]), text(good[:5] + good[6:]), \
            ["line 6: 7 field(s), expected 6"]
    if case == "unterminated_quote_mid_file":
        # Regression: the open quote swallowed every later line into one "row": 956 good rows silently lost.
        bad = '2025-03-05T00:04:30Z,us-east-1,"api,i-0,cpu_utilization,5'
        return text(good[:5] + [bad] + good[5:]), clean, ["line 6: a quote is not closed"]
    if case == "two_unterminated_quotes":
        a, b = '2025-03-05T00:04:30Z,"us-east-1,api,i-0,cpu_utilization,5', 'x,"y'
        return text(good[:5] + [a] + good[5:300] + [b] + good[300:]), clean, \
            ["line 6: a quote is not closed", "line 302: a quote is not closed"]
    if case == "unterminated_quote_last_line":
        return text(good + ['2025-03-05T00:04:30Z,us-east-1,"api,i-0']), clean, ["line 962"]
    if case == "blank_and_space_only_lines":
        return text(good[:5] + ["", "   ", "\t", ""] + good[5:]), clean, []
    if case == "repeated_header":  # two files concatenated
        return text(good[:400] + [good[0]] + good[400:]), clean, ["line 401: the header repeated"]
    if case == "header_upper_case":
        return text([good[0].upper()] + good[1:]), clean, []
    if case == "header_padded":
        return text([" " + good[0].replace(",", " , ") + " "] + good[1:]), clean, []
    if case == "crlf_no_final_newline":
        return text(good, "\r\n", final=False), clean, []
    if case == "columns_reordered_and_extra":
        order = [5, 3, 0, 4, 2, 1]
        return text([",".join([*(r.split(",")[k] for k in order), "note"]) for r in good]), clean, []
    if case == "names_padded_with_spaces":
        # Regression: " api" was a service of its own, " cpu_utilization" an unknown metric (no range checks).
        return text([good[0]] + [r.replace(",", ", ") for r in good[1:]]), clean, []
    if case == "empty_service_name":
        # Regression: an empty cell was a service named "" on the typed path ("unknown" on pandas' path).
        emptied = [r.replace(",db,i-1,", ",,i-1,") for r in good]
        return text(emptied), text([r.replace(",db,i-1,", ",unknown,i-1,") for r in good]), []
    if case == "latin1_service_name":
        # Regression: one Windows-1252 byte made the whole file "unreadable CSV" (exit 2).
        bad = text(good).replace(",db,", ",caf\xe9,").encode("cp1252")
        return bad, text(good).replace(",db,", ",café,"), ["480 line(s) not UTF-8", "lines 482, 483"]
    if case == "utf16_with_bom":
        return text(good).encode("utf-16"), clean, []  # regression: a traceback
    if case == "mixed_offsets_and_naive":
        def shifted(k: int, row: str) -> str:
            stamp, rest = row.split(",", 1)
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            form = (moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.strftime("%Y-%m-%d %H:%M:%S"),
                    moment.astimezone(timezone(timedelta(hours=2))).isoformat(),
                    moment.astimezone(timezone(timedelta(hours=-5, minutes=-30))).isoformat())
            return f"{form[k % 4]},{rest}"
        return text([good[0]] + [shifted(k, r) for k, r in enumerate(good[1:])]), clean, []
    if case == "unsorted_and_duplicated":
        body = good[1:]
        order = np.random.default_rng(3).permutation(len(body))
        return text([good[0]] + [body[k] for k in order] + body[:40]), clean, \
            ["40 row(s) duplicating a timestamp"]
    raise AssertionError(case)


LINE_CASES = ["too_few_fields", "too_many_fields", "unterminated_quote_mid_file", "two_unterminated_quotes",
              "unterminated_quote_last_line", "blank_and_space_only_lines", "repeated_header",
              "header_upper_case", "header_padded", "crlf_no_final_newline", "columns_reordered_and_extra",
              "names_padded_with_spaces", "empty_service_name", "latin1_service_name", "utf16_with_bom", "mixed_offsets_and_naive",
              "unsorted_and_duplicated"]


@pytest.mark.parametrize("case", LINE_CASES)
def test_csv_lines_that_can_be_read_around(tmp_path: Path, cli: Callable[..., Run], case: str) -> None:
    bad, clean, needles = _lines_case(case)
    got = cli(write(tmp_path / "metrics.csv", bad))
    want = cli(write(tmp_path / "clean.csv", clean), out=tmp_path / "clean.json")
    assert got.rc == 0 and want.rc == 0, got.err
    for needle in needles:
        assert needle in got.err, (needle, got.err)
    if not needles:
        assert "malformed" not in got.err and "several regions" not in got.err, got.err
    assert_same_profile(got.fp, want.fp)


def test_a_repeated_header_is_not_a_second_region(tmp_path: Path, cli: Callable[..., Run]) -> None:
    """Regression: the header line inside the file was a row of region "region" (a several-regions warning)
    and an unparseable timestamp of series service/instance_id/metric."""
    good = lines_()
    got = cli(write(tmp_path / "cat.csv", text(good[:400] + [good[0]] + good[400:])))
    assert got.rc == 0 and "several regions" not in got.err and "unparseable" not in got.err, got.err


@pytest.mark.parametrize(("case", "needles"), [
    ("empty_file", ["empty file"]),
    ("header_only", ["no data rows"]),
    ("missing_value_column", [":1 field 'value'", "missing column(s) value"]),
    # Regression: a tidy file without its metric column was taken for a raw export named by the file: every
    # series became one and 840 of 960 rows were dropped as "duplicates", exit 0.
    ("missing_metric_column", [":1 field 'metric'", "missing column(s) metric"]),
    ("value_column_twice", [":1 field 'value'", "appears 2 times"]),  # regression: a traceback
    ("tab_separated", [":1", "the header has 'timestamp\\tregion"]),
    ("comment_first", [":1", "'# exported by a tool'"]),
    ("nothing_usable", ["no usable metric rows", "unparseable timestamp", "rows 2, 3"]),
])
def test_csv_that_cannot_be_used_exits_2_naming_file_and_line(tmp_path: Path, cli: Callable[..., Run], case: str,
                                                               needles: list[str]) -> None:
    good = lines_()
    content = {
        "empty_file": "",
        "header_only": good[0] + "\n",
        "missing_value_column": text([",".join(r.split(",")[:5]) for r in good]),
        "missing_metric_column": text([",".join(r.split(",")[:4] + r.split(",")[5:]) for r in good]),
        "value_column_twice": text([good[0] + ",value"] + [r + ",1" for r in good[1:]]),
        "tab_separated": text([r.replace(",", "\t") for r in good]),
        "comment_first": text(["# exported by a tool"] + good),
        "nothing_usable": text([good[0], "soon,us-east-1,api,i-0,cpu_utilization,5",
                                "later,us-east-1,api,i-0,cpu_utilization,6"]),
    }[case]
    path = write(tmp_path / f"{case}.csv", content)
    one_line_error(cli(path), str(path), *needles)


# --- values ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "needle"), [
    ("NaN", "missing or non-numeric"), ("nan", "missing or non-numeric"), ("", "missing or non-numeric"),
    ("n/a", "missing or non-numeric"), ("inf", "infinite"), ("-inf", "infinite"), ("1e999", "infinite"),
    ("-3", "negative"), ("150", "above 100 %"), ("100.0001", "above 100 %"),
])
def test_impossible_values_are_dropped_naming_series_and_row(tmp_path: Path, cli: Callable[..., Run], value: str,
                                                             needle: str) -> None:
    good = lines_()
    got = cli(write(tmp_path / "m.csv", text(with_field(good, 5, 5, value))))
    want = cli(write(tmp_path / "clean.csv", text(good[:5] + good[6:])), out=tmp_path / "clean.json")
    assert got.rc == 0, got.err
    assert needle in got.err and "api/i-0/cpu_utilization (rows 6)" in got.err, got.err
    assert_same_profile(got.fp, want.fp)
    assert got.fp is not None and got.fp["quality"]["rejected_rows"] == {"api": {"cpu_utilization": 1}}


def test_values_written_with_their_unit(tmp_path: Path, cli: Callable[..., Run]) -> None:
    """Regression: "51.8 Percent" / "512 Bytes" were non-numeric: every row dropped, exit 2. A unit that is
    not the metric's is not converted (dropped and said)."""
    good = lines_()
    units = [good[0]] + [r + (" Percent" if "cpu_" in r else "Bytes") for r in good[1:]]
    units[7] = units[7].replace(" Percent", " Kilobytes")
    got = cli(write(tmp_path / "units.csv", text(units)))
    want = cli(write(tmp_path / "clean.csv", text(good[:7] + good[8:])), out=tmp_path / "clean.json")
    assert got.rc == 0, got.err
    assert "values written with their unit read as numbers (479 in 'Percent', 480 in 'Bytes')" in got.err
    assert "1 value(s) of cpu_utilization in another unit than Percent (e.g. '" in got.err, got.err
    assert " Kilobytes') not converted" in got.err and "api/i-0/cpu_utilization (rows 8)" in got.err
    assert_same_profile(got.fp, want.fp)


def test_unknown_metrics_are_profiled_generically_never_dropped(tmp_path: Path, cli: Callable[..., Run]) -> None:
    good = lines_()
    extra = [r.replace("cpu_utilization", "queue_delta") for r in good[1:121]]
    extra = [with_field([r], 0, 5, str(-float(r.split(",")[5])))[0] for r in extra]  # negative: allowed here
    got = cli(write(tmp_path / "m.csv", text(good + extra)))
    assert got.rc == 0 and "unknown metric name(s) queue_delta profiled generically" in got.err, got.err
    assert got.fp is not None
    queue = got.fp["services"]["api"]["metrics"]["queue_delta"]
    assert queue["count"] == 120 and queue["max"] < 0


def test_a_series_with_one_point_and_a_long_gap(tmp_path: Path, cli: Callable[..., Run]) -> None:
    """A single sample is a series; a three-day gap inside a series is a gap, not skew: nothing dropped."""
    good = lines_()
    gap = [r.replace("2025-03-05T01:", "2025-03-08T01:") if ",api,i-0,cpu" in r else r for r in good]
    got = cli(write(tmp_path / "m.csv", text(gap + ["2025-03-05T00:30:00Z,us-east-1,solo,i-9,cpu_utilization,42"])))
    assert got.rc == 0 and "dropped" not in got.err, got.err
    assert got.fp is not None
    assert got.fp["window"] == {"start": "2025-03-05T00:00:00Z", "end": "2025-03-08T02:00:00Z"}
    assert got.fp["services"]["api"]["instances"]["by_id"]["i-0"]["cpu_utilization"]["count"] == MINUTES
    assert got.fp["services"]["solo"]["metrics"]["cpu_utilization"]["p50"] == 42.0


# --- timestamps -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stamp", "needle"), [
    # Regression (all four): the window was the span including the stray row (years long): the decayed
    # statistics and sizing came from that one row; year 9999 took 20 s and 5 GB for 960 rows.
    ("2031-03-05T00:09:00Z", "dated far after the rest of the input (clock skew)"),
    ("2025-03-09T00:00:00Z", "dated far after the rest of the input (clock skew)"),
    ("1970-01-01T00:00:00Z", "dated far before the rest of the input (clock skew)"),
    ("9999-12-31T23:59:00Z", "timestamp out of range"),
    ("not-a-date", "unparseable timestamp"),
    ("", "unparseable timestamp"),
])
def test_a_stray_timestamp_is_dropped_not_stretching_the_window(tmp_path: Path, cli: Callable[..., Run],
                                                                stamp: str, needle: str) -> None:
    good = lines_()
    for line in (11, len(good) + 1):  # inside a series, and a row appended at the end
        inside = line == 11
        bad = with_field(good, 10, 0, stamp) if inside else good + [with_field(good, 10, 0, stamp)[10]]
        t = time.perf_counter()
        got = cli(write(tmp_path / "m.csv", text(bad)))
        assert time.perf_counter() - t < 10
        want = cli(write(tmp_path / "clean.csv", text(good[:10] + good[11:] if inside else good)),
                   out=tmp_path / "clean.json")
        assert got.rc == 0, got.err
        assert needle in got.err and f"api/i-0/cpu_utilization (rows {line})" in got.err, got.err
        assert_same_profile(got.fp, want.fp)


@pytest.mark.parametrize(("unit", "scale"), [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_numeric_epoch_timestamps_in_any_unit(tmp_path: Path, cli: Callable[..., Run], unit: str, scale: int,
                                              kind: str) -> None:
    """Regression: integer timestamps were always seconds: microseconds (what pandas writes from datetimes)
    gave the year 55 million and a ValueError traceback; milliseconds a window in the 57th millennium."""
    good = lines_()
    numeric = [good[0]] + [
        f"{int(datetime.fromisoformat(r.split(',')[0].replace('Z', '+00:00')).timestamp()) * scale},"
        f"{r.split(',', 1)[1]}" for r in good[1:]]
    if kind == "csv":
        path = write(tmp_path / "m.csv", text(numeric))
    else:
        cells = [r.split(",") for r in numeric[1:]]
        path = tmp_path / "m.parquet"
        pq.write_table(pa.table({"timestamp": pa.array([int(c[0]) for c in cells], pa.int64()),
                                 "region": [c[1] for c in cells], "service": [c[2] for c in cells],
                                 "instance_id": [c[3] for c in cells], "metric": [c[4] for c in cells],
                                 "value": [float(c[5]) for c in cells]}), path)
    got = cli(path)
    want = cli(write(tmp_path / "clean.csv", text(good)), out=tmp_path / "clean.json")
    assert got.rc == 0, got.err
    assert (f"read as epoch {dict(ms='milliseconds', us='microseconds', ns='nanoseconds')[unit]}" in got.err
            if unit != "s" else "epoch" not in got.err), got.err
    assert_same_profile(got.fp, want.fp)


# --- raw CloudWatch exports -----------------------------------------------------------------------------------

def _export_lines() -> list[str]:
    return ["timestamp,value"] + [f"{(START + timedelta(minutes=5 * k)):%Y-%m-%d %H:%M:%S},{20 + k % 50}.5"
                                  for k in range(300)]


def test_raw_export_variants(tmp_path: Path, cli: Callable[..., Run]) -> None:
    lines = _export_lines()
    folder = tmp_path / "ok"
    folder.mkdir()
    want = cli(write(folder / "ec2_cpu_utilization_abc123.csv", text(lines)), out=tmp_path / "want.json")
    assert want.rc == 0 and want.fp is not None, want.err
    assert list(want.fp["services"]) == ["ec2"]
    assert list(want.fp["services"]["ec2"]["instances"]["by_id"]) == ["abc123"]
    variants = {
        # Regression: without a header the file was refused ("missing column(s) timestamp, metric, value").
        "no_header": (text(lines[1:]), "no header line: read as a raw CloudWatch export"),
        "header_capitalised": (text(["Timestamp,Value"] + lines[1:]), None),  # regression: refused
        "shuffled": (text([lines[0]] + [lines[1:][k] for k in np.random.default_rng(1).permutation(300)]), None),
        "value_with_unit": (text([lines[0]] + [r + " Percent" for r in lines[1:]]), "read as numbers"),
        "value_first": (text(["value,timestamp"] + [",".join(reversed(r.split(","))) for r in lines[1:]]), None),
    }
    for name, (content, needle) in variants.items():
        folder = tmp_path / name
        folder.mkdir()
        got = cli(write(folder / "ec2_cpu_utilization_abc123.csv", content))
        assert got.rc == 0, (name, got.err)
        assert (needle in got.err) if needle else not got.err.strip(), (name, got.err)
        assert_same_profile(got.fp, want.fp)


def test_raw_export_names(tmp_path: Path, cli: Callable[..., Run]) -> None:
    """A file name that names no known metric is profiled generically under its own name, never dropped."""
    got = cli(write(tmp_path / "weird name!.csv", text(_export_lines())))
    assert got.rc == 0 and "unknown metric name(s) weird_name_ profiled generically" in got.err, got.err
    assert got.fp is not None and got.fp["services"]["weird name!"]["metrics"]["weird_name_"]["count"] == 300


def test_a_folder_with_one_corrupt_file_profiles_the_others(tmp_path: Path, cli: Callable[..., Run]) -> None:
    """Regression: one unreadable file in a --metrics folder failed the whole run (exit 2)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    write(folder / "ec2_cpu_utilization_a1.csv", text(_export_lines()))
    write(folder / "ec2_network_in_b2.parquet", text(_export_lines()))  # a CSV named .parquet
    write(folder / "ec2_disk_write_bytes_c3.csv", "timestamp,value\n")
    got = cli(folder)
    assert got.rc == 0, got.err
    assert "ec2_network_in_b2.parquet: unreadable Parquet" in got.err and "(file skipped)" in got.err
    assert "ec2_disk_write_bytes_c3.csv: no data rows (file skipped)" in got.err
    want = cli(write(tmp_path / "ec2_cpu_utilization_a1.csv", text(_export_lines())), out=tmp_path / "w.json")
    assert_same_profile(got.fp, want.fp)
    (folder / "ec2_cpu_utilization_a1.csv").unlink()
    one_line_error(cli(folder), str(folder), "no readable metric rows in 2 file(s)")


# --- Parquet ----------------------------------------------------------------------------------------------------

@cache
def _good_table() -> pa.Table:
    cells = [r.split(",") for r in good_lines()[1:]]
    return pa.table({"timestamp": pa.array([datetime.fromisoformat(c[0].replace("Z", "+00:00")) for c in cells],
                                           pa.timestamp("us", tz="UTC")),
                     "region": [c[1] for c in cells], "service": [c[2] for c in cells],
                     "instance_id": [c[3] for c in cells], "metric": [c[4] for c in cells],
                     "value": [float(c[5]) for c in cells]})


def test_parquet_with_other_column_types_reads_as_the_csv(tmp_path: Path, cli: Callable[..., Run]) -> None:
    want = cli(write(tmp_path / "clean.csv", text(lines_())), out=tmp_path / "want.json")
    table = _good_table()
    variants = {
        "timestamp_as_text": table.set_column(0, "timestamp", pa.array(
            [v.isoformat() for v in table.column("timestamp").to_pylist()])),
        "value_as_text": table.set_column(5, "value", pa.array([repr(v) for v in table.column("value").to_pylist()])),
    }
    for name, variant in variants.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(variant, path)
        got = cli(path)
        assert got.rc == 0 and not got.err.strip(), (name, got.err)
        assert_same_profile(got.fp, want.fp)


@pytest.mark.parametrize(("case", "needles"), [
    ("csv_renamed", ["unreadable Parquet", "magic bytes"]),
    ("truncated_half", ["unreadable Parquet"]),
    ("truncated_footer", ["unreadable Parquet"]),
    ("zero_bytes", ["unreadable Parquet"]),
    ("zero_row_groups", ["no data rows"]),
    ("no_value_column", ["missing column(s) value"]),
    # Regression (three): a KeyError traceback from pyarrow's dictionary request or column lookup.
    ("service_as_struct", ["field 'service'", "struct<", "expected a flat column of text"]),
    ("timestamp_as_list", ["field 'timestamp'", "list<", "expected a flat column of timestamps"]),
    ("value_as_list", ["field 'value'", "list<", "expected a flat column of numbers"]),  # was "b'value'"
])
def test_parquet_that_cannot_be_used_exits_2_naming_the_file(tmp_path: Path, cli: Callable[..., Run], case: str,
                                                             needles: list[str]) -> None:
    path = tmp_path / f"{case}.parquet"
    table = _good_table()
    good = tmp_path / "good.parquet"
    pq.write_table(table, good)
    data = good.read_bytes()
    if case == "csv_renamed":
        write(path, text(lines_()))
    elif case == "truncated_half":
        path.write_bytes(data[:len(data) // 2])
    elif case == "truncated_footer":
        path.write_bytes(data[:-6])
    elif case == "zero_bytes":
        path.write_bytes(b"")
    elif case == "zero_row_groups":
        pq.write_table(table.slice(0, 0), path)
    elif case == "no_value_column":
        pq.write_table(table.drop_columns(["value"]), path)
    elif case == "service_as_struct":
        pq.write_table(table.set_column(2, "service", pa.array([{"name": s} for s in
                                                                table.column("service").to_pylist()])), path)
    elif case == "timestamp_as_list":
        pq.write_table(table.set_column(0, "timestamp", pa.array([[t] for t in
                                                                  table.column("timestamp").to_pylist()])), path)
    elif case == "value_as_list":
        pq.write_table(table.set_column(5, "value", pa.array([[v] for v in table.column("value").to_pylist()])),
                       path)
    one_line_error(cli(path), str(path), *needles)


# --- --out -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["a_directory", "under_a_file", "the_metrics_file"])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path: Path, cli: Callable[..., Run],
                                                                  case: str) -> None:
    """Regression: IsADirectoryError / FileExistsError tracebacks, and --out equal to --metrics wrote the
    fingerprint over the input data."""
    metrics = write(tmp_path / "m.csv", text(lines_()))
    original = metrics.read_bytes()
    out = {"a_directory": tmp_path, "under_a_file": metrics / "fp.json", "the_metrics_file": metrics}[case]
    run = cli(metrics, out=out)
    one_line_error(run, "field '--out'", str(out))
    assert metrics.read_bytes() == original


def test_a_missing_out_folder_is_created(tmp_path: Path, cli: Callable[..., Run]) -> None:
    run = cli(write(tmp_path / "m.csv", text(lines_())), out=tmp_path / "new" / "deeper" / "fp.json")
    assert run.rc == 0 and run.fp is not None


def _subprocess(*args: str, limit_file_bytes: int | None = None, env: dict[str, str] | None = None,
                stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if limit_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    return subprocess.run([sys.executable, "-m", "shadowing", "fingerprint", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=limit,
                          env={**os.environ, **(env or {})})


def test_a_failed_write_keeps_the_previous_fingerprint(tmp_path: Path) -> None:
    """Regression: --out was written in place: a write that failed half way (here a file-size limit, as a full
    disk would) left a truncated fingerprint where the good one was, and a traceback."""
    metrics = write(tmp_path / "m.csv", text(lines_()))
    out = tmp_path / "fp.json"
    first = _subprocess("--metrics", str(metrics), "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    assert len(before) > 8000
    failed = _subprocess("--metrics", str(metrics), "--out", str(out), limit_file_bytes=4096)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    assert failed.stderr.strip().count("\n") == 0 and "cannot write the fingerprint: File too large" in failed.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp.json", "m.csv"]  # no temporary file left


def test_stdout_on_a_full_device_is_a_one_line_error(tmp_path: Path) -> None:
    metrics = write(tmp_path / "m.csv", text(lines_()))
    with open("/dev/full", "w") as full:
        run = _subprocess("--metrics", str(metrics), "--out", "-", stdout=full)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "stdout: cannot write the fingerprint: No space left on device" in run.stderr


# --- --step-seconds ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["-60", "0", "7", "86400", "999999999999"])
def test_a_step_that_cannot_align_is_refused(tmp_path: Path, cli: Callable[..., Run], step: str) -> None:
    """Regression: -60 and 999999999999 were tracebacks, 0 was silently "inferred", 7 and 86400 accepted."""
    one_line_error(cli(write(tmp_path / "m.csv", text(lines_())), "--step-seconds", step),
                   "field '--step-seconds'", f"{step} s cannot align")


# --- --previous ------------------------------------------------------------------------------------------------------

@pytest.fixture
def halves(tmp_path: Path) -> tuple[Path, Path]:
    """The first and the second hour of the clean file."""
    good = lines_()
    first = write(tmp_path / "first.csv", text([good[0]] + [r for r in good[1:] if "T00:" in r]))
    second = write(tmp_path / "second.csv", text([good[0]] + [r for r in good[1:] if "T01:" in r]))
    return first, second


@pytest.fixture
def previous(tmp_path: Path, cli: Callable[..., Run], halves: tuple[Path, Path]) -> dict[str, Any]:
    run = cli(halves[0], out=tmp_path / "previous.json")
    assert run.rc == 0 and run.fp is not None
    return run.fp


def test_fold_of_the_second_hour_equals_the_whole_file(tmp_path: Path, cli: Callable[..., Run],
                                                      halves: tuple[Path, Path], previous: dict[str, Any]) -> None:
    folded = cli(halves[1], "--previous", str(tmp_path / "previous.json"))
    whole = cli(write(tmp_path / "all.csv", text(lines_())), out=tmp_path / "all.json")
    assert folded.rc == 0 and folded.fp is not None and folded.fp["folds"] == 1, folded.err
    assert folded.fp["window"] == whole.fp["window"]  # type: ignore[index]
    for svc in ("api", "db"):
        for metric in ("cpu_utilization", "network_in_bytes"):
            got, want = (fp["services"][svc]["metrics"][metric] for fp in (folded.fp, whole.fp))  # type: ignore[index]
            assert got["count"] == want["count"] == 2 * MINUTES
            assert got["max"] == want["max"] and got["p99"] == pytest.approx(want["p99"], rel=0.02)


def _mutated(previous: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> bytes:
    copy = json.loads(json.dumps(previous))
    change(copy)
    return json.dumps(copy).encode()


PREVIOUS_CASES: dict[str, tuple[Callable[[dict[str, Any]], bytes], list[str]]] = {
    "truncated": (lambda p: json.dumps(p).encode()[:500], ["unreadable fingerprint JSON"]),
    # Regression: a JSON null was "no previous fingerprint": a fresh build, exit 0, the history dropped.
    "json_null": (lambda p: b"null", ["must be a JSON object, got NoneType"]),
    "not_utf8": (lambda p: json.dumps(p).encode().replace(b"us-east-1", b"us-\xe9ast-1"),  # was a traceback
                 ["unreadable fingerprint JSON"]),
    # Regression (the next eight): tracebacks, or a zero step silently re-inferred.
    "step_text": (lambda p: _mutated(p, lambda x: x["params"].__setitem__("step_seconds", "sixty")),
                  ["field 'params.step_seconds'"]),
    "step_negative": (lambda p: _mutated(p, lambda x: x["params"].__setitem__("step_seconds", -60)),
                      ["field 'params.step_seconds'"]),
    "step_zero": (lambda p: _mutated(p, lambda x: x["params"].__setitem__("step_seconds", 0)),
                  ["field 'params.step_seconds'"]),
    "step_fraction": (lambda p: _mutated(p, lambda x: x["params"].__setitem__("step_seconds", 0.5)),
                      ["field 'params.step_seconds'"]),
    "half_life_text": (lambda p: _mutated(p, lambda x: x["params"].__setitem__("ewma_half_life_seconds", "x")),
                       ["field 'params.ewma_half_life_seconds'"]),
    "half_life_zero": (lambda p: _mutated(p, lambda x: x["params"].__setitem__("decay_half_life_seconds", 0)),
                       ["field 'params.decay_half_life_seconds'"]),
    "folds_text": (lambda p: _mutated(p, lambda x: x.__setitem__("folds", "many")), ["field 'folds'"]),
    "history_start_text": (lambda p: _mutated(p, lambda x: x.__setitem__("history_start", "yesterday")),
                           ["field 'history_start'"]),
    "window_backwards": (lambda p: _mutated(p, lambda x: x["window"].__setitem__("start", "2025-03-06T00:00:00Z")),
                         ["field 'window'", "ends"]),
    "window_year_10000": (lambda p: _mutated(p, lambda x: x["window"].__setitem__("end", "9999-12-31T23:59:59Z")),
                          ["field 'window.end'", "out of range"]),
    # Regression: a newer schema was folded into as if it were this one.
    "schema_version_2": (lambda p: _mutated(p, lambda x: x.__setitem__("schema_version", 2)),
                         ["field 'schema_version'"]),
    # Regression: another region's history was decayed and summed into this one's, exit 0.
    "other_region": (lambda p: _mutated(p, lambda x: x.__setitem__("region", "eu-west-1")),
                     ["field 'region'", "eu-west-1", "us-east-1"]),
    "services_a_list": (lambda p: _mutated(p, lambda x: x["services"].__setitem__("api", [])), ["field 'services'"]),
}


@pytest.mark.parametrize("case", list(PREVIOUS_CASES))
def test_a_previous_fingerprint_that_cannot_be_folded_is_refused(tmp_path: Path, cli: Callable[..., Run],
                                                                 halves: tuple[Path, Path], previous: dict[str, Any],
                                                                 case: str) -> None:
    make, needles = PREVIOUS_CASES[case]
    prev = write(tmp_path / "prev.json", make(previous))
    out = write(tmp_path / "out.json", b'{"kept": true}')
    run = cli(halves[1], "--previous", str(prev), out=out)
    assert run.rc == 2 and run.err.strip().count("\n") == 0, run.err
    for needle in [str(prev), *needles]:
        assert needle in run.err, (needle, run.err)
    assert out.read_bytes() == b'{"kept": true}'  # a failed fold never replaces the last fingerprint


def test_data_entirely_before_the_previous_window_end(tmp_path: Path, cli: Callable[..., Run],
                                                      halves: tuple[Path, Path], previous: dict[str, Any]) -> None:
    """Regression: exit 2 said only "no usable metric rows", not that every row was already folded."""
    run = cli(halves[0], "--previous", str(tmp_path / "previous.json"))
    one_line_error(run, str(halves[0]), "no usable metric rows", "480 row(s) late",
                   "before the previous fingerprint's window end, already folded")


def test_step_of_the_previous_fingerprint_against_the_data_and_the_flag(
        tmp_path: Path, cli: Callable[..., Run], halves: tuple[Path, Path], previous: dict[str, Any]) -> None:
    """Regression: --step-seconds different from the fingerprint's step was silently ignored; data sampled at
    another step than the fingerprint's was folded without a word."""
    prev = tmp_path / "previous.json"
    one_line_error(cli(halves[1], "--previous", str(prev), "--step-seconds", "300"),
                   "field 'params.step_seconds'", "--step-seconds 300 differs", "(60 s)")
    five = write(tmp_path / "prev300.json", _mutated(previous, lambda x: x["params"].__setitem__("step_seconds", 300)))
    run = cli(halves[1], "--previous", str(five))
    assert run.rc == 0 and "sampled every 60 s, folded at the fingerprint's step of 300 s" in run.err, run.err


def test_a_window_end_without_offset_is_utc_whatever_the_local_zone(
        tmp_path: Path, cli: Callable[..., Run], halves: tuple[Path, Path], previous: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a naive ISO time was read in the machine's zone: at UTC-8 the watermark moved 8 h later
    and every new row was dropped as already folded."""
    naive = write(tmp_path / "naive.json", _mutated(previous, lambda x: x["window"].__setitem__(
        "end", x["window"]["end"].rstrip("Z"))))
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        run = cli(halves[1], "--previous", str(naive))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert run.rc == 0 and "late" not in run.err, run.err
    assert run.fp is not None and run.fp["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * MINUTES


# --- a real process: never a traceback ---------------------------------------------------------------------------

def test_worst_inputs_in_a_real_process_give_one_line_and_exit_2(tmp_path: Path) -> None:
    """The no-traceback guarantee where it was broken, through ``python -m shadowing``."""
    good = lines_()
    struct = tmp_path / "struct.parquet"
    table = _good_table()
    pq.write_table(table.set_column(2, "service", pa.array([{"n": s} for s in table.column("service").to_pylist()])),
                   struct)
    cases = [
        (["--metrics", str(struct)], "field 'service'"),
        (["--metrics", str(write(tmp_path / "dup.csv", text([good[0] + ",value"] + [r + ",1" for r in good[1:]])))],
         "appears 2 times"),
        (["--metrics", str(write(tmp_path / "m.csv", text(good))), "--step-seconds", "-60"], "--step-seconds"),
        (["--metrics", str(tmp_path / "m.csv"), "--previous", str(write(tmp_path / "p.json", b"\xff\xfe{"))],
         "unreadable fingerprint JSON"),
    ]
    for args, needle in cases:
        run = _subprocess(*args, "--out", str(tmp_path / "fp.json"))
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
        assert needle in run.stderr, run.stderr


def test_recoverable_inputs_in_a_real_process_exit_0_with_warnings(tmp_path: Path) -> None:
    good = lines_()
    bad = good[:5] + ['2025-03-05T00:04:30Z,us-east-1,"api,i-0,cpu_utilization,5'] + good[5:]
    bad = with_field(bad, 20, 0, "2031-01-01T00:00:00Z")
    path = write(tmp_path / "m.csv", text(bad).replace(",db,", ",caf\xe9,").encode("cp1252"))
    run = _subprocess("--metrics", str(path), "--out", str(tmp_path / "fp.json"))
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines), lines
    for needle in ("line 6: a quote is not closed", "clock skew", "not UTF-8"):
        assert needle in run.stderr, needle
    fp = json.loads((tmp_path / "fp.json").read_text())
    assert sorted(fp["services"]) == ["api", "café"]
    assert fp["window"] == {"start": "2025-03-05T00:00:00Z", "end": "2025-03-05T02:00:00Z"}
