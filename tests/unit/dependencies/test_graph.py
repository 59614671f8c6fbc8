"""Graph assembly: cycles and tiers, weak/conflicting evidence, decay across runs, no crash on odd input."""

from __future__ import annotations

from shadowing.dependencies.configs import ConfigFindings
from shadowing.dependencies.graph import GraphOptions, Observations, build_graph, to_networkx
from shadowing.dependencies.model import Reference

HOUR = 3600.0


def findings(*pairs: tuple[str, str], services: tuple[str, ...] = ()) -> ConfigFindings:
    out = ConfigFindings()
    for name in {n for p in pairs for n in p} | set(services):
        out.catalog.add(name)
    out.references = [Reference(a, b, None, "env", f"env {b.upper()}_ADDR") for a, b in pairs]
    return out


def flow(a: str, b: str, strength: float = 0.9, count: int = 10) -> Reference:
    return Reference(a, b, 8080, "flow", "VPC flow logs to port 8080", kind="flow", count=count,
                     extra={"strength": strength, "windows": 5, "bytes": 1000})


def test_cycles_are_one_group_and_tiers_put_dependencies_first() -> None:
    graph = build_graph(findings(("web", "users"), ("users", "social"), ("social", "users"), ("users", "db")))
    assert graph["graph"]["cycles"] == [["social", "users"]]
    assert graph["graph"]["launch_tiers"] == [["db"], ["social", "users"], ["web"]]
    digraph = to_networkx(graph)
    assert digraph.has_edge("web", "users") and not digraph.has_edge("users", "web")


def test_every_edge_keeps_its_evidence_and_confidence_combines() -> None:
    obs = Observations(references=[flow("web", "api")])
    graph = build_graph(findings(("web", "api")), obs, now=10 * HOUR)
    (edge,) = graph["edges"]
    assert {e["kind"] for e in edge["evidence"]} == {"config", "flow"}
    assert edge["confidence"] > max(e["strength"] for e in edge["evidence"])
    assert all({"kind", "detail", "first_seen", "last_seen", "count"} <= set(e) for e in edge["evidence"])


def test_conflicting_evidence_is_reported() -> None:
    obs = Observations(references=[flow("web", "cache")], observed_services={"web", "cache", "api"})
    graph = build_graph(findings(("web", "api"), ("web", "cache")), obs)
    edge = next(e for e in graph["edges"] + graph["graph"]["weak_edges"] if e["target"] == "api")
    assert "no traffic" in edge["conflict"]
    assert any("conflicting evidence web -> api" in w for w in graph["graph"]["warnings"])


def test_retired_edges_fade_over_runs() -> None:
    options = GraphOptions(half_life_hours=1.0)
    first = build_graph(None, Observations(references=[flow("web", "old"), flow("web", "api")]), now=0.0,
                        options=options)
    assert {e["target"] for e in first["edges"]} == {"old", "api"}
    graph = first
    for hour in range(1, 7):  # `old` is never seen again; `api` is seen every hour
        graph = build_graph(None, Observations(references=[flow("web", "api")]), previous=graph,
                            now=hour * HOUR, options=options)
        if hour == 1:  # one half-life: still known, but too weak to order a launch
            assert "old" in {e["target"] for e in graph["graph"]["weak_edges"]}
    assert {e["target"] for e in graph["edges"]} == {"api"}
    assert graph["graph"]["weak_edges"] == []  # forgotten once its weight fell below min_weight
    api = graph["edges"][0]
    assert api["evidence"][0]["count"] == 70  # evidence accumulates across runs


def test_unknown_callee_is_dangling_and_odd_previous_is_a_warning() -> None:
    out = findings(("web", "api"))
    out.references.append(Reference("web", "ghost", 80, "env", "env GHOST_ADDR"))
    graph = build_graph(out, previous={"edges": [{"nonsense": 1}], "graph": {}})
    assert [d["target"] for d in graph["graph"]["dangling"]] == ["ghost"]
    assert any("previous graph" in w for w in graph["graph"]["warnings"])
    empty = build_graph(None)
    assert empty["nodes"] == [] and empty["edges"] == [] and empty["graph"]["launch_tiers"] == []
