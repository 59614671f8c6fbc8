"""The demo world's true graph is recovered from its flow logs (v5 with header, default v2 without)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shadowing.dependencies.mapper import MapperInputs, map_dependencies

traffic = pytest.importorskip("shadowing.world.traffic")
world_app = pytest.importorskip("shadowing.world.app")
world_inventory = pytest.importorskip("shadowing.world.inventory")

START = datetime(2025, 1, 6, 12, tzinfo=UTC)  # daytime: the night-idle worker talks too


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, Path, Path]:
    folder = tmp_path_factory.mktemp("world")
    app = world_app.build_app()
    end = START + timedelta(hours=3)
    inventory = world_inventory.synthetic_inventory(app, START, end, seed=3)
    records = traffic.generate_flow_records(app, inventory, START, end, seed=3)
    inventory_csv = world_inventory.write_inventory_csv(inventory, folder / "inventory.csv")
    v5 = traffic.write_flow_logs(records, folder / "flows-v5.log", version=5)
    v2 = traffic.write_flow_logs(records, folder / "flows-v2.log", version=2)
    return app, inventory_csv, v5, v2


@pytest.mark.parametrize("version", [5, 2])
def test_true_graph_recovered_from_noisy_flow_logs(world: tuple, version: int) -> None:
    app, inventory_csv, v5, v2 = world
    graph = map_dependencies(MapperInputs(flow_logs=[str(v5 if version == 5 else v2)],
                                          inventory=str(inventory_csv)))
    truth = {(e.caller, e.callee) for e in app.edges}
    found = {(e["source"], e["target"]) for e in graph["edges"]}
    precision = len(found & truth) / len(found)
    recall = len(found & truth) / len(truth)
    assert precision >= 0.98 and recall >= 0.98, (found - truth, truth - found)
    stats = graph["graph"]["stats"]
    assert stats["flow_outside_inventory"] > 0  # load-balancer forwarding and health checks excluded
    assert stats["flow_nodata"] > 0
    assert "alb" not in {n["id"] for n in graph["nodes"]}
