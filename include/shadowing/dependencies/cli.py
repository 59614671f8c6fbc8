"""`python -m shadowing deps …`: build a dependency graph from local files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deps", help="map service dependencies from configs, flow/discovery/access logs",
        description="Build the dependency graph (networkx node-link JSON; edge source = caller, target = callee).")
    parser.add_argument("--configs", action="append", default=[], metavar="DIR",
                        help="folder (or file) of application configuration; repeatable")
    parser.add_argument("--flow-logs", action="append", default=[], metavar="FILE",
                        help="AWS VPC flow-log text (header line of field names, or default v2); repeatable")
    parser.add_argument("--inventory", metavar="FILE", help="CSV ip,service[,valid_from,valid_to]")
    parser.add_argument("--discovery-logs", action="append", default=[], metavar="FILE",
                        help="Consul / Eureka / Cloud Map logs; repeatable")
    parser.add_argument("--access-logs", action="append", default=[], metavar="FILE",
                        help="Envoy/Istio access logs; repeatable")
    parser.add_argument("--previous", metavar="GRAPH.json", help="previous graph whose evidence decays into this one")
    parser.add_argument("--min-windows", type=int, default=2, help="flow edge needs this many windows (default 2)")
    parser.add_argument("--min-bytes", type=int, default=0, help="flow edge needs this many bytes (default 0)")
    parser.add_argument("--min-confidence", type=float, default=0.5)
    parser.add_argument("--validate", action="store_true", help="run the edge-table and graph checks")
    parser.add_argument("--out", required=True, metavar="GRAPH.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from shadowing.dependencies.mapper import MapperInputs, map_dependencies
    from shadowing.errors import InputError

    previous = None
    if args.previous:
        try:
            previous = json.loads(Path(args.previous).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"previous graph not readable: {exc}", source=args.previous) from exc
    graph = map_dependencies(MapperInputs(
        configs=args.configs, flow_logs=args.flow_logs, inventory=args.inventory,
        discovery_logs=args.discovery_logs, access_logs=args.access_logs, previous=previous,
        min_windows=args.min_windows, min_bytes=args.min_bytes, min_confidence=args.min_confidence))
    if args.validate:
        from shadowing.dependencies.validation import validate_graph

        validate_graph(graph)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(graph, indent=1, sort_keys=False, default=str))
    stats = graph["graph"]["stats"]
    print(f"{out}: {stats['nodes']} nodes, {stats['edges']} edges, {stats['weak_edges']} weak, "
          f"{len(graph['graph']['cycles'])} cycles, {len(graph['graph']['dangling'])} dangling")
    return 0
