"""`python -m shadowing world …`: seed, publish, chaos, truth and export the emulated primary region."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from shadowing.errors import InputError


def _positive(kind: type = int):  # type: ignore[no-untyped-def]
    def parse(text: str):  # type: ignore[no-untyped-def]
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    return parse


def _when(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ISO-8601 time, got {text!r}") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    world = subparsers.add_parser("world", help="the emulated primary region (demo and tests)")
    sub = world.add_subparsers(dest="world_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("seed", help="create (or repair) an emulated primary region (default us-east-1)")
    p.add_argument("--endpoint-url", required=True, help="AWS endpoint, e.g. the moto server URL")
    p.add_argument("--region", default="us-east-1",
                   help="primary region to seed (one world per region; its AZs are <region>a, b and c)")
    p.add_argument("--services", type=_positive(), help="generated app of N services (default: shopfront)")
    p.add_argument("--instances-per-service", type=_positive())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-days", type=_positive(float), help="days of 5-minute CPU/memory/network history")
    p.add_argument("--secondary-history-days", type=_positive(float),
                   help="days of history for disk, connections and latency")
    p.add_argument("--flow-minutes", type=_positive(),
                   help="minutes of flow/discovery logs (default 60; 5 for worlds above 100 instances)")
    p.set_defaults(handler=_seed)

    p = sub.add_parser("publish", help="publish live 1-minute metrics and log lines until SIGTERM")
    p.add_argument("--endpoint-url", required=True)
    p.add_argument("--interval", type=_positive(float), default=60.0)
    p.add_argument("--once", action="store_true", help="publish the minutes due and exit")
    p.set_defaults(handler=_publish)

    p = sub.add_parser("chaos", help="fail or heal the primary region")
    p.add_argument("--endpoint-url", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--fail-primary", action="store_true")
    g.add_argument("--heal-primary", action="store_true")
    p.set_defaults(handler=_chaos)

    p = sub.add_parser("truth", help="write the ground truth (true graph, peak demand) as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--endpoint-url", help="read the seeded world's parameters from this endpoint")
    p.add_argument("--services", type=_positive())
    p.add_argument("--instances-per-service", type=_positive())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=_positive(float), default=7.0)
    p.set_defaults(handler=_truth)

    p = sub.add_parser("export", help="write flow logs (v5, v2), discovery.log, inventory.csv and truth.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--endpoint-url", help="export the seeded world (without: a synthetic world, no AWS)")
    p.add_argument("--start", type=_when)
    p.add_argument("--end", type=_when)
    p.add_argument("--services", type=_positive())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flows-per-edge", type=_positive(), default=1)
    p.set_defaults(handler=_export)


def _clients(url: str, region: str = "us-east-1"):  # type: ignore[no-untyped-def]
    import logging

    logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
    from shadowing.world.state import WorldClients
    return WorldClients.connect(url, region)


def _seed(args: argparse.Namespace) -> int:
    from shadowing.world.seeding import seed_world

    report = seed_world(_clients(args.endpoint_url, args.region), services=args.services,
                        instances_per_service=args.instances_per_service, seed=args.seed,
                        history_days=args.history_days, secondary_history_days=args.secondary_history_days,
                        flow_minutes=args.flow_minutes, progress=lambda m: print(m, file=sys.stderr))
    total = sum(report.timings.values())
    print(json.dumps({**report.as_dict(), "total_s": round(total, 2)}, indent=2))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from shadowing.world.live import publish_loop, publish_once

    clients = _clients(args.endpoint_url)
    if args.once:
        print(json.dumps(asdict(publish_once(clients))))
        return 0
    publish_loop(clients, args.interval)
    return 0


def _chaos(args: argparse.Namespace) -> int:
    from shadowing.world.live import chaos

    print(json.dumps(chaos(_clients(args.endpoint_url), fail=bool(args.fail_primary))))
    return 0


def _truth(args: argparse.Namespace) -> int:
    from shadowing.world.app import build_app
    from shadowing.world.truth import ground_truth, write_truth

    end = datetime.now(UTC).replace(second=0, microsecond=0)
    if args.endpoint_url:
        from shadowing.world.live import app_of
        from shadowing.world.seeding import inventory_from_aws
        from shadowing.world.state import parse_iso, require_state

        clients = _clients(args.endpoint_url)
        state = require_state(clients.ssm)
        app = app_of(state)
        inv = inventory_from_aws(clients, state, app)
        counts: dict[str, int] = {}
        for e in inv.endpoints:
            if e.kind == "instance" and e.valid_to is None:
                counts[e.service] = counts.get(e.service, 0) + 1
        truth = ground_truth(app, state.seed, start=parse_iso(state.history_start), end=end,
                             instance_counts=counts, world_id=state.world_id)
    else:
        app = build_app(args.services, args.seed, args.instances_per_service)
        truth = ground_truth(app, args.seed, start=end - timedelta(days=args.days), end=end)
    print(write_truth(truth, args.out))
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.start and args.end and args.end <= args.start:
        raise InputError("--end must be after --start", field="--end")
    if args.endpoint_url:
        from shadowing.world.live import export_world

        paths = export_world(_clients(args.endpoint_url), args.out, start=args.start, end=args.end)
    else:
        from shadowing.world.app import build_app
        from shadowing.world.inventory import synthetic_inventory
        from shadowing.world.live import write_bundle

        end = args.end or datetime.now(UTC).replace(second=0, microsecond=0)
        start = args.start or end - timedelta(hours=1)
        app = build_app(args.services, args.seed)
        inv = synthetic_inventory(app, start, end, args.seed)
        paths = write_bundle(app, inv, args.seed, start, end, args.out, flows_per_edge=args.flows_per_edge)
    print(json.dumps(paths, indent=2))
    return 0
