"""`shadowing blueprint …`: refresh a region's blueprint, show the current one, query the history."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    bp = subparsers.add_parser("blueprint", help="shadow-region blueprints")
    sub = bp.add_subparsers(dest="blueprint_command", required=True, metavar="ACTION")

    refresh = sub.add_parser("refresh", help="build, validate, pre-stage, store and check one region")
    refresh.add_argument("--warehouse-url", required=True, help="SQLAlchemy URL of the warehouse")
    refresh.add_argument("--endpoint-url", help="AWS endpoint (the emulator); default: real AWS")
    refresh.add_argument("--region", action="append", help="primary region (default: SHADOWING_REGION_PAIRS)")
    refresh.add_argument("--no-prestage", action="store_true", help="do not create anything in the shadow")
    refresh.add_argument("--run-id", default="cli", help="recorded as the blueprint's provenance")
    refresh.set_defaults(handler=_refresh)

    show = sub.add_parser("show", help="print the current blueprint (or a version) as JSON")
    show.add_argument("--warehouse-url", required=True)
    show.add_argument("--region", required=True)
    show.add_argument("--version", type=int)
    show.set_defaults(handler=_show)

    query = sub.add_parser("query", help="run one of the documented history queries in include/sql/")
    query.add_argument("--warehouse-url", required=True)
    query.add_argument("name", help="query name (file stem in include/sql/)")
    query.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    query.set_defaults(handler=_query)


def _refresh(args: argparse.Namespace) -> int:
    from shadowing.aws.clients import client
    from shadowing.blueprint.refresh import refresh_region
    from shadowing.errors import InputError
    from shadowing.settings import region_pairs
    from shadowing.warehouse import open_warehouse

    pairs = region_pairs()
    regions = args.region or list(pairs)
    unknown = [r for r in regions if r not in pairs]
    if unknown:
        raise InputError(f"no shadow region configured for {', '.join(unknown)} (SHADOWING_REGION_PAIRS)",
                         field="region")
    engine = open_warehouse(args.warehouse_url)
    cache: dict[tuple[str, str], Any] = {}

    def clients(service: str, region: str) -> Any:
        if (service, region) not in cache:
            cache[(service, region)] = client(service, region, args.endpoint_url)
        return cache[(service, region)]

    ready = True
    for region in regions:
        out = refresh_region(engine, clients, region, pairs[region], run_id=args.run_id,
                             with_prestage=not args.no_prestage)
        ready = ready and bool(out.get("ready"))
        print(json.dumps({k: v for k, v in out.items() if k != "prestage"}, default=str, sort_keys=True))
    return 0 if ready else 1


def _show(args: argparse.Namespace) -> int:
    from shadowing.errors import InputError
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.store import blueprint_version, current_blueprint

    engine = open_warehouse(args.warehouse_url)
    row = blueprint_version(engine, args.region, args.version) if args.version else current_blueprint(engine,
                                                                                                        args.region)
    if row is None:
        which = f"v{args.version} " if args.version else ""
        raise InputError(f"no blueprint {which}for {args.region}", field="region")
    json.dump(row.payload, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


def _query(args: argparse.Namespace) -> int:
    from shadowing.errors import InputError
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.queries import run_query

    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"expected KEY=VALUE, got {item!r}", field="--param")
        params[key] = int(value) if value.lstrip("-").isdigit() else value
    for row in run_query(open_warehouse(args.warehouse_url), args.name, **params):
        print(json.dumps(row, default=str, sort_keys=True))
    return 0
