"""The demo world's true graph, recovered by `python -m shadowing deps` from what a team would have.

Inputs are the shopfront application's configuration (include/apps/shopfront: k8s manifests, compose file,
env file) and an exported synthetic world (`python -m shadowing world export`: flow logs v5 with a header and
default v2 without one, a Consul discovery log, the time-ranged inventory, and truth.json). Config-visible edges
must come from the configuration alone, traffic-only ones from the flow logs, and both cycles
(cart ↔ recommendation, checkout ↔ payment) must be reported and launched as one group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shadowing.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "include" / "apps" / "shopfront"
START, END = "2025-01-06T11:00:00+00:00", "2025-01-06T12:00:00+00:00"  # daytime: the night-idle worker talks

pytest.importorskip("shadowing.world.live")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("shopfront")
    assert main(["world", "export", "--out", str(folder), "--start", START, "--end", END]) == 0
    return folder, json.loads((folder / "truth.json").read_text())


def deps(out: Path, *args: str) -> dict[str, Any]:
    assert main(["deps", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def pairs(edges: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["source"], e["target"]) for e in edges}


@pytest.mark.parametrize("version", ["v5", "v2"])
def test_true_graph_recovered(world: tuple[Path, dict[str, Any]], tmp_path: Path, version: str) -> None:
    folder, truth = world
    graph = deps(tmp_path / "g.json", "--configs", str(CONFIGS),
                 "--flow-logs", str(folder / f"flow-logs-{version}.log"),
                 "--discovery-logs", str(folder / "discovery.log"), "--inventory", str(folder / "inventory.csv"))
    true_edges = pairs(truth["edges"])
    found = pairs(graph["edges"])
    precision, recall = len(found & true_edges) / len(found), len(found & true_edges) / len(true_edges)
    assert precision >= 0.98 and recall >= 0.98, (sorted(found - true_edges), sorted(true_edges - found))

    kinds = {(e["source"], e["target"]): {ev["kind"] for ev in e["evidence"]} for e in graph["edges"]}
    for pair in map(tuple, truth["traffic_only_edges"]):
        assert "flow" in kinds[pair] and "config" not in kinds[pair], (pair, kinds[pair])

    meta = graph["graph"]
    assert sorted(sorted(c) for c in truth["cycles"]) == meta["cycles"]
    tier_of = {name: i for i, tier in enumerate(meta["launch_tiers"]) for name in tier}
    assert set(tier_of) == {n["id"] for n in graph["nodes"]}
    for cycle in meta["cycles"]:  # a cycle is launched as one group: all its members in one tier
        assert len({tier_of[name] for name in cycle}) == 1, (cycle, meta["launch_tiers"])
    for caller, callee in found:  # dependencies first
        assert tier_of[callee] < tier_of[caller] or tier_of[callee] == tier_of[caller] and any(
            {caller, callee} <= set(c) for c in meta["cycles"]), (caller, callee, meta["launch_tiers"])


def test_config_visible_edges_from_configs_alone(world: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, truth = world
    graph = deps(tmp_path / "g.json", "--configs", str(CONFIGS))
    found = pairs(graph["edges"])
    config_edges = set(map(tuple, truth["config_edges"]))
    assert config_edges <= found, sorted(config_edges - found)
    assert not found & set(map(tuple, truth["traffic_only_edges"]))
    assert found <= pairs(truth["edges"]), sorted(found - pairs(truth["edges"]))
    assert graph["graph"]["cycles"] == [["cart", "recommendation"]]  # checkout ↔ payment needs the traffic


@pytest.mark.parametrize("order", [("v5", "v2"), ("v2", "v5")])
def test_the_same_traffic_in_v5_and_v2_gives_the_v5_graph(world: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          order: tuple[str, str]) -> None:
    """Both exports of one world hold the same records (v2 = v5 without its extra fields). Counted twice, the
    v2 copies (no tcp-flags) made api-gateway's ephemeral port 32996 as busy as a listening endpoint and the
    lower-port rule oriented them as a weak phantom search -> api-gateway (the true edge is api-gateway -> search
    on 33000, which search listens on above the ephemeral floor). Each record now counts once, from its v5 copy."""
    folder, truth = world
    common = ["--configs", str(CONFIGS), "--discovery-logs", str(folder / "discovery.log"),
              "--inventory", str(folder / "inventory.csv")]
    alone = deps(tmp_path / "v5.json", *common, "--flow-logs", str(folder / "flow-logs-v5.log"))
    capsys.readouterr()
    both = deps(tmp_path / "both.json", *common,
                *[arg for version in order for arg in ("--flow-logs", str(folder / f"flow-logs-{version}.log"))])
    assert pairs(both["edges"]) == pairs(truth["edges"])
    assert both["graph"]["weak_edges"] == alone["graph"]["weak_edges"] == []
    assert [(e["source"], e["target"], [x for x in e["evidence"] if x["kind"] != "config"]) for e in both["edges"]] \
        == [(e["source"], e["target"], [x for x in e["evidence"] if x["kind"] != "config"]) for e in alone["edges"]]
    stats = both["graph"]["stats"]
    assert stats["flow_used"] == alone["graph"]["stats"]["flow_used"] == stats["flow_duplicates"]
    err = capsys.readouterr().err
    assert f"flow-logs-v2.log: {stats['flow_duplicates']} flow record(s) also read from " \
           f"{folder / 'flow-logs-v5.log'} counted once" in err, err
