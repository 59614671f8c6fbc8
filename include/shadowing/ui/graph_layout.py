"""Layered layout of a dependency graph (DESIGN §3 node-link JSON) by launch tier, for an SVG drawing.

Tier 0 (launched first: no dependencies) is the left column; callers sit to the right of their callees, so
every acyclic edge points leftwards. Members of a cycle share a tier (they launch as one group) and are kept
adjacent and marked. Within a column nodes are ordered by the mean position of their callees (one barycentre
sweep), which removes most crossings at negligible cost; very tall tiers wrap into sub-columns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

COLUMN_WIDTH = 220
ROW_HEIGHT = 30
MAX_ROWS = 40
MARGIN = 24
NODE_WIDTH = 150


def layout(graph: Mapping[str, Any]) -> dict[str, Any]:
    """Positions for nodes and edges; tolerant of missing tiers, unknown nodes and dangling edges."""
    meta = graph.get("graph") if isinstance(graph.get("graph"), Mapping) else {}
    node_ids = [str(n["id"]) for n in graph.get("nodes", []) if isinstance(n, Mapping) and "id" in n]
    kinds = {str(n["id"]): n.get("kind") for n in graph.get("nodes", []) if isinstance(n, Mapping) and "id" in n}
    known = set(node_ids)
    edges = [e for e in graph.get("edges", []) if isinstance(e, Mapping)
             and str(e.get("source")) in known and str(e.get("target")) in known]

    tiers: list[list[str]] = []
    placed: set[str] = set()
    for tier in meta.get("launch_tiers") or []:
        members = [str(n) for n in tier if str(n) in known and str(n) not in placed]
        placed.update(members)
        tiers.append(members)
    leftover = sorted(known - placed)
    if leftover:  # not in any tier (an old graph without tiers): one extra column, flagged
        tiers.append(leftover)
    cycle_of: dict[str, int] = {}
    for index, cycle in enumerate(meta.get("cycles") or []):
        for member in cycle:
            cycle_of[str(member)] = index

    callees: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        callees[str(edge["source"])].append(str(edge["target"]))

    position: dict[str, float] = {}
    columns: list[dict[str, Any]] = []
    column_x = MARGIN
    max_rows = 0
    for tier_index, members in enumerate(tiers):
        def order_key(node: str) -> tuple[float, int, str]:
            ys = [position[c] for c in callees.get(node, []) if c in position]
            barycentre = sum(ys) / len(ys) if ys else float("inf")
            return (barycentre, cycle_of.get(node, -1), node)

        ordered = sorted(members, key=order_key)
        # Keep each cycle's members adjacent (launched as one group).
        grouped: list[str] = []
        seen_cycles: set[int] = set()
        for node in ordered:
            cycle = cycle_of.get(node)
            if cycle is None:
                grouped.append(node)
            elif cycle not in seen_cycles:
                seen_cycles.add(cycle)
                grouped.extend(n for n in ordered if cycle_of.get(n) == cycle)
        sub_columns = max(1, -(-len(grouped) // MAX_ROWS))
        rows = -(-len(grouped) // sub_columns) if grouped else 0
        max_rows = max(max_rows, rows)
        for i, node in enumerate(grouped):
            position[node] = float(i % rows) if rows else 0.0
        columns.append({"tier": tier_index, "x": column_x, "sub_columns": sub_columns,
                        "label": f"tier {tier_index}" if tier_index < len(tiers) - (1 if leftover else 0)
                        else "untiered",
                        "nodes": grouped, "rows": rows})
        column_x += COLUMN_WIDTH * sub_columns

    nodes: list[dict[str, Any]] = []
    coords: dict[str, tuple[float, float]] = {}
    for column in columns:
        rows = column["rows"] or 1
        for i, node in enumerate(column["nodes"]):
            x = column["x"] + (i // rows) * COLUMN_WIDTH
            y = MARGIN + 20 + (i % rows) * ROW_HEIGHT
            coords[node] = (x, y)
            nodes.append({"id": node, "x": x, "y": y, "tier": column["tier"], "cycle": cycle_of.get(node),
                          "kind": kinds.get(node)})
    laid_edges = []
    for edge in edges:
        source, target = str(edge["source"]), str(edge["target"])
        sx, sy = coords[source]
        tx, ty = coords[target]
        laid_edges.append({"source": source, "target": target, "x1": sx, "y1": sy, "x2": tx + NODE_WIDTH,
                           "y2": ty, "confidence": edge.get("confidence"),
                           "in_cycle": source in cycle_of and cycle_of.get(source) == cycle_of.get(target),
                           "kinds": sorted({str(ev.get("kind")) for ev in edge.get("evidence", [])
                                            if isinstance(ev, Mapping) and ev.get("kind")})})
    return {
        "width": column_x + MARGIN,
        "height": MARGIN * 2 + 20 + max_rows * ROW_HEIGHT,
        "node_width": NODE_WIDTH,
        "row_height": ROW_HEIGHT,
        "tiers": [{"tier": c["tier"], "x": c["x"], "label": c["label"], "size": len(c["nodes"])} for c in columns],
        "nodes": nodes,
        "edges": laid_edges,
        "cycles": [[str(m) for m in c] for c in meta.get("cycles") or []],
        "dangling": list(meta.get("dangling") or []),
        "warnings": [str(w) for w in (meta.get("warnings") or [])],
    }
