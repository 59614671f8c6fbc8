"""The dependency_mapper's validate-and-store task: a graph failing validation is stored for inspection, the
task fails, and the last valid graph stays current (DESIGN §3: nothing good is lost)."""

from __future__ import annotations

import copy

import pytest

from shadowing.dependencies.inventory import inventory_from_records
from shadowing.dependencies.mapper import map_sources
from shadowing.errors import ValidationFailed

REGION = "us-east-1"


def region_graph() -> dict:
    from shadowing.dependencies.configs import ConfigFindings

    inventory = inventory_from_records([{"ip": "10.0.0.1", "service": "web"}, {"ip": "10.0.0.2", "service": "api"}])
    graph = map_sources(ConfigFindings(), inventory, region=REGION, now=1_736_000_000.0)
    graph["graph"]["window"] = {"start": "2025-01-04T13:00:00+00:00", "end": "2025-01-04T14:00:00+00:00"}
    return graph


def test_invalid_graph_never_replaces_the_last_valid_one(warehouse_conn_env: str) -> None:
    from shadowing.orchestration.dependencies import validate_and_store
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.store import latest_valid_graph

    good = region_graph()
    stored = validate_and_store(good, "run-1")
    assert stored["region"] == REGION

    bad = copy.deepcopy(good)
    bad["nodes"].append(dict(bad["nodes"][0]))  # duplicate node id: a graph check fails
    with pytest.raises(ValidationFailed, match="duplicate node ids"):
        validate_and_store(bad, "run-2")

    current = latest_valid_graph(open_warehouse(warehouse_conn_env), REGION)
    assert current is not None and current.payload == good
