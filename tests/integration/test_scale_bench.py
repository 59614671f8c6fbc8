"""bench/scale.py at a tiny size (2 regions × 5 services): every DAG task runs, and the table adds up.

The bench runs as its own process (it starts its own moto server, forks task processes and patches botocore
to time AWS calls: none of that belongs in the test session's process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scale_bench_tiny_world(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--regions", "2", "--services", "5",
         "--instances-per-service", "1", "--slots", "1,2", "--history-hours", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout
    data = json.loads(out.read_text())
    summary, analysis = data["summary"], data["analysis"]
    regions = summary["regions"]
    assert regions == ["us-east-1", "eu-west-1"]
    assert summary["shadows"] == {"us-east-1": "us-west-2", "eu-west-1": "eu-central-2"}

    # one row per region, one totals row per slot count, the verdict
    for region in regions:
        assert any(line.startswith(region) for line in table.splitlines()), table
    totals = [line for line in table.splitlines() if line.strip().split(" ")[0] in {"1", "2"} and "|" in line]
    assert [int(line.split("|")[0]) for line in totals] == [1, 2], table
    assert "BREAKS FIRST" in table or "fits 300 s" in table
    assert "waiting on moto" in table

    # every seeded region answered every task, with sane figures
    for region, seed in ((r, summary["seed"]["results"][f"seed:{r}"]) for r in regions):
        assert seed["ok"], seed
        assert seed["detail"]["instances"] >= 5 and seed["detail"]["metric_datums"] > 0, region
    for label, cycle in [("first", summary["first_run"]), *summary["passes"].items()]:
        for group in ("hourly", "five_minute"):
            for key, rec in cycle[group]["results"].items():
                assert rec["ok"], (label, key, rec.get("error"))
                assert rec["wall_s"] > 0 and rec["calls"] > 0, (label, key)
                assert 0 <= rec["emulator_s"] <= rec["wall_s"] + 0.5, (label, key, rec)
                assert 50 < rec["rss_mb"] < 4000, (label, key, rec["rss_mb"])
                assert sum(n for n, _ in rec["ops"].values()) == rec["calls"]
    for region in regions:
        cold = summary["first_run"]["five_minute"]["results"][f"blueprint:{region}"]["detail"]
        assert cold["created"] > 0  # the first refresh pre-stages the shadow
        for steady in summary["passes"].values():
            cap = steady["five_minute"]["results"][f"capacity:{region}"]["detail"]
            assert not cap["skipped"] and cap["rows"] > 0  # a real 5-minute fold, not an empty interval
            bp = steady["five_minute"]["results"][f"blueprint:{region}"]["detail"]
            assert bp["created"] == 0 and bp["services"] >= 5  # pre-staging is idempotent
            deps = steady["hourly"]["results"][f"deps:{region}"]["detail"]
            assert deps["edges"] > 0
    for slots, a in analysis["passes"].items():
        assert a["slots"] == int(slots) and not a["failed"]
        assert a["five_minute_makespan_s"] > 0
        assert a["headroom_5min_s"] == pytest.approx(300 - a["five_minute_makespan_s"])
        assert a["ours_s_5min"] <= a["task_s_5min"] and a["slots_needed"] >= a["slots_needed_ours"] >= 1
        # one slot runs the jobs back to back: its makespan is at least the sum of its jobs
        if a["slots"] == 1:
            assert a["five_minute_makespan_s"] >= a["task_s_5min"] - 0.5
