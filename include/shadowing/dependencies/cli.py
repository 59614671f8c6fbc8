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
                        help="AWS VPC flow-log text (header line of field names, or default v2), plain or gzip; "
                             "repeatable (a record found in two files counts once)")
    parser.add_argument("--inventory", metavar="FILE", help="CSV ip,service[,valid_from,valid_to]")
    parser.add_argument("--discovery-logs", action="append", default=[], metavar="FILE",
                        help="Consul / Eureka / Cloud Map logs, plain or gzip; repeatable")
    parser.add_argument("--access-logs", action="append", default=[], metavar="FILE",
                        help="Envoy/Istio access logs, plain or gzip; repeatable")
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

    _check_thresholds(args)
    out = _checked_out(args)
    previous = None
    if args.previous:
        try:
            previous = json.loads(Path(args.previous).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InputError(f"previous graph not readable: {exc}", source=args.previous) from exc
        if not isinstance(previous, dict) or not isinstance(previous.get("edges", []), list):
            raise InputError("previous graph is not a node-link graph (an object with an edges list)",
                             source=args.previous)
    graph = map_dependencies(MapperInputs(
        configs=args.configs, flow_logs=args.flow_logs, inventory=args.inventory,
        discovery_logs=args.discovery_logs, access_logs=args.access_logs, previous=previous,
        min_windows=args.min_windows, min_bytes=args.min_bytes, min_confidence=args.min_confidence))
    if args.validate:
        from shadowing.dependencies.validation import validate_graph

        validate_graph(graph)
    _replace(out, json.dumps(graph, indent=1, sort_keys=False, default=str))
    import sys

    for warning in graph["graph"]["warnings"]:  # what was skipped, on stderr too: the JSON is not always read
        print(f"warning: {' '.join(str(warning).split())}", file=sys.stderr)  # one line each, whatever it quotes
    stats = graph["graph"]["stats"]
    print(f"{out}: {stats['nodes']} nodes, {stats['edges']} edges, {stats['weak_edges']} weak, "
          f"{len(graph['graph']['cycles'])} cycles, {len(graph['graph']['dangling'])} dangling")
    return 0


def _check_thresholds(args: argparse.Namespace) -> None:
    """A confidence outside 0…1 (or nan) or a negative count would turn every edge weak, or none."""
    import math

    from shadowing.errors import InputError

    if not (math.isfinite(args.min_confidence) and 0.0 <= args.min_confidence <= 1.0):
        raise InputError(f"{args.min_confidence} is not a confidence between 0 and 1", field="--min-confidence")
    for option, value in (("--min-windows", args.min_windows), ("--min-bytes", args.min_bytes)):
        if value < 0:
            raise InputError(f"{value} is negative", field=option)


def _checked_out(args: argparse.Namespace) -> Path:
    """`--out` as a path that can take the graph, refused before any work: never a folder, never an input."""
    from shadowing.errors import InputError

    out = Path(args.out)
    if out.is_dir():
        raise InputError("is a folder, not a file for the graph", source=str(out), field="--out")
    inputs = [*args.configs, *args.flow_logs, *args.discovery_logs, *args.access_logs,
              *(p for p in (args.inventory, args.previous) if p)]
    if out.exists() and any(Path(p).exists() and out.samefile(p) for p in inputs):
        raise InputError("is one of the inputs; the graph would overwrite it", source=str(out), field="--out")
    inside = next((p for p in args.configs if Path(p).is_dir() and Path(p).resolve() in out.resolve().parents), None)
    if out.exists() and inside is not None:
        raise InputError(f"is a file of the --configs folder {inside}; the graph would overwrite it",
                         source=str(out), field="--out")
    for parent in out.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{parent} is a file, not a folder", source=str(out), field="--out")
            break
    return out


def _replace(out: Path, text: str) -> None:
    """Write beside `out` and rename over it, so a failed run leaves the previous graph whole."""
    import os
    import tempfile

    from shadowing.errors import InputError

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=str(out), field="--out") from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as a plain write would have made it, not mkstemp's 0600
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, out)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise InputError(f"cannot write: {exc.strerror or exc}", source=str(out), field="--out") from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
