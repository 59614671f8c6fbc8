"""`python -m shadowing failover …`: plan, run and drill a failover outside Airflow (same steps as the DAG).

    failover plan          --endpoint-url URL --warehouse-url URL [--primary-region R] [--capacity-percent P]
    failover run           --endpoint-url URL --warehouse-url URL --mode dry_run|drill|live [--run-id ID]
                           [--steps launch,...] [--confirm-region R] [--no-teardown]
    failover drill-summary [--endpoint-url URL] [--services N] [--instances-per-service M]
                           fresh emulated world → refresh DAGs (dag.test) → drill DAG; ONE JSON line on stdout,
                           counted from the emulator (the DAGs' logs go to stderr)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def register(subparsers: Any) -> None:
    failover = subparsers.add_parser("failover", help="plan, run or drill a regional failover")
    sub = failover.add_subparsers(dest="failover_command", required=True, metavar="SUBCOMMAND")

    def common(p: argparse.ArgumentParser, *, endpoint_required: bool = True) -> None:
        p.add_argument("--endpoint-url", required=endpoint_required, help="AWS endpoint (the emulator); "
                       "omit for real AWS" if endpoint_required else "emulator URL; default: start one")
        p.add_argument("--warehouse-url", help="SQLAlchemy URL of the warehouse (default: the state dir's)")
        p.add_argument("--primary-region", default=None, help="primary region (default: the first configured)")

    p = sub.add_parser("plan", help="render the plan of a failover from the current blueprint (no AWS call)")
    common(p, endpoint_required=False)
    p.add_argument("--capacity-percent", type=int, default=100)
    p.add_argument("--mode", default="live", choices=["dry_run", "drill", "live"])
    p.set_defaults(handler=_plan)

    p = sub.add_parser("run", help="run a failover (or some of its steps) directly")
    common(p)
    p.add_argument("--mode", default="dry_run", choices=["dry_run", "drill", "live"])
    p.add_argument("--run-id", default=None, help="the run id the failover id derives from (re-use it to resume)")
    p.add_argument("--steps", default=None, help="comma-separated subset, e.g. launch (resume a killed launch)")
    p.add_argument("--capacity-percent", type=int, default=100)
    p.add_argument("--confirm-region", default="")
    p.add_argument("--trigger", default="manual", choices=["manual", "sensor"])
    p.add_argument("--detected-at", default=None)
    p.add_argument("--no-teardown", action="store_true", help="keep a drill's instances")
    p.set_defaults(handler=_run)

    p = sub.add_parser("drill-summary", help="drill on a fresh emulated world; print one JSON line")
    common(p, endpoint_required=False)
    p.add_argument("--services", type=int, default=None)
    p.add_argument("--instances-per-service", type=int, default=None)
    p.set_defaults(handler=_drill_summary)


def _warehouse(url: str | None) -> Any:
    from shadowing.settings import state_dir
    from shadowing.warehouse import open_warehouse

    return open_warehouse(url or f"sqlite:///{state_dir() / 'warehouse.db'}")


def _primary(args: argparse.Namespace) -> str:
    from shadowing.settings import primary_regions

    return args.primary_region or primary_regions()[0]


def _plan(args: argparse.Namespace) -> int:
    from shadowing.blueprint.model import Blueprint
    from shadowing.errors import InputError
    from shadowing.failover.plan import build_plan
    from shadowing.warehouse.blueprints import current_blueprint

    primary = _primary(args)
    row = current_blueprint(_warehouse(args.warehouse_url), primary)
    if row is None:
        raise InputError(f"{primary} has no current blueprint", field="primary_region")
    plan = build_plan(Blueprint.from_dict(row.payload), failover_id="fo-plan", mode=args.mode,
                      capacity_percent=args.capacity_percent, blueprint_version=row.version)
    print(plan.render())
    return 0


def _env(endpoint: str | None, warehouse_url: str | None) -> Any:
    from shadowing.failover.clients import FailoverClients
    from shadowing.failover.steps import FailoverEnv

    return FailoverEnv(clients=FailoverClients.for_endpoint(endpoint), engine=_warehouse(warehouse_url))


def _run(args: argparse.Namespace) -> int:
    from shadowing.failover.runner import run_failover
    from shadowing.failover.steps import FailoverRequest
    from shadowing.settings import primary_regions

    request = FailoverRequest(primary_region=_primary(args), mode=args.mode,
                              capacity_percent=args.capacity_percent, confirm_region=args.confirm_region,
                              trigger=args.trigger, detected_at=args.detected_at, triggered_by="cli")
    only = set(args.steps.split(",")) if args.steps else None
    result = run_failover(_env(args.endpoint_url, args.warehouse_url), request,
                          run_id=args.run_id or f"cli__{time.time_ns()}", allowed_primaries=primary_regions(),
                          only=only, teardown=not args.no_teardown)
    print(json.dumps({"failover_id": result["failover_id"], "wall": result["wall"],
                      "finalize": result["results"].get("finalize")}, default=str))
    return 0


def _drill_summary(args: argparse.Namespace) -> int:
    import contextlib
    import logging

    from shadowing.failover.drill import drill_summary

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    out = sys.stdout
    # The DAG runs log to stdout: send them to stderr so that stdout carries exactly the one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        summary = drill_summary(endpoint_url=args.endpoint_url, warehouse_url=args.warehouse_url,
                                primary_region=args.primary_region, services=args.services,
                                instances_per_service=args.instances_per_service)
    out.write(json.dumps(summary, sort_keys=False) + "\n")
    out.flush()
    return 0
