"""Merge every piece of evidence into one dependency graph (DESIGN §3, networkx node-link JSON).

Each edge keeps its evidence; confidence combines the pieces as independent signals, 1 − Π(1 − sᵢ·wᵢ),
where wᵢ is a weight that decays with the age of the evidence (so retired edges fade over runs). Edges below
`min_confidence` are not launch-order edges: they are kept under graph.weak_edges with the reason. Telemetry
sinks (span/metric collectors) are recorded under graph.telemetry, consistently, and not used for ordering.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shadowing.dependencies.configs import ConfigFindings
from shadowing.dependencies.model import STRENGTH, Catalog, Reference

if TYPE_CHECKING:
    import networkx as nx

SCHEMA_VERSION = 1


@dataclass
class GraphOptions:
    min_confidence: float = 0.5
    half_life_hours: float = 24.0  # previous evidence loses half its weight per half-life
    min_weight: float = 0.05  # evidence lighter than this is forgotten
    include_telemetry: bool = False  # telemetry sinks as launch-order edges (default: listed apart)


@dataclass
class Observations:
    """Non-config evidence gathered for one window: flow, discovery and access-log references."""

    references: list[Reference] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # discovered services → attributes
    observed_services: set[str] = field(default_factory=set)  # services seen at all in traffic
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _evidence(ref: Reference, now: float) -> dict[str, Any]:
    strength = ref.extra.get("strength", STRENGTH.get(ref.strength_key, 0.5))
    return {"kind": ref.kind, "detail": ref.detail, "basis": ref.strength_key,
            "first_seen": ref.first_seen if ref.first_seen is not None else now,
            "last_seen": ref.last_seen if ref.last_seen is not None else now,
            "count": int(ref.count), "strength": round(float(strength), 4), "weight": 1.0,
            **{k: v for k, v in ref.extra.items() if k in {"port", "windows", "bytes", "rejected"}}}


def confidence_of(evidence: Iterable[dict[str, Any]]) -> float:
    miss = 1.0
    for item in evidence:
        miss *= 1.0 - max(0.0, min(1.0, float(item.get("strength", 0)) * float(item.get("weight", 1))))
    return round(1.0 - miss, 4)


def build_graph(findings: ConfigFindings | None, observations: Observations | None = None, *,
                previous: dict[str, Any] | None = None, options: GraphOptions | None = None,
                now: float | None = None, region: str | None = None) -> dict[str, Any]:
    """The dependency graph; never raises on odd input (problems become warnings)."""
    options = options or GraphOptions()
    now = time.time() if now is None else now
    findings = findings or ConfigFindings()
    observations = observations or Observations()
    catalog: Catalog = findings.catalog
    warnings: list[str] = list(findings.warnings) + list(observations.warnings)
    for name, attrs in observations.nodes.items():
        info = catalog.add(name, source=attrs.get("source"))
        for alias in attrs.get("aliases", []):
            catalog.alias(alias, info.name)

    edges: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    unresolved: list[dict[str, Any]] = []
    for ref in [*findings.references, *observations.references]:
        caller, callee = catalog.resolve(ref.caller) or ref.caller, catalog.resolve(ref.target)
        if callee is None and ref.kind == "flow":  # both ends of a mapped flow are inventory services
            callee = catalog.add(ref.target, source="flow logs").name
        if callee is None:
            unresolved.append({"source": caller, "target": ref.target, "port": ref.port, "detail": ref.detail})
            continue
        if caller == callee:
            continue
        if caller not in catalog.services:
            catalog.add(caller)
        if ref.strength_key == "depends_on" and findings.addressed.get(caller) \
                and callee not in findings.addressed[caller]:
            ref = Reference(ref.caller, ref.target, ref.port, "depends_on_unaddressed",
                            ref.detail + f"; {caller} holds no address of {callee} in its configuration",
                            ref.kind, ref.first_seen, ref.last_seen, ref.count, dict(ref.extra))
        item = _evidence(ref, now)
        if ref.port is not None:
            item.setdefault("port", int(ref.port))
        key = (item["kind"], item["detail"])
        existing = edges[(caller, callee)].get(key)
        if existing:
            existing["count"] += item["count"]
            existing["first_seen"] = min(existing["first_seen"], item["first_seen"])
            existing["last_seen"] = max(existing["last_seen"], item["last_seen"])
            existing["strength"] = max(existing["strength"], item["strength"])
        else:
            edges[(caller, callee)][key] = item

    if previous:
        _fold_previous(edges, previous, catalog, options, now, warnings)

    # Conflicts: a configured edge between two services seen in traffic, with no traffic between them.
    flow_edges = {k for k, ev in edges.items() if any(e["kind"] in {"flow", "access_log"} for e in ev.values())}
    conflicts: dict[tuple[str, str], str] = {}
    if observations.observed_services:
        for (caller, callee), ev in edges.items():
            if (caller, callee) in flow_edges or not any(e["kind"] == "config" for e in ev.values()):
                continue
            if caller in observations.observed_services and callee in observations.observed_services:
                conflicts[(caller, callee)] = "configured, but no traffic seen although both services talked"
    rejected = [k for k, ev in edges.items() if ev and all(e.get("rejected") for e in ev.values())]

    graph_edges: list[dict[str, Any]] = []
    weak: list[dict[str, Any]] = []
    telemetry: list[dict[str, Any]] = []
    for (caller, callee), ev in sorted(edges.items()):
        evidence = sorted(ev.values(), key=lambda e: (e["kind"], e["detail"]))
        conf = confidence_of(e for e in evidence if not e.get("rejected"))
        edge: dict[str, Any] = {"source": caller, "target": callee, "confidence": conf, "evidence": evidence}
        if (caller, callee) in conflicts:
            edge["conflict"] = conflicts[(caller, callee)]
            edge["confidence"] = conf = round(conf * 0.8, 4)
        if catalog.services[callee].kind == "telemetry" and not options.include_telemetry:
            telemetry.append(edge)
        elif conf < options.min_confidence:
            edge["reason"] = _weak_reason(evidence)
            weak.append(edge)
        else:
            graph_edges.append(edge)
    for edge in weak:
        warnings.append(f"weak edge {edge['source']} -> {edge['target']} (confidence {edge['confidence']}): "
                        f"{edge['reason']}")
    for caller, callee in rejected:
        warnings.append(f"declared-but-blocked: {caller} -> {callee} only seen as REJECTed flows")
    for (caller, callee), why in conflicts.items():
        warnings.append(f"conflicting evidence {caller} -> {callee}: {why}")

    dangling = _dangling(findings.dangling + unresolved, catalog)
    nodes = [catalog.services[n].to_node() for n in sorted(catalog.services)]
    for node in nodes:
        if node["id"] in observations.nodes:
            node["discovered"] = True
    tiers, cycles = launch_order_of([n["id"] for n in nodes], [(e["source"], e["target"]) for e in graph_edges])
    graph_meta = {
        "schema_version": SCHEMA_VERSION,
        "region": region,
        "generated_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "launch_tiers": tiers, "cycles": cycles, "dangling": dangling, "warnings": warnings,
        "weak_edges": weak, "telemetry": telemetry,
        "stats": {"nodes": len(nodes), "edges": len(graph_edges), "weak_edges": len(weak),
                  "telemetry_edges": len(telemetry), **observations.stats},
    }
    return {"directed": True, "multigraph": False, "graph": graph_meta, "nodes": nodes, "edges": graph_edges}


def _weak_reason(evidence: list[dict[str, Any]]) -> str:
    bases = sorted({e["basis"] for e in evidence})
    if bases == ["depends_on_unaddressed"]:
        return "only a docker-compose depends_on, and the caller holds no address of the callee"
    if bases == ["network_policy"]:
        return "only a NetworkPolicy allow-list (permission, not a call)"
    if all(e["kind"] == "flow" for e in evidence):
        return "traffic below the window/byte thresholds"
    return "evidence too weak or faded: " + ", ".join(bases)


def _dangling(items: list[dict[str, Any]], catalog: Catalog) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, str], dict[str, Any]] = {}
    for item in items:
        target = str(item["target"])
        if catalog.resolve(target):
            continue
        key = (item.get("source"), target.lower())
        if key not in seen:
            seen[key] = {k: v for k, v in item.items() if v is not None}
    return sorted(seen.values(), key=lambda d: (str(d.get("source")), d["target"]))


def _fold_previous(edges: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]], previous: dict[str, Any],
                   catalog: Catalog, options: GraphOptions, now: float, warnings: list[str]) -> None:
    """Carry the previous graph's evidence forward, decayed by its age, so edges fade rather than flap."""
    try:
        then = datetime.fromisoformat(previous["graph"]["generated_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        warnings.append("previous graph has no generated_at; its evidence was not carried forward")
        return
    factor = 0.5 ** (max(0.0, now - then) / 3600.0 / options.half_life_hours)
    meta = previous.get("graph") if isinstance(previous.get("graph"), dict) else {}
    old_edges = [e for part in (previous.get("edges"), meta.get("weak_edges"), meta.get("telemetry"))
                 if isinstance(part, list) for e in part]
    skipped = 0
    for edge in old_edges:
        if not isinstance(edge, dict):
            skipped += 1
            continue
        try:
            caller, callee = str(edge["source"]), str(edge["target"])
        except (KeyError, TypeError):
            continue
        if catalog.resolve(caller) is None:
            catalog.add(caller, source="previous graph")
        if catalog.resolve(callee) is None:
            catalog.add(callee, source="previous graph")
        caller, callee = catalog.resolve(caller) or caller, catalog.resolve(callee) or callee
        evidence = edge.get("evidence") or []
        for item in evidence if isinstance(evidence, list) else [evidence]:
            if not _carried_evidence(item):
                skipped += 1
                continue
            key = (item.get("kind"), item.get("detail"))
            weight = float(item.get("weight", 1.0)) * factor
            current = edges[(caller, callee)].get(key)
            if current is not None:  # seen again: counts accumulate, first_seen is remembered
                current["count"] += int(item.get("count", 0))
                current["first_seen"] = min(current["first_seen"], item.get("first_seen", current["first_seen"]))
                continue
            if weight < options.min_weight:
                continue
            edges[(caller, callee)][key] = {**item, "weight": round(weight, 4)}
        if not edges[(caller, callee)]:
            del edges[(caller, callee)]
    if skipped:
        warnings.append(f"previous graph: {skipped} edge(s) or evidence item(s) not shaped as this program writes "
                        "them (an object with numeric weight, count, first_seen) were not carried forward")


def _carried_evidence(item: Any) -> bool:
    """An evidence item of a previous graph that can be folded: the numbers it is decayed and merged by."""
    if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
        return False
    numbers = {"weight": item.get("weight", 1.0), "count": item.get("count", 0),
               "first_seen": item.get("first_seen", 0.0)}
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers.values())


def launch_order(digraph: nx.DiGraph) -> tuple[list[list[str]], list[list[str]]]:
    """Tiers (dependencies first) of the condensation, and the cycles (SCCs of size > 1) launched as groups."""
    return launch_order_of(list(digraph.nodes), list(digraph.edges))


def launch_order_of(nodes: Iterable[str], edges: Iterable[tuple[str, str]],
                    ) -> tuple[list[list[str]], list[list[str]]]:
    """`launch_order` on plain node and (caller, callee) lists, without networkx (it is slow to import).

    Strongly connected components (iterative Tarjan) are condensed; a component's tier is the length of the
    longest chain of callees below it, so every tier only needs earlier tiers (networkx's topological
    generations of the reversed condensation).
    """
    order = list(dict.fromkeys(nodes))
    callees: dict[str, list[str]] = {n: [] for n in order}
    for caller, callee in edges:
        for name in (caller, callee):
            if name not in callees:
                callees[name] = []
                order.append(name)
        callees[caller].append(callee)
    component = _strongly_connected(order, callees)
    members: dict[int, list[str]] = defaultdict(list)
    for name in order:
        members[component[name]].append(name)
    below: dict[int, set[int]] = {c: set() for c in members}
    for caller in order:
        for callee in callees[caller]:
            if component[caller] != component[callee]:
                below[component[caller]].add(component[callee])
    depth: dict[int, int] = {}
    for comp in sorted(members):  # Tarjan numbers a component after every component it reaches
        depth[comp] = 1 + max((depth[c] for c in below[comp]), default=-1)
    tiers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for comp, names in members.items():
        tiers[depth[comp]].extend(names)
    cycles = sorted(sorted(m) for m in members.values() if len(m) > 1)
    return [sorted(tier) for tier in tiers], cycles


def _strongly_connected(order: list[str], callees: dict[str, list[str]]) -> dict[str, int]:
    """Component number per node (iterative Tarjan: components are numbered callees first)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    components = 0
    for root in order:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            for i in range(child, len(callees[node])):
                nxt = callees[node][i]
                if nxt not in index:
                    work.append((node, i + 1))
                    work.append((nxt, 0))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component[member] = components
                        if member == node:
                            break
                    components += 1
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return component


def to_networkx(graph: dict[str, Any]) -> nx.DiGraph:
    import networkx as nx

    return nx.node_link_graph(graph, directed=True, multigraph=False, edges="edges")
