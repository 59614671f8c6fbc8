"""Tidy CSV: the typed pyarrow path must read exactly what the tolerant pandas path reads, or hand over to it.

Same columns, codes, names, region, warnings and row numbers, for clean files and for every defect the
tolerant path reports (a cell the typed path cannot parse sends the whole file there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowing.capacity.fingerprint import build
from shadowing.metrics import frame

HEADER = "timestamp,region,service,instance_id,metric,value"


def _rows(n: int = 400, *, seed: int = 1) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        series = k % 8
        minute = k // 8
        out.append([f"2025-03-03T{minute // 60:02d}:{minute % 60:02d}:00Z", "us-east-1", f"svc-{series % 3}",
                    f"i-{series}", ("cpu_utilization", "network_in_bytes")[series % 2],
                    repr(float(rng.uniform(1, 90)))])
    return out


def _write(path: Path, rows: list[list[str]], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    return path


def _cases() -> dict[str, tuple[str, list[list[str]]]]:
    rows = _rows()
    cases: dict[str, tuple[str, list[list[str]]]] = {"clean": (HEADER, rows)}

    def edited(edit: dict[tuple[int, int], str]) -> list[list[str]]:
        out = [list(r) for r in rows]
        for (i, j), v in edit.items():
            out[i][j] = v
        return out

    cases["series_after_series"] = (HEADER, sorted(rows, key=lambda r: (r[3], r[0])))  # long runs of one series
    cases["naive_timestamps"] = (HEADER, [[r[0].rstrip("Z").replace("T", " "), *r[1:]] for r in rows])
    cases["offset_timestamps"] = (HEADER, [[r[0].replace("Z", "+00:00"), *r[1:]] for r in rows])
    cases["mixed_timestamps"] = (HEADER, edited({(5, 0): "2025-03-03 00:00:30", (9, 0): "2025-03-03T03:00:00+02:00"}))
    cases["bad_timestamp"] = (HEADER, edited({(7, 0): "yesterday"}))
    cases["empty_timestamp"] = (HEADER, edited({(7, 0): ""}))
    cases["nan_inf_and_empty_values"] = (HEADER, edited({(3, 5): "NaN", (4, 5): "inf", (6, 5): "", (8, 5): "-inf"}))
    cases["non_numeric_value"] = (HEADER, edited({(10, 5): "n/a"}))
    cases["negative_and_over_100"] = (HEADER, edited({(0, 5): "140", (1, 5): "-3"}))
    cases["empty_names"] = (HEADER, edited({(2, 2): "", (11, 3): "", (12, 1): ""}))
    cases["literal_unknown_names"] = (HEADER, edited({(2, 2): "unknown", (11, 3): "unknown", (12, 1): "unknown"}))
    cases["several_regions"] = (HEADER, edited({(k, 1): "eu-west-1" for k in range(0, 400, 3)}))
    cases["unknown_metric"] = (HEADER, edited({(k, 4): "queue_depth" for k in range(0, 400, 8)}))
    cases["no_region_no_service"] = ("timestamp,instance_id,metric,value",
                                     [[r[0], r[3], r[4], r[5]] for r in rows])
    cases["columns_reordered"] = ("metric,value,instance_id,timestamp,service,region",
                                  [[r[4], r[5], r[3], r[0], r[2], r[1]] for r in rows])
    cases["malformed_rows"] = (HEADER, [*rows[:50], ["2025-03-03T09:00:00Z", "x"], *rows[50:], ["a,b,c,d,e,f,g"]])
    return cases


@pytest.mark.parametrize("case", list(_cases()))
def test_the_typed_csv_path_reads_what_the_pandas_path_reads(tmp_path: Path, case: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    header, rows = _cases()[case]
    path = _write(tmp_path / f"{case}.csv", rows, header)
    fast = frame.read_metrics(path)
    monkeypatch.setattr(frame, "_csv_header", lambda _path: [])  # the tolerant path only
    slow = frame.read_metrics(path)
    for name in ("services", "instances", "metrics", "region", "warnings"):
        assert getattr(fast, name) == getattr(slow, name), name
    for name in ("ts", "values", "service", "instance", "metric", "rows"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    got, want = build(fast), build(slow)
    for fp in (got, want):
        fp.pop("generated_at")
    assert got == want


def test_a_clean_tidy_csv_never_imports_pandas(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = _write(tmp_path / "clean.csv", _rows())
    probe = ("import sys\nfrom shadowing.metrics import frame\nframe.read_metrics(sys.argv[1])\n"
             "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
