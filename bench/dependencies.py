"""Dependency mapping benchmark: our mapper end to end vs DuckDB read + group-by on the same flow-log file.

    .venv/bin/python bench/dependencies.py [--records 1000000 10000000] [--version 5] [--keep DIR] [--repeat 2]

Flow records come from the demo world's generator (shadowing.world.traffic: true call graph + noise) written
as v5 text with a header line (or default v2); with --keep, files already in DIR are reused. Each contender
runs in its own fresh subprocess on the same file, alternately, --repeat times, so wall time (of the whole
process, interpreter start and imports included) and peak RSS (VmHWM of that process) are measured separately;
the 1-minute load average is printed with every run because the machine may be shared:
  mapper  = `python -m shadowing deps --flow-logs F --inventory I --out G` (parse, IP→service through the
            time-ranged inventory, orientation, dedup, thresholds, graph, JSON); like DuckDB it uses every core
            (byte ranges in threads); its numba kernels are compiled once by an untimed warm-up run
  duckdb  = read_csv(F) + GROUP BY srcaddr, dstaddr, dstport (count, sum(bytes)), fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = r"""
import json, sys, time
t0 = time.perf_counter()
kind, flows, inventory, out = sys.argv[1:5]
if kind == "mapper":
    from shadowing.cli import main
    code = main(["deps", "--flow-logs", flows, "--inventory", inventory, "--out", out])
    assert code == 0, code
    graph = json.load(open(out))
    result = {"edges": len(graph["edges"])}
else:
    import duckdb
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rows = con.execute(
        "SELECT srcaddr, dstaddr, dstport, count(*) AS n, sum(TRY_CAST(bytes AS BIGINT)) AS b "
        "FROM read_csv(?, delim=' ', header=true, all_varchar=true) GROUP BY srcaddr, dstaddr, dstport",
        [flows]).fetchall()
    result = {"groups": len(rows)}
result["seconds"] = time.perf_counter() - t0
result["peak_mb"] = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps(result))
"""


def generate(records: int, folder: Path, version: int) -> tuple[Path, Path, list[tuple[str, str]]]:
    from shadowing.world.app import build_app

    app = build_app()
    truth = [(e.caller, e.callee) for e in app.edges]
    flows = folder / f"flows-{records}-v{version}.log"
    inv = folder / f"inventory-{records}.csv"
    if flows.exists() and inv.exists():
        return flows, inv, truth
    from shadowing.world.inventory import synthetic_inventory, write_inventory_csv
    from shadowing.world.traffic import generate_flow_records, write_flow_logs

    start = datetime(2025, 1, 6, tzinfo=UTC)
    probe_end = start + timedelta(hours=6)
    probe = generate_flow_records(app, synthetic_inventory(app, start, probe_end, seed=7), start, probe_end,
                                  seed=7)
    per_hour = len(probe) / 6
    flows_per_edge = max(1, int(records / (per_hour * 48)) + 1)  # two days of traffic, more parallel flows
    hours = max(1, int(records / (per_hour * flows_per_edge)) + 1)
    end = start + timedelta(hours=hours)
    inventory = synthetic_inventory(app, start, end, seed=7)
    frame = generate_flow_records(app, inventory, start, end, seed=7, flows_per_edge=flows_per_edge)
    frame = frame.iloc[:records]
    write_flow_logs(frame, flows, version=version, header=True)
    write_inventory_csv(inventory, inv)
    return flows, inv, truth


def child_env(cold: bool) -> dict[str, str]:
    """Children import with byte-code caching (a private cache folder) like any deployment, unless --cold-imports:
    with PYTHONDONTWRITEBYTECODE every start recompiles numpy/pyarrow's Python modules (DuckDB has few)."""
    env = dict(os.environ)
    if not cold:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "shadowing-bench-pycache")
        subprocess.run([sys.executable, "-c", "import duckdb, shadowing.cli, shadowing.dependencies.mapper"],
                       check=True, env=env, cwd=ROOT)  # warm the cache (untimed)
    # numba keeps compiled kernels next to their module: one tiny untimed run compiles them after an edit
    folder = Path(tempfile.mkdtemp(prefix="bench-deps-warm-"))
    (folder / "inventory.csv").write_text("ip,service\n10.0.0.1,a\n10.0.0.2,b\n")
    (folder / "flows.log").write_text("version srcaddr dstaddr srcport dstport protocol bytes start end action "
                                      "log-status tcp-flags\n5 10.0.0.1 10.0.0.2 40000 80 6 100 60 120 ACCEPT OK 2\n")
    subprocess.run([sys.executable, "-m", "shadowing", "deps", "--flow-logs", str(folder / "flows.log"),
                    "--inventory", str(folder / "inventory.csv"), "--out", str(folder / "graph.json")],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    return env


def measure(kind: str, flows: Path, inventory: Path, out: Path, env: dict[str, str]) -> dict[str, float]:
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, kind, str(flows), str(inventory), str(out)],
                          check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result = json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{")))
    return {**result, "wall": wall, "load": load, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--version", type=int, choices=[2, 5], default=5)
    parser.add_argument("--keep", type=Path, help="keep generated files in this folder (and reuse them)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each contender, alternating")
    parser.add_argument("--cold-imports", action="store_true", help="keep PYTHONDONTWRITEBYTECODE (no .pyc)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-deps-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = child_env(args.cold_imports)
    print(f"{'records':>10} {'MB':>6} {'run':>3} {'mapper s':>9} {'duckdb s':>9} {'ratio':>6} {'mapper MB':>10} "
          f"{'duckdb MB':>10} {'P':>5} {'R':>5} {'load':>9} {'cpu s m/d':>11}")
    for records in args.records:
        t0 = time.perf_counter()
        flows, inventory, truth = generate(records, folder, args.version)
        gen = time.perf_counter() - t0
        out = folder / f"graph-{records}.json"
        size_mb = flows.stat().st_size / 2**20
        for run in range(1, args.repeat + 1):
            duck = measure("duckdb", flows, inventory, out, env)  # DuckDB first: it warms the page cache for both
            ours = measure("mapper", flows, inventory, out, env)
            graph = json.loads(out.read_text())
            found = {(e["source"], e["target"]) for e in graph["edges"]}
            precision = len(found & set(truth)) / max(1, len(found))
            recall = len(found & set(truth)) / max(1, len(truth))
            print(f"{records:>10} {size_mb:>6.0f} {run:>3} {ours['wall']:>9.2f} {duck['wall']:>9.2f} "
                  f"{duck['wall'] / ours['wall']:>5.2f}x {ours['peak_mb']:>10.0f} {duck['peak_mb']:>10.0f} "
                  f"{precision:>5.2f} {recall:>5.2f} {ours['load']:>4.1f}/{duck['load']:<4.1f} "
                  f"{ours['cpu']:>5.1f}/{duck['cpu']:<5.1f}"
                  f"   (in-process s: mapper {ours['seconds']:.2f}, duckdb {duck['seconds']:.2f}; "
                  f"duckdb groups {duck['groups']}; input ready in {gen:.0f}s)", flush=True)
        if not args.keep:
            flows.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
