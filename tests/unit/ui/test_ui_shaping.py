"""Pure shaping of the Shadow Regions page: capacity charts, tier layout, blueprint diffs."""

from __future__ import annotations

import pandas as pd
import pytest

from shadowing.ui.capacity import capacity_charts, describe_rule, service_chart
from shadowing.ui.diff import blueprint_diff
from shadowing.ui.graph_layout import COLUMN_WIDTH, MAX_ROWS, NODE_WIDTH, layout


def _stats(p50: float, p95: float, p99: float) -> dict:
    return {"count": 10, "p50": p50, "p95": p95, "p99": p99, "max": p99 * 1.1, "hour_of_week_peak": [p95] * 168}


def test_capacity_uses_the_sizing_metric_aggregate_and_instances_times_target() -> None:
    service = {
        "instances": {"min": 2, "max": 3, "mean": 2.5, "p50": 2.0, "by_id": {"i-1": {}}},
        "metrics": {"cpu_utilization": _stats(10, 20, 30)},
        "aggregate": {"cpu_utilization": _stats(40, 80, 120), "active_connections": _stats(1, 2, 3)},
        "sizing": {"instances": 2, "capacity": 132.0, "confidence": 1.0,
                   "rule": {"name": "shadowing-percentile", "metric": "cpu_utilization", "percentile": 0.995,
                            "margin": 0.1, "target_utilization": 100.0}},
    }
    chart = service_chart("web", service)
    assert (chart["metric"], chart["source"], chart["unit"]) == ("cpu_utilization", "aggregate", "%")
    assert (chart["p50"], chart["p95"], chart["p99"]) == (40, 80, 120)
    assert chart["capacity"] == 200.0  # 2 instances × 100 % each, not the 132 of demand + margin
    assert chart["recommended_instances"] == 2
    assert chart["observed_instances"] == {"min": 2, "p50": 2.0, "max": 3, "mean": 2.5}
    assert len(chart["hour_of_week"]) == 168
    assert chart["rule"] == "shadowing-percentile, p99.5 of demand, +10% margin, 100 per instance"


def test_capacity_degrades_on_partial_shapes() -> None:
    chart = service_chart("odd", {"metrics": {"queue_depth": _stats(1, 2, 3)}, "sizing": {"reason": "no cpu"}})
    assert chart["metric"] == "queue_depth" and chart["source"] == "per_instance"
    assert chart["capacity"] is None and chart["rule"] == "no cpu"
    empty = service_chart("empty", {})
    assert empty["metric"] is None and empty["p99"] is None and empty["hour_of_week"] is None
    assert capacity_charts({"services": "not a mapping"}) == []
    assert describe_rule({}) is None


def test_capacity_charts_sorted_by_pressure() -> None:
    def svc(p99: float, instances: int) -> dict:
        return {"aggregate": {"cpu_utilization": _stats(p99 / 3, p99 / 2, p99)},
                "sizing": {"instances": instances, "rule": {"metric": "cpu_utilization", "target_utilization": 100}}}

    charts = capacity_charts({"services": {"calm": svc(50, 4), "hot": svc(190, 2), "none": {}}})
    assert [c["service"] for c in charts] == ["hot", "calm", "none"]


def test_capacity_from_a_real_fingerprint() -> None:
    """Contract with shadowing.capacity.fingerprint: the page finds the sizing metric and capacity it wrote."""
    fingerprint = pytest.importorskip("shadowing.capacity.fingerprint")
    frame = pytest.importorskip("shadowing.metrics.frame")
    ts = pd.date_range("2024-01-01", periods=6 * 24, freq="10min", tz="UTC")
    rows = [{"timestamp": t, "region": "us-east-1", "service": "api", "instance_id": f"i-{i}",
             "metric": "cpu_utilization", "value": 30.0 + 20 * i + (k % 7)}
            for k, t in enumerate(ts) for i in range(2)]
    fp = fingerprint.build(frame.from_pandas(pd.DataFrame(rows)), region="us-east-1")
    [chart] = capacity_charts(fp)
    assert chart["service"] == "api" and chart["metric"] == "cpu_utilization" and chart["source"] == "aggregate"
    assert chart["recommended_instances"] >= 1
    assert chart["capacity"] >= chart["p50"] > 0
    assert len(chart["hour_of_week"]) == 168


