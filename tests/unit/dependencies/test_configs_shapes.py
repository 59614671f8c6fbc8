"""Configuration documents shaped wrongly (metadata: 7, environment: 5 …) are skipped with a warning that
names the file and the part; everything else in the same file still counts."""

from __future__ import annotations

import json
from pathlib import Path

from shadowing.dependencies.configs import ConfigFindings, extract_configs

GOOD_DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: web
        env:
        - {name: API_URL, value: "http://api:8080"}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{port: 8080}]}
"""


def _references(findings: ConfigFindings) -> set[tuple[str, str]]:
    return {(r.caller, findings.catalog.resolve(r.target) or r.target) for r in findings.references}


def test_bad_k8s_documents_cost_only_themselves(tmp_path: Path) -> None:
    bad = ("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: 7\nspec: {}\n"
           "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec: {template: {spec: "
           "{containers: 5}}}\n"
           "---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: job}\nspec: {jobTemplate: [1]}\n"
           "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: [a, b]\n")
    (tmp_path / "app.yaml").write_text(GOOD_DEPLOYMENT + bad)
    findings = extract_configs([tmp_path])
    assert ("web", "api") in _references(findings)
    warnings = "\n".join(findings.warnings)
    assert "app.yaml document 3 (Deployment): metadata is int, not a mapping; document skipped" in warnings
    assert "document 4 (StatefulSet): spec.template.spec.containers is int, not a list" in warnings
    assert "document 5 (CronJob): spec.jobTemplate is list, not a mapping" in warnings
    assert "document 6 (ConfigMap): data is list, not a mapping" in warnings
    assert "db" not in findings.catalog.services


def test_bad_compose_service_costs_only_itself(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  web:\n    image: web\n    environment: [API_URL=http://api:8080]\n"
        "  api:\n    image: api\n  worker:\n    image: worker\n    command: 17\n")
    findings = extract_configs([tmp_path])
    assert ("web", "api") in _references(findings)
    assert any("service 'worker': command is int, not a list; service skipped" in w for w in findings.warnings)


def test_bad_consul_service_costs_only_itself(tmp_path: Path) -> None:
    (tmp_path / "services.json").write_text(json.dumps({"services": [
        {"name": "pay", "connect": {"sidecar_service": {"proxy": {"upstreams": [{"destination_name": 5}]}}}},
        {"name": "fraud", "connect": {"sidecar_service": {"proxy": {"upstreams": [{"destination_name": "risk"}]}}}},
        {"name": "risk", "port": 7000}]}))
    findings = extract_configs([tmp_path])
    assert ("fraud", "risk") in _references(findings)
    assert "pay" not in findings.catalog.services
    assert any("Consul service 'pay': connect.sidecar_service.proxy.upstreams[0].destination_name is int" in w
               for w in findings.warnings)
