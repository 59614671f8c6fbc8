"""Validation of a dependency graph: the Great Expectations suite on its edge table
(include/expectations/dependency_graph_edges.json) plus structural graph checks.

A failure raises ValidationFailed naming the failing check and edge(s); callers keep the last valid graph.
GX is slow to import, so it is imported inside the function that needs it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd

from shadowing.dependencies.model import EVIDENCE_KINDS
from shadowing.errors import ValidationFailed

log = logging.getLogger(__name__)

SUITE_PATH = Path(__file__).resolve().parents[2] / "expectations" / "dependency_graph_edges.json"


def edge_table(graph: dict[str, Any]) -> pd.DataFrame:
    """One row per edge (launch-order, weak and telemetry), with the derived columns the suite checks."""
    nodes = {n.get("id") for n in graph.get("nodes") or [] if isinstance(n, dict)}
    meta = graph.get("graph") or {}
    rows = []
    for group, edges in (("edge", graph.get("edges")), ("weak", meta.get("weak_edges")),
                         ("telemetry", meta.get("telemetry"))):
        for edge in edges or []:
            evidence = edge.get("evidence") or []
            rows.append({
                "group": group, "source": edge.get("source"), "target": edge.get("target"),
                "confidence": edge.get("confidence"),
                "evidence_count": len(evidence),
                "evidence_kinds_valid": all(isinstance(e, dict) and e.get("kind") in EVIDENCE_KINDS
                                            for e in evidence),
            })
    frame = pd.DataFrame(rows, columns=["group", "source", "target", "confidence", "evidence_count",
                                        "evidence_kinds_valid"])
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce").astype("float64")
    frame["source_known"] = frame["source"].isin(nodes)
    frame["target_known"] = frame["target"].isin(nodes)
    frame["self_loop"] = frame["source"].eq(frame["target"])
    return frame


def load_suite_config(path: Path = SUITE_PATH) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _offending(frame: pd.DataFrame, kind: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    if kind == "expect_compound_columns_to_be_unique":
        return frame[frame.duplicated(kwargs["column_list"], keep=False)]
    column = frame[kwargs["column"]]
    if kind == "expect_column_values_to_not_be_null":
        mask = column.isna()
    elif kind == "expect_column_values_to_be_in_set":
        mask = ~column.isin(kwargs["value_set"])
    elif kind == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        mask = column.isna() | (column < low if low is not None else False) | (column > high if high is not None
                                                                                 else False)
    else:
        mask = pd.Series(True, index=frame.index)
    return frame[mask]


def run_edge_suite(frame: pd.DataFrame, suite_path: Path = SUITE_PATH) -> list[str]:
    """Failures of the GX suite on the edge table, each naming the check and the edge(s)."""
    import great_expectations as gx

    config = load_suite_config(suite_path)
    suite = gx.ExpectationSuite(name=config["name"], expectations=config["expectations"], meta=config.get("meta"))
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas("dependency_graph")
             .add_dataframe_asset("edges")
             .add_batch_definition_whole_dataframe("all_edges")
             .get_batch(batch_parameters={"dataframe": frame}))
    result = batch.validate(suite)
    failures: list[str] = []
    for item in result.results:
        if item.success:
            continue
        config_item = item.expectation_config
        kind, kwargs = config_item.type, dict(config_item.kwargs)
        check = (config_item.meta or {}).get("check") or kind
        bad = _offending(frame, kind, kwargs)
        named = ", ".join(f"{r.source} -> {r.target}" for r in bad.head(5).itertuples())
        failures.append(f"{check} ({kind} on {kwargs.get('column') or kwargs.get('column_list')}): {named}")
    return failures


def graph_checks(graph: dict[str, Any]) -> list[str]:
    """Structure: node ids unique; tiers cover every node once and launch callees no later than callers;
    cycles are exactly the strongly connected components of size > 1."""
    failures: list[str] = []
    ids = [n.get("id") for n in graph.get("nodes") or [] if isinstance(n, dict)]
    if len(ids) != len(set(ids)):
        failures.append(f"duplicate node ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    meta = graph.get("graph") or {}
    tiers = meta.get("launch_tiers") or []
    tier_of: dict[str, int] = {}
    for index, tier in enumerate(tiers):
        for node in tier:
            if node in tier_of:
                failures.append(f"launch tiers: {node} appears in tiers {tier_of[node]} and {index}")
            tier_of[node] = index
    missing = set(ids) - set(tier_of)
    if missing:
        failures.append(f"launch tiers: nodes in no tier: {sorted(missing)[:5]}")
    digraph = nx.DiGraph()
    digraph.add_nodes_from(ids)
    for edge in graph.get("edges") or []:
        source, target = edge.get("source"), edge.get("target")
        digraph.add_edge(source, target)
        if source in tier_of and target in tier_of and tier_of[target] > tier_of[source]:
            failures.append(f"launch order: {source} -> {target} launches the callee after its caller")
    expected_cycles = sorted(sorted(c) for c in nx.strongly_connected_components(digraph) if len(c) > 1)
    if sorted(sorted(c) for c in meta.get("cycles") or []) != expected_cycles:
        failures.append(f"cycles: graph lists {meta.get('cycles')}, edges give {expected_cycles}")
    for cycle in expected_cycles:
        if len({tier_of.get(n) for n in cycle}) > 1:
            failures.append(f"cycle {cycle} is split over several launch tiers")
    return failures


def validate_graph(graph: dict[str, Any], suite_path: Path = SUITE_PATH) -> dict[str, Any]:
    """Run both validations; raise ValidationFailed naming every failing check and edge."""
    failures = run_edge_suite(edge_table(graph), suite_path) + graph_checks(graph)
    if failures:
        raise ValidationFailed(f"dependency graph invalid: {failures[0]}"
                               + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""), failures)
    return {"success": True, "edges": len(graph.get("edges") or []), "checks": "gx+graph"}
