"""Blueprint refresh end to end on the moto server (fixture `aws`) with the world seeder's shopfront, and the
shadow_blueprints DAG through dag.test()."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from botocore.client import BaseClient

from shadowing.aws import tags as T
from shadowing.aws.clients import client
from shadowing.blueprint.model import Blueprint
from shadowing.blueprint.refresh import refresh_region
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.store import (
    blueprint_history,
    current_blueprint,
    latest_readiness,
    save_fingerprint,
    save_graph,
)
from shadowing.world.app import App
from shadowing.world.state import WorldClients
from tests.support.blueprint_world import client_factory, seeded_world

ROOT = Path(__file__).resolve().parents[2]
PRIMARY, SHADOW = "us-east-1", "us-west-2"


def graph_of(app: App) -> dict[str, Any]:
    from shadowing.dependencies.graph import launch_order

    tiers, cycles = launch_order(app.graph())
    return {"directed": True, "multigraph": False, "graph": {"launch_tiers": tiers, "cycles": cycles},
            "nodes": [{"id": s.name, "kind": s.kind, "ports": [{"port": s.port, "target_port": s.port}]}
                      for s in app.services],
            "edges": [{"source": e.caller, "target": e.callee, "confidence": 0.9, "evidence": []} for e in app.edges]}


def fingerprint_of(app: App, extra: int = 1) -> dict[str, Any]:
    return {"region": PRIMARY, "services": {s.name: {"sizing": {"instances": s.instances + extra, "rule": {}}}
                                            for s in app.services}}


@pytest.fixture
def world(aws: str) -> App:
    return seeded_world(aws)


factory = client_factory


@pytest.mark.slow
def test_refresh_builds_prestages_and_is_idempotent(world: App, aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    save_fingerprint(engine, region=PRIMARY, fingerprint=fingerprint_of(world), valid=True)
    save_graph(engine, region=PRIMARY, graph=graph_of(world), valid=True)
    clients = factory(aws)
    first = refresh_region(engine, clients, PRIMARY, SHADOW, run_id="r1")
    assert first["valid"] and first["created"] and first["version"] == 1
    assert first["ready"], first["failed"]
    bp = Blueprint.from_dict(current_blueprint(engine, PRIMARY).payload)  # type: ignore[union-attr]
    assert set(bp.services) == set(world.names)
    assert bp.services["web"].count == world.service("web").instances + 1  # the fingerprint's sizing
    compute = [s for s in bp.services.values() if s.kind == "compute"]
    assert all(s.ami and s.ami.shadow and s.launch_template and s.launch_template.id for s in compute)
    assert all(sid.startswith("subnet-") for s in compute for sid in s.subnets)
    assert bp.services["db"].kind == "managed"
    assert {r.action for r in bp.replication if r.kind == "rds"} == {"promote_replica"}  # replica pre-staged
    assert bp.traffic.records and bp.traffic.records[0].failover == "SECONDARY"
    cycle = bp.services["cart"].group
    assert cycle is not None and bp.services["recommendation"].group == cycle
    assert bp.services["cart"].tier == bp.services["recommendation"].tier
    # least privilege: db admits exactly its callers
    assert {r.from_service for r in bp.networking.security_groups["db"].ingress} == {
        e.caller for e in world.edges if e.callee == "db"}

    ec2 = client("ec2", SHADOW, aws)
    prestaged_filter = [{"Name": f"tag:{T.ROLE}", "Values": ["prestaged"]},
                        {"Name": f"tag:{T.PRESTAGED_FOR}", "Values": [PRIMARY]}]

    def counts() -> tuple[int, ...]:
        return (len(ec2.describe_vpcs(Filters=prestaged_filter)["Vpcs"]),
                len(ec2.describe_subnets(Filters=prestaged_filter)["Subnets"]),
                len(ec2.describe_security_groups(Filters=prestaged_filter)["SecurityGroups"]),
                len(ec2.describe_launch_templates(Filters=prestaged_filter)["LaunchTemplates"]),
                len(ec2.describe_images(Owners=["self"], Filters=prestaged_filter)["Images"]),
                len(client("rds", SHADOW, aws).describe_db_instances()["DBInstances"]))

    before = counts()
    assert before == (1, 3, len(world.names), len(compute), len(compute), 1)
    for i in range(3):  # identical refreshes: no new version, nothing created
        again = refresh_region(engine, clients, PRIMARY, SHADOW, run_id=f"again{i}")
        assert not again["created"] and again["version"] == 1
        assert again["prestage"]["created"] == [] and again["prestage"]["updated"] == []
    assert counts() == before
    assert len(blueprint_history(engine, PRIMARY)) == 1

    # a changed input → exactly one new version whose diff names the change
    save_fingerprint(engine, region=PRIMARY, fingerprint=fingerprint_of(world, extra=2), valid=True)
    changed = refresh_region(engine, clients, PRIMARY, SHADOW, run_id="r2")
    assert changed["created"] and changed["version"] == 2
    assert set(changed["diff"]["services_changed"]) == set(world.names)
    assert changed["diff"]["services_changed"]["web"]["count"] == {
        "from": world.service("web").instances + 1, "to": world.service("web").instances + 2}
    assert not refresh_region(engine, clients, PRIMARY, SHADOW, run_id="r3")["created"]
    assert [v.version for v in blueprint_history(engine, PRIMARY)] == [1, 2]


@pytest.mark.slow
def test_bad_inputs_are_named_readiness_failures(world: App, aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    fp = fingerprint_of(world)
    del fp["services"]["search"]["sizing"]  # no capacity recommendation
    g = graph_of(world)
    g["nodes"] = [n for n in g["nodes"] if n["id"] != "notification"]  # no graph node
    g["nodes"].append({"id": "ledger", "kind": "service"})  # a node without capacity
    save_fingerprint(engine, region=PRIMARY, fingerprint=fp, valid=True)
    save_graph(engine, region=PRIMARY, graph=g, valid=True)
    out = refresh_region(engine, factory(aws), PRIMARY, SHADOW, run_id="r1", with_prestage=False)
    assert out["valid"] and not out["ready"]
    failed = {(c.check, c.subject) for c in latest_readiness(engine, PRIMARY).failures}  # type: ignore[union-attr]
    assert {("sizing", "search"), ("completeness", "notification"), ("completeness", "ledger")} <= failed
    assert ("ami_available", "web") in failed  # nothing pre-staged: no AMI in the shadow
    assert ("prestaged", "shadow") in failed

    unknown = refresh_region(engine, factory(aws), "mars-north-1", SHADOW, run_id="r2")
    assert not unknown["valid"] and not unknown["ready"]
    failed = {(c.check, c.subject) for c in latest_readiness(engine, "mars-north-1").failures}  # type: ignore[union-attr]
    assert ("region_known", "mars-north-1") in failed and current_blueprint(engine, "mars-north-1") is None


@pytest.mark.slow
def test_a_failed_primary_never_replaces_the_last_good_blueprint(world: App, aws: str, sqlite_url: str) -> None:
    from shadowing.world.live import chaos

    engine = open_warehouse(sqlite_url)
    save_fingerprint(engine, region=PRIMARY, fingerprint=fingerprint_of(world), valid=True)
    save_graph(engine, region=PRIMARY, graph=graph_of(world), valid=True)
    assert refresh_region(engine, factory(aws), PRIMARY, SHADOW, run_id="r1", with_prestage=False)["created"]
    chaos(WorldClients.connect(aws), fail=True)  # every instance of the primary terminated
    out = refresh_region(engine, factory(aws), PRIMARY, SHADOW, run_id="r2", with_prestage=False)
    assert not out["valid"] and "keeping v1" in out["error"]
    assert [v.version for v in blueprint_history(engine, PRIMARY)] == [1]


@pytest.mark.slow
def test_shadow_blueprints_dag(world: App, aws_conn_env: str, warehouse_conn_env: str, airflow_db: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{PRIMARY}={SHADOW}")
    engine = open_warehouse(warehouse_conn_env)
    save_fingerprint(engine, region=PRIMARY, fingerprint=fingerprint_of(world), valid=True)
    save_graph(engine, region=PRIMARY, graph=graph_of(world), valid=True)
    from airflow.dag_processing.dagbag import DagBag

    # pre-staging goes through its own connection (role): recognisable credentials on the same emulator
    prestage_conn = {**json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"]), "login": "AKIASHADOWINGPRESTAGE"}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PRESTAGE", json.dumps(prestage_conn))
    keys_by_action: dict[str, set[str]] = defaultdict(set)
    real_call = BaseClient._make_api_call

    def spy(self: BaseClient, operation: str, params: dict) -> dict:  # the calls still reach the emulator
        keys_by_action[operation].add(self._request_signer._credentials.access_key)
        return real_call(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "shadow_blueprints.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("shadow_blueprints")
    run = dag.test()
    assert run.state == "success", run.state
    writes = {a for a in keys_by_action if a.startswith(("Create", "Authorize", "Copy"))}
    assert "CreateVpc" in writes and "CreateSecurityGroup" in writes
    assert all(keys_by_action[a] == {"AKIASHADOWINGPRESTAGE"} for a in writes), dict(keys_by_action)
    default_key = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])["login"]
    assert any(default_key in keys for action, keys in keys_by_action.items() if action.startswith("Describe"))
    current = current_blueprint(engine, PRIMARY)
    assert current is not None and current.version == 1 and current.run_id == run.run_id
    report = latest_readiness(engine, PRIMARY)
    assert report is not None and report.ready, report.failures if report else None
    assert dag.test().state == "success"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM blueprint_versions")).scalar() == 1


def test_load_balancer_enis_are_never_services(world: App, aws: str) -> None:
    """The seeded ALB's ENIs carry a service tag (moto cannot make requester-managed ENIs) but say `ELB …` as AWS's
    do: the inventory must keep them out of the graph, else the blueprint finds an unlaunchable "alb" service."""
    from shadowing.dependencies.aws_sources import ec2_inventory
    from shadowing.dependencies.inventory import IGNORED_KINDS

    ec2 = client("ec2", PRIMARY, aws)
    elb_ips = {e["PrivateIpAddress"] for e in ec2.describe_network_interfaces()["NetworkInterfaces"]
               if str(e.get("Description", "")).startswith("ELB ")}
    assert elb_ips, "the seeded world has load-balancer ENIs"
    inventory = ec2_inventory(ec2)
    kinds = {r.kind for r in inventory.rows if r.ip in elb_ips}
    assert kinds and kinds <= IGNORED_KINDS
    services = set(inventory.services)
    assert services == {s.name for s in world.services}
