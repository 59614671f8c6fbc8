"""Validation: the GX edge suite and the graph checks name the failing edge and check."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from shadowing.dependencies.mapper import MapperInputs, map_dependencies
from shadowing.dependencies.validation import SUITE_PATH, edge_table, graph_checks, validate_graph
from shadowing.errors import ValidationFailed

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "deps"


@pytest.fixture(scope="module")
def graph() -> dict:
    return map_dependencies(MapperInputs(configs=[str(FIXTURES / "dsb-socialnetwork" / "socialNetwork")]))


def test_suite_is_kept_as_json_in_include_expectations() -> None:
    assert SUITE_PATH.parent.name == "expectations" and SUITE_PATH.exists()


def test_valid_graph_passes(graph: dict) -> None:
    assert validate_graph(graph)["success"] is True
    assert len(edge_table(graph)) == len(graph["edges"]) + len(graph["graph"]["weak_edges"]) + 13


@pytest.mark.parametrize("corrupt, message", [
    (lambda g: g["edges"][0].update(target="nowhere"), "callee is a node"),
    (lambda g: g["edges"][0].update(target=g["edges"][0]["source"]), "no self-loops"),
    (lambda g: g["edges"][0].update(confidence=1.7), "confidence in [0, 1]"),
    (lambda g: g["edges"][0].update(evidence=[]), "keeps its evidence"),
])
def test_broken_edges_are_named(graph: dict, corrupt, message: str) -> None:
    broken = copy.deepcopy(graph)
    corrupt(broken)
    with pytest.raises(ValidationFailed) as info:
        validate_graph(broken)
    assert message in str(info.value)
    edge = broken["edges"][0]
    assert f"{edge['source']} -> {edge['target']}" in str(info.value)


def test_graph_checks_catch_bad_order_and_cycles(graph: dict) -> None:
    broken = copy.deepcopy(graph)
    broken["graph"]["launch_tiers"] = list(reversed(broken["graph"]["launch_tiers"]))
    assert any("launches the callee after its caller" in f for f in graph_checks(broken))
    broken = copy.deepcopy(graph)
    broken["graph"]["cycles"] = [["a", "b"]]
    assert any(f.startswith("cycles:") for f in graph_checks(broken))
