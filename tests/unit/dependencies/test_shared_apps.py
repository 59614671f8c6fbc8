"""The shared reference apps scored against their EXPECTED_EDGES.txt (true edges and traps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowing.dependencies.mapper import MapperInputs, map_dependencies

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "deps"
OB = FIXTURES / "online-boutique"
DSB = FIXTURES / "dsb-socialnetwork"


def expected_edges(path: Path) -> dict[tuple[str, str], bool]:
    """(caller, callee) → config-visible, parsed as the file says: strip after '#', split on '->'."""
    edges: dict[tuple[str, str], bool] = {}
    for line in path.read_text().splitlines():
        body, _, comment = line.partition("#")
        if "->" not in body:
            continue
        caller, callee = (part.strip() for part in body.split("->"))
        edges[(caller, callee)] = comment.rsplit("|", 1)[-1].strip().startswith("yes")
    return edges


def telemetry_edges(path: Path) -> set[tuple[str, str]]:
    """The `{a,b}-service -> jaeger-agent` comment lines expanded."""
    out: set[tuple[str, str]] = set()
    for line in path.read_text().splitlines():
        text = line.lstrip("# ").strip()
        if "-> jaeger-agent" not in text:
            continue
        for part in text.split(";"):
            left, _, right = part.partition("->")
            left = left.strip()
            if left.startswith("{"):
                names, _, suffix = left[1:].partition("}")
                out |= {(f"{n}{suffix}", right.strip()) for n in names.split(",")}
            elif left:
                out.add((left, right.strip()))
    return out


def score(graph: dict, truth: set[tuple[str, str]]) -> tuple[float, float]:
    found = {(e["source"], e["target"]) for e in graph["edges"]}
    precision = len(found & truth) / len(found) if found else 1.0
    recall = len(found & truth) / len(truth) if truth else 1.0
    return precision, recall


@pytest.fixture(scope="module")
def boutique() -> dict:
    return map_dependencies(MapperInputs(configs=[str(OB / "kubernetes-manifests"),
                                                  str(OB / "kustomize/components/network-policies")]))


@pytest.fixture(scope="module")
def social() -> dict:
    return map_dependencies(MapperInputs(configs=[str(DSB / "socialNetwork")]))


def test_online_boutique_config_visible_edges(boutique: dict) -> None:
    truth = expected_edges(OB / "EXPECTED_EDGES.txt")
    assert len(truth) == 16 and all(truth.values())
    precision, recall = score(boutique, set(truth))
    assert recall == 1.0
    assert precision >= 0.95
    # env var AND NetworkPolicy allow-list agree on every edge: both pieces of evidence are kept
    for edge in boutique["edges"]:
        if edge["source"] != "loadgenerator":
            assert {e["basis"] for e in edge["evidence"]} >= {"env", "network_policy"}, edge
        assert 0.0 <= edge["confidence"] <= 1.0


def test_online_boutique_traps(boutique: dict) -> None:
    targets = {e["target"] for e in boutique["edges"]}
    # shoppingassistantservice: env set, no Service in the base deployment → dangling, not an edge
    assert "shoppingassistantservice" not in targets
    assert any(d["target"] == "shoppingassistantservice" and d["source"] == "frontend"
               for d in boutique["graph"]["dangling"])
    # PACKAGING_SERVICE_URL is commented out; COLLECTOR_SERVICE_ADDR only with tracing on: no such node/edge
    assert not any("packaging" in t or "collector" in t for t in targets)
    # port trap: emailservice Service 5000 → targetPort 8080 is kept on the node for flow matching
    email = next(n for n in boutique["nodes"] if n["id"] == "emailservice")
    assert {"port": 5000, "target_port": 8080} in email["ports"]
    # names reconciled: frontend-external is another name of frontend, not a separate node
    assert "frontend-external" not in {n["id"] for n in boutique["nodes"]}
    assert len(boutique["nodes"]) == 12
    assert boutique["graph"]["launch_tiers"][-1] == ["loadgenerator"]
    assert boutique["graph"]["launch_tiers"][0][0] == "adservice"
    assert boutique["graph"]["cycles"] == []


def test_online_boutique_release_bundle_equals_manifests(boutique: dict) -> None:
    """The one-file multi-document release bundle yields the same edges as the per-service files."""
    bundle = map_dependencies(MapperInputs(configs=[str(OB / "release/kubernetes-manifests.yaml")]))
    assert {(e["source"], e["target"]) for e in bundle["edges"]} == \
        {(e["source"], e["target"]) for e in boutique["edges"]}


def test_social_network_config_visible_edges(social: dict) -> None:
    truth = expected_edges(DSB / "EXPECTED_EDGES.txt")
    assert len(truth) == 33
    visible = {edge for edge, yes in truth.items() if yes}
    assert len(visible) == 5
    found = {(e["source"], e["target"]) for e in social["edges"]}
    assert found >= visible  # recall 1.0 of config-visible edges
    precision = len(found & set(truth)) / len(found)
    assert precision >= 0.95
    assert len(social["nodes"]) == 27


def test_social_network_shared_address_book_is_not_a_bipartite_graph(social: dict) -> None:
    # every service mounts config/service-config.json listing every address: no edge comes from it alone
    assert len(social["edges"]) < 10
    assert any("shared address book" in w and "service-config.json" in w for w in social["graph"]["warnings"])


def test_social_network_traps_reported(social: dict) -> None:
    found = {(e["source"], e["target"]) for e in social["edges"]}
    # media-service depends_on media-mongodb but holds no address of it → weak, reported, not an edge
    assert ("media-service", "media-mongodb") not in found
    weak = {(e["source"], e["target"]): e for e in social["graph"]["weak_edges"]}
    assert "depends_on" in weak[("media-service", "media-mongodb")]["reason"]
    assert any("media-service -> media-mongodb" in w for w in social["graph"]["warnings"])
    # dead entries of the shared book (no container) → dangling
    dangling = {d["target"] for d in social["graph"]["dangling"]}
    assert {"compose-post-redis", "write-home-timeline-rabbitmq", "write-home-timeline-service"} <= dangling
    # media-memcached is deployed but unused: an orphan node, no edge
    assert "media-memcached" in {n["id"] for n in social["nodes"]}
    assert not any("media-memcached" in edge for edge in found)


def test_social_network_telemetry_consistent(social: dict) -> None:
    expected = telemetry_edges(DSB / "EXPECTED_EDGES.txt")
    assert len(expected) == 13
    telemetry = {(e["source"], e["target"]) for e in social["graph"]["telemetry"]}
    assert telemetry == expected  # all 13 telemetry edges, listed apart, none in the launch-order edges
    assert not any(e["target"] == "jaeger-agent" for e in social["edges"])