def _graph(tiers: list[list[str]], edges: list[tuple[str, str]], cycles: list[list[str]] = ()) -> dict:
    nodes = sorted({n for t in tiers for n in t} | {n for e in edges for n in e})
    return {"nodes": [{"id": n} for n in nodes],
            "edges": [{"source": s, "target": t, "evidence": [{"kind": "flow"}], "confidence": 0.9} for s, t in edges],
            "graph": {"launch_tiers": tiers, "cycles": list(cycles), "dangling": [], "warnings": ["w"]}}


def test_layout_puts_tiers_left_to_right_and_edges_point_left() -> None:
    out = layout(_graph([["db"], ["api", "cache"], ["web"]], [("web", "api"), ("api", "db"), ("cache", "db")]))
    x = {n["id"]: n["x"] for n in out["nodes"]}
    assert x["db"] < x["api"] == x["cache"] < x["web"]
    assert [t["label"] for t in out["tiers"]] == ["tier 0", "tier 1", "tier 2"]
    for edge in out["edges"]:
        assert edge["x1"] > edge["x2"] - NODE_WIDTH  # caller to the right of callee
        assert edge["kinds"] == ["flow"]
    assert out["width"] > x["web"] + NODE_WIDTH - COLUMN_WIDTH and out["height"] > 0


def test_layout_keeps_cycle_members_adjacent_and_flags_them() -> None:
    g = _graph([["db"], ["a", "m", "z"]], [("a", "z"), ("z", "a"), ("a", "db"), ("m", "db")], cycles=[["a", "z"]])
    out = layout(g)
    ys = {n["id"]: n["y"] for n in out["nodes"]}
    assert abs(ys["a"] - ys["z"]) == out["row_height"]
    assert {n["id"] for n in out["nodes"] if n["cycle"] is not None} == {"a", "z"}
    assert sum(e["in_cycle"] for e in out["edges"]) == 2


def test_layout_tolerates_untiered_nodes_unknown_edges_and_wraps_tall_tiers() -> None:
    big = [f"s{i:03d}" for i in range(MAX_ROWS * 2 + 1)]
    g = _graph([big], [("s000", "ghost")])
    g["nodes"] = [n for n in g["nodes"] if n["id"] != "ghost"] + [{"id": "orphan"}]
    out = layout(g)
    assert out["edges"] == []  # an edge to a node that does not exist is not drawn
    assert out["tiers"][-1]["label"] == "untiered" and out["tiers"][-1]["size"] == 1
    assert len({n["x"] for n in out["nodes"] if n["tier"] == 0}) == 3  # 81 nodes → 3 sub-columns
    assert out["height"] <= 2 * 24 + 20 + MAX_ROWS * out["row_height"]
    assert layout({"nodes": [], "edges": []})["nodes"] == []


def test_blueprint_diff_reports_added_removed_and_changed_fields() -> None:
    old = {"services": {"web": {"count": 2, "ami": {"shadow": None}}, "old": {"count": 1}},
           "networking": {"vpc": "a"}, "provenance": {"run": 1}}
    new = {"services": {"web": {"count": 3, "ami": {"shadow": "ami-1"}}, "new": {"count": 1}},
           "networking": {"vpc": "b"}, "provenance": {"run": 2}}
    diff = blueprint_diff(old, new)
    assert diff["added"] == ["new"] and diff["removed"] == ["old"]
    assert diff["changed"]["web"] == [{"field": "ami.shadow", "old": None, "new": "ami-1"},
                                      {"field": "count", "old": 2, "new": 3}]
    assert diff["sections"] == ["networking"]  # provenance changes every run: not a change
    first = blueprint_diff(None, new)
    assert first["added"] == ["new", "web"] and first["sections"] == []
