"""Shadow Regions page data on 20 regions × 200 services: what a page load and a region click cost.

Prints our figures (landing list: grouped queries; region detail: latest valid artefacts by index, payloads only
for the newest blueprint versions) and the peer's on the same warehouse: the naïve assembly that reads every
region's full history through the warehouse API (all blueprint payloads, every artefact row) — what a page
without lazy per-region JSON and indexed "latest" queries would do.

    python bench/ui_page.py [--regions 20] [--services 200] [--versions 12] [--url sqlite:///...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from shadowing.ui.pages import region_detail, region_list
from shadowing.ui.synthetic import populate
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.blueprints import blueprint_history
from shadowing.warehouse.tables import (
    capacity_fingerprints,
    dependency_graphs,
    failover_events,
    readiness_results,
)


def timed(fn, repeat: int = 5) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def naive_page(engine, regions: list[str]) -> int:  # type: ignore[no-untyped-def]
    """The peer: everything for every region in one response, from full scans."""
    out = {}
    with engine.connect() as conn:
        for region in regions:
            out[region] = {
                "history": [v.payload for v in blueprint_history(engine, region)],
                "fingerprints": [r.payload for r in conn.execute(
                    sa.select(capacity_fingerprints).where(capacity_fingerprints.c.region == region))],
                "graphs": [r.payload for r in conn.execute(
                    sa.select(dependency_graphs).where(dependency_graphs.c.region == region))],
                "readiness": [dict(r._mapping) for r in conn.execute(
                    sa.select(readiness_results).where(readiness_results.c.primary_region == region))],
                "failovers": [dict(r._mapping) for r in conn.execute(
                    sa.select(failover_events).where(failover_events.c.primary_region == region))],
            }
    return len(json.dumps(out, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=20)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--versions", type=int, default=12)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'warehouse.db'}"
        engine = open_warehouse(url)
        t0 = time.perf_counter()
        names = populate(engine, regions=args.regions, services=args.services, versions=args.versions)
        print(f"populated {len(names)} regions × {args.services} services × {args.versions} blueprint versions "
              f"in {time.perf_counter() - t0:.1f}s ({engine.dialect.name})")
        list_s, rows = timed(lambda: region_list(engine))
        list_bytes = len(json.dumps({"regions": rows}))
        details = [timed(lambda r=r: region_detail(engine, r), repeat=3) for r in names[:5]]
        detail_s = statistics.median(d[0] for d in details)
        detail_bytes = statistics.median(len(json.dumps(d[1])) for d in details)
        peer_s, peer_bytes = timed(lambda: naive_page(engine, names), repeat=1)
        print(f"{'':28}{'time':>10}{'JSON':>12}")
        print(f"{'ours: landing list':28}{list_s * 1000:>8.1f}ms{list_bytes / 1e3:>10.1f}kB")
        print(f"{'ours: one region (median)':28}{detail_s * 1000:>8.1f}ms{detail_bytes / 1e3:>10.1f}kB")
        print(f"{'ours: first view total':28}{(list_s + detail_s) * 1000:>8.1f}ms"
              f"{(list_bytes + detail_bytes) / 1e3:>10.1f}kB")
        print(f"{'peer: naive full page':28}{peer_s * 1000:>8.1f}ms{peer_bytes / 1e3:>10.1f}kB")
        print(f"speed-up of the first view: {peer_s / (list_s + detail_s):.1f}×")


if __name__ == "__main__":
    main()
