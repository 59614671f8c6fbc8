"""`shadowing warehouse prune`: apply the artefact retention policy (what the warehouse_retention DAG runs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    wh = subparsers.add_parser("warehouse", help="warehouse maintenance")
    sub = wh.add_subparsers(dest="warehouse_command", required=True, metavar="ACTION")
    prune = sub.add_parser("prune", help="delete old fingerprints and graphs nothing stands on (see "
                                         "shadowing.warehouse.retention)")
    prune.add_argument("--warehouse-url", required=True, help="SQLAlchemy URL of the warehouse")
    prune.add_argument("--keep-days", type=float, default=7.0, help="keep every row younger than this (default 7)")
    prune.add_argument("--no-daily", action="store_true",
                       help="do not keep each region's last valid row of every older day")
    prune.add_argument("--table", action="append", choices=["capacity_fingerprints", "dependency_graphs"],
                       help="only this table (repeatable; default both)")
    prune.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    prune.set_defaults(handler=_prune)


def _prune(args: argparse.Namespace) -> int:
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.retention import ARTIFACT_TABLES, RetentionPolicy, prune_artifacts

    policy = RetentionPolicy(keep_days=args.keep_days, keep_daily=not args.no_daily)
    results = prune_artifacts(open_warehouse(args.warehouse_url), policy, dry_run=args.dry_run,
                              tables=tuple(args.table or ARTIFACT_TABLES))
    json.dump([r.as_dict() for r in results], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
