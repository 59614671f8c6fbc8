"""`shadowing blueprint …`: refresh a region's blueprint, show the current one, query the history."""

from __future__ import annotations

import argparse
import json
import re
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
    query.add_argument("--region", help="primary region (the :region parameter)")
    query.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a bind parameter: integers as numbers, ISO-8601 instants (e.g. at=2026-03-01T12:00:00Z; "
                            "without an offset: UTC) as timestamps, anything else as text")
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
    import sqlalchemy as sa

    from shadowing.errors import InputError
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.queries import load_query, run_query

    params: dict[str, Any] = {} if args.region is None else {"region": args.region}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"expected KEY=VALUE, got {item!r}", field="--param")
        params[key] = _param_value(value)
    # A parameter left out used to end in SQLAlchemy's traceback; name it instead.
    missing = sorted(set(sa.text(load_query(args.name)).compile().params) - set(params))
    if missing:
        raise InputError(f"query {args.name} needs {', '.join(missing)} (--region or --param KEY=VALUE)",
                         field="--param")
    for row in run_query(open_warehouse(args.warehouse_url), args.name, **params):
        print(json.dumps(row, default=str, sort_keys=True))
    return 0


_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _param_value(value: str) -> Any:
    """A ``--param`` value as the query binds it. Instants become aware UTC datetimes: bound as text, an
    as-of instant was compared with SQLite's stored ``YYYY-MM-DD HH:MM:SS.ffffff`` character by character
    (``T`` sorts after the space), so ``blueprint_as_of`` answered with the wrong version."""
    if value.lstrip("-").isdigit():
        return int(value)
    if _INSTANT.match(value):
        from datetime import UTC, datetime

        from shadowing.errors import InputError

        try:
            instant = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InputError(f"{value!r} is not an ISO-8601 instant ({exc})", field="--param") from exc
        return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    return value
