"""Blueprint refresh benchmark: a seeded N-service world on the moto server, refreshed end to end.

Prints: seeding time, the cold refresh (first pre-staging of every data-free shadow resource), steady-state
refreshes (identical inputs: must create nothing and keep exactly one version), and a refresh after one changed
input (exactly one new version, with its diff). Target (issue 5): a 200-service world ≤ 60 s end to end.

There is no off-the-shelf peer for this pipeline; the peer figure printed is the naive approach the design
rules out — re-describing every pre-staged resource one call at a time (what an idempotency check per resource
costs without tag-indexed listings) — measured on the same world in the same run.

    python bench/blueprint_refresh.py [--services 200 --instances-per-service 5] [--endpoint-url URL --no-seed]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--instances-per-service", type=int, default=5)
    parser.add_argument("--refreshes", type=int, default=5, help="identical steady-state refreshes")
    parser.add_argument("--endpoint-url", help="an existing moto server (default: start one)")
    parser.add_argument("--no-seed", action="store_true", help="the endpoint already holds the world")
    args = parser.parse_args()

    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIASHADOWINGBENCH")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from shadowing.aws.clients import client
    from shadowing.blueprint.inventory import paginate_all
    from shadowing.blueprint.refresh import refresh_region
    from shadowing.dependencies.graph import launch_order
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.store import blueprint_history, save_fingerprint, save_graph
    from shadowing.world.app import build_app
    from shadowing.world.seeding import seed_world
    from shadowing.world.state import WorldClients

    proc = None
    endpoint = args.endpoint_url
    if endpoint is None:
        from shadowing.devstack import spawn_emulator

        endpoint, proc = spawn_emulator()
    try:
        figures: dict[str, Any] = {"services": args.services, "instances_per_service": args.instances_per_service}
        if not args.no_seed:
            t = time.perf_counter()
            seed_world(WorldClients.connect(endpoint), services=args.services,
                       instances_per_service=args.instances_per_service, history_days=0.01, flow_minutes=1)
            figures["seed_s"] = round(time.perf_counter() - t, 1)
        app = build_app(args.services, 0, args.instances_per_service)
        tiers, cycles = launch_order(app.graph())
        graph = {"directed": True, "multigraph": False, "graph": {"launch_tiers": tiers, "cycles": cycles},
                 "nodes": [{"id": s.name, "kind": s.kind, "ports": [{"port": s.port, "target_port": s.port}]}
                           for s in app.services],
                 "edges": [{"source": e.caller, "target": e.callee} for e in app.edges]}

        def fingerprint(extra: int) -> dict[str, Any]:
            return {"services": {s.name: {"sizing": {"instances": s.instances + extra}} for s in app.services}}

        engine = open_warehouse(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
        save_fingerprint(engine, region="us-east-1", fingerprint=fingerprint(1), valid=True)
        save_graph(engine, region="us-east-1", graph=graph, valid=True)
        cache: dict[tuple[str, str], Any] = {}

        def clients(service: str, region: str) -> Any:
            if (service, region) not in cache:
                cache[(service, region)] = client(service, region, endpoint)
            return cache[(service, region)]

        def refresh(run: str) -> dict[str, Any]:
            t = time.perf_counter()
            out = refresh_region(engine, clients, "us-east-1", "us-west-2", run_id=run)
            out["wall_s"] = round(time.perf_counter() - t, 2)
            return out

        cold = refresh("cold")
        figures["cold_refresh_s"] = cold["wall_s"]
        figures["cold_created"] = len((cold.get("prestage") or {}).get("created", []))
        steady = [refresh(f"steady{i}") for i in range(args.refreshes)]
        figures["steady_refresh_s"] = {"median": statistics.median(s["wall_s"] for s in steady),
                                       "max": max(s["wall_s"] for s in steady)}
        figures["steady_phase_s"] = steady[-1]["seconds"]
        figures["steady_created_anything"] = any(s["prestage"]["created"] or s["prestage"]["updated"]
                                                 for s in steady)
        figures["versions_after_identical_refreshes"] = len(blueprint_history(engine, "us-east-1"))
        figures["ready"] = steady[-1]["ready"]
        figures["readiness_failures"] = steady[-1]["failed"][:5]
        save_fingerprint(engine, region="us-east-1", fingerprint=fingerprint(2), valid=True)
        changed = refresh("changed")
        figures["changed_refresh_s"] = changed["wall_s"]
        figures["versions_after_change"] = len(blueprint_history(engine, "us-east-1"))
        figures["changed_services_in_diff"] = len(changed["diff"].get("services_changed", {}))

        # peer: per-resource idempotency checks (one describe per pre-staged resource) on the same world
        ec2 = clients("ec2", "us-west-2")
        flt = [{"Name": "tag:shadowing:role", "Values": ["prestaged"]}]
        t = time.perf_counter()
        groups = paginate_all(ec2, "describe_security_groups", "SecurityGroups", Filters=flt)
        templates = paginate_all(ec2, "describe_launch_templates", "LaunchTemplates", Filters=flt)
        for g in groups:
            ec2.describe_security_groups(GroupIds=[g["GroupId"]])
        for lt in templates:
            ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Default"])
        figures["peer_per_resource_checks_s"] = round(time.perf_counter() - t, 2)
        figures["peer_calls"] = len(groups) + len(templates)
        print(json.dumps(figures, indent=2))
        ok = figures["versions_after_identical_refreshes"] == 1 and figures["versions_after_change"] == 2
        return 0 if ok else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
