"""Airflow-aware steps of the dependency_mapper DAG: connections → clients, warehouse, data interval."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

FLOW_LOG_GROUP = "/shadowing/vpc-flow-logs"
DISCOVERY_LOG_GROUP = "/shadowing/discovery"
ACCESS_LOG_GROUP = "/shadowing/access-logs"


def window(context: dict[str, Any]) -> tuple[datetime, datetime]:
    end = context.get("data_interval_end") or datetime.now(UTC)
    start = context.get("data_interval_start") or end - timedelta(hours=1)
    if start >= end:  # manual runs: the hour before
        start = end - timedelta(hours=1)
    return start, end


def build_region_graph(region: str, configs_location: str, start: datetime, end: datetime,
                       half_life_hours: float = 24.0, min_windows: int = 2) -> dict[str, Any]:
    """Extract (configs, EC2 inventory, CloudWatch Logs) and build the graph, decaying the last valid one in."""
    from shadowing.dependencies.aws_sources import (
        ec2_inventory,
        fetch_log_lines,
        flow_log_fields,
        load_configs,
    )
    from shadowing.dependencies.flowlogs import FlowOptions, read_flow_log
    from shadowing.dependencies.graph import GraphOptions
    from shadowing.dependencies.mapper import map_sources
    from shadowing.orchestration.clients import aws_client, warehouse_engine
    from shadowing.warehouse.store import latest_valid_graph

    logs, ec2 = aws_client("logs", region), aws_client("ec2", region)
    findings = load_configs(configs_location, aws_client("s3", region) if configs_location.startswith("s3://")
                            else None)
    inventory = ec2_inventory(ec2)
    fields, flow_lines = flow_log_fields(ec2, FLOW_LOG_GROUP, fetch_log_lines(logs, FLOW_LOG_GROUP, start, end))
    tables = [read_flow_log(("\n".join(flow_lines) + "\n").encode(), fields, f"{FLOW_LOG_GROUP} ({region})")] \
        if flow_lines else []
    discovery = fetch_log_lines(logs, DISCOVERY_LOG_GROUP, start, end)
    access = fetch_log_lines(logs, ACCESS_LOG_GROUP, start, end)
    previous = latest_valid_graph(warehouse_engine(), region)
    graph = map_sources(findings, inventory, flow_tables=tables, discovery_lines=discovery, access_lines=access,
                        previous=previous.payload if previous else None,
                        flow_options=FlowOptions(min_windows=min_windows),
                        graph_options=GraphOptions(half_life_hours=half_life_hours), now=end.timestamp(),
                        region=region)
    graph["graph"]["window"] = {"start": start.isoformat(), "end": end.isoformat()}
    log.info("%s: %s", region, graph["graph"]["stats"])
    return graph


def validate_and_store(graph: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    """Store the graph (valid or not); an invalid one is kept for inspection, never made current, and raises."""
    from shadowing.dependencies.validation import validate_graph
    from shadowing.errors import ValidationFailed
    from shadowing.orchestration.clients import warehouse_engine
    from shadowing.warehouse.store import save_graph

    region = graph["graph"].get("region") or "unknown"
    span = graph["graph"].get("window") or {}
    start = datetime.fromisoformat(span["start"]) if span.get("start") else None
    end = datetime.fromisoformat(span["end"]) if span.get("end") else None
    try:
        validate_graph(graph)
    except ValidationFailed as exc:
        save_graph(warehouse_engine(), region=region, graph=graph, valid=False, errors=exc.failures,
                   run_id=run_id, window_start=start, window_end=end)
        raise
    row = save_graph(warehouse_engine(), region=region, graph=graph, valid=True, run_id=run_id,
                     window_start=start, window_end=end)
    return {"region": region, "graph_id": row, "edges": len(graph["edges"]), "nodes": len(graph["nodes"])}
