"""The shopfront configuration files mention exactly the config-visible edges of the true graph."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from shadowing.world.app import SHOPFRONT

APP_DIR = Path(__file__).resolve().parents[3] / "include" / "apps" / "shopfront"
_HOST = re.compile(r"^(?:[a-z]+://)?([a-z][a-z0-9-]*):(\d+)")


def _edges_from_env(caller: str, values: list[str]) -> set[tuple[str, str]]:
    names = set(SHOPFRONT.names)
    out = set()
    for v in values:
        m = _HOST.match(str(v))
        if m and m.group(1) in names and m.group(1) != caller:
            assert int(m.group(2)) == SHOPFRONT.service(m.group(1)).port, v
            out.add((caller, m.group(1)))
    return out


def test_kubernetes_manifests_name_exactly_the_config_edges() -> None:
    edges: set[tuple[str, str]] = set()
    services: dict[str, dict] = {}
    for path in sorted((APP_DIR / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    edges |= _edges_from_env(doc["metadata"]["name"], [e["value"] for e in c.get("env", [])])
            elif doc["kind"] == "Service":
                services[doc["metadata"]["name"]] = doc["spec"]
            elif doc["kind"] == "ConfigMap":
                edges |= set().union(*(_edges_from_env("?", [v]) for v in doc["data"].values()))
    assert edges == SHOPFRONT.config_edges()
    assert set(services) == set(SHOPFRONT.names)
    for name, spec in services.items():
        assert spec["ports"][0]["targetPort"] == SHOPFRONT.service(name).port


def test_docker_compose_names_exactly_the_config_edges() -> None:
    doc = yaml.safe_load((APP_DIR / "docker-compose.yaml").read_text())
    edges: set[tuple[str, str]] = set()
    for name, svc in doc["services"].items():
        edges |= _edges_from_env(name, list((svc.get("environment") or {}).values()))
    assert edges == SHOPFRONT.config_edges()
    assert set(doc["services"]) == set(SHOPFRONT.names)


def test_traffic_only_edges_are_in_no_file() -> None:
    text = "\n".join(p.read_text() for p in APP_DIR.rglob("*") if p.is_file() and p.suffix in (".yaml", ".env"))
    for caller, callee in SHOPFRONT.traffic_only_edges():
        callee_port = SHOPFRONT.service(callee).port
        assert f"{callee}:{callee_port}" not in (APP_DIR / "k8s" / f"{caller}.yaml").read_text()
    assert "checkout:8080" not in (APP_DIR / "k8s" / "payment.yaml").read_text()
    assert text  # files exist
