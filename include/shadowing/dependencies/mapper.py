"""The dependency mapper end to end: configs + inventory + flow/discovery/access logs → graph.

`map_dependencies` reads local files (the CLI); `map_sources` takes what the DAG already fetched from AWS
(flow-log tables, log lines, an inventory), so both paths share one core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from shadowing.dependencies.accesslogs import parse_access_file, parse_access_lines
from shadowing.dependencies.configs import ConfigFindings, extract_configs
from shadowing.dependencies.discovery import parse_discovery_file, parse_discovery_lines
from shadowing.dependencies.flowlogs import FlowOptions, infer_flow_edges, infer_flow_files
from shadowing.dependencies.graph import GraphOptions, Observations, build_graph
from shadowing.dependencies.inventory import Inventory, load_inventory
from shadowing.errors import InputError


@dataclass
class MapperInputs:
    configs: Sequence[str] = ()
    flow_logs: Sequence[str] = ()
    inventory: str | None = None
    discovery_logs: Sequence[str] = ()
    access_logs: Sequence[str] = ()
    previous: dict[str, Any] | None = None
    min_windows: int = 2
    min_bytes: int = 0
    min_confidence: float = 0.5
    window_seconds: int = 60
    region: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def map_dependencies(inputs: MapperInputs, now: float | None = None) -> dict[str, Any]:
    findings = extract_configs(inputs.configs) if inputs.configs else ConfigFindings()
    inventory = load_inventory(inputs.inventory) if inputs.inventory else None
    if inputs.flow_logs and inventory is None:
        raise InputError("--flow-logs needs --inventory (ip,service[,valid_from,valid_to]) to name services",
                         source=inputs.flow_logs[0])
    observations = observe(findings, inventory, (),
                           [parse_discovery_file(p, inventory) for p in inputs.discovery_logs],
                           [parse_access_file(p, inventory) for p in inputs.access_logs],
                           FlowOptions(window_seconds=inputs.window_seconds, min_windows=inputs.min_windows,
                                       min_bytes=inputs.min_bytes), flow_files=inputs.flow_logs)
    return build_graph(findings, observations, previous=inputs.previous,
                       options=GraphOptions(min_confidence=inputs.min_confidence), now=now, region=inputs.region)


def observe(findings: ConfigFindings, inventory: Inventory | None,
            flow_tables: Iterable[pa.Table | pa.RecordBatch],
            discoveries: Sequence[Any], access: Sequence[Any], flow_options: FlowOptions,
            flow_files: Sequence[str] = ()) -> Observations:
    observations = Observations()
    if inventory is not None:
        for name in inventory.services:
            if findings.catalog.resolve(name) is None:
                observations.nodes.setdefault(name, {"source": "inventory", "aliases": []})
        listen: dict[str, set[int]] = {}
        for name in inventory.services:
            canonical = findings.catalog.resolve(name)
            if canonical:
                listen[name] = set(findings.catalog.services[canonical].listen_ports)
        flow_options.listen_ports = {**listen, **flow_options.listen_ports}
        result = infer_flow_files(flow_files, inventory, flow_options) if flow_files else \
            infer_flow_edges(flow_tables, inventory, flow_options)
        observations.references += result.references + result.rejected
        observations.warnings += result.warnings
        observations.observed_services = {findings.catalog.resolve(s) or s for s in result.observed_services}
        observations.stats.update({f"flow_{k}": v for k, v in result.stats.items()})
    for part in [*discoveries, *access]:
        observations.references += part.references
        for name, attrs in part.nodes.items():
            observations.nodes.setdefault(name, attrs)
        observations.warnings += getattr(part, "warnings", [])
        for key, value in part.stats.items():
            observations.stats[key] = observations.stats.get(key, 0) + value
    return observations


def map_sources(findings: ConfigFindings, inventory: Inventory | None, *, flow_tables: Iterable[pa.Table] = (),
                discovery_lines: Iterable[str] = (), access_lines: Iterable[str] = (),
                previous: dict[str, Any] | None = None, flow_options: FlowOptions | None = None,
                graph_options: GraphOptions | None = None, now: float | None = None,
                region: str | None = None) -> dict[str, Any]:
    """The DAG's entry point: sources already fetched (CloudWatch Logs lines, EC2 inventory)."""
    discoveries = [parse_discovery_lines(discovery_lines, inventory, "CloudWatch Logs discovery")]
    access = [parse_access_lines(access_lines, inventory, "CloudWatch Logs access")]
    observations = observe(findings, inventory, flow_tables if inventory is not None else (), discoveries, access,
                           flow_options or FlowOptions())
    return build_graph(findings, observations, previous=previous, options=graph_options, now=now, region=region)
