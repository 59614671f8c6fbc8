"""The builder on hand-made fingerprint / graph / inventory dicts (no AWS, no database)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shadowing.aws import tags as T
from shadowing.blueprint.builder import BuildInputs, build_blueprint, sized_count
from shadowing.blueprint.diff import diff_blueprints
from shadowing.blueprint.model import Blueprint, blueprint_hash

PRIMARY, SHADOW = "us-east-1", "us-west-2"


def _tags(service: str) -> list[dict[str, str]]:
    return [{"Key": T.SERVICE, "Value": service}]


def inventory() -> dict[str, Any]:
    def inst(i: str, service: str, itype: str, ami: str, subnet: str) -> dict[str, Any]:
        return {"id": i, "type": itype, "ami": ami, "subnet": subnet, "az": "us-east-1a",
                "security_groups": [f"sg-{service}"], "tags": {T.SERVICE: service, T.ROLE: "primary"}}

    return {
        "region": PRIMARY, "inventory_hash": "h1",
        "vpcs": [{"id": "vpc-1", "cidr": "10.0.0.0/16", "tags": {}}],
        "subnets": [{"id": "subnet-a", "az": "us-east-1a", "cidr": "10.0.0.0/20", "vpc_id": "vpc-1", "tags": {}},
                    {"id": "subnet-b", "az": "us-east-1b", "cidr": "10.0.16.0/20", "vpc_id": "vpc-1", "tags": {}}],
        "security_groups": [
            {"id": "sg-web", "name": "web", "tags": {T.SERVICE: "web"},
             "ingress": [{"protocol": "tcp", "from_port": 8080, "to_port": 8080, "from_groups": [], "cidrs": []}]},
            {"id": "sg-api", "name": "api", "tags": {T.SERVICE: "api"},
             "ingress": [{"protocol": "tcp", "from_port": 9090, "to_port": 9090, "from_groups": ["sg-web"],
                          "cidrs": []}]},
            {"id": "sg-cache", "name": "cache", "tags": {T.SERVICE: "cache"}, "ingress": []},
        ],
        "instances": [inst("i-1", "web", "t3.medium", "ami-web", "subnet-a"),
                      inst("i-2", "web", "t3.medium", "ami-web", "subnet-b"),
                      inst("i-3", "api", "c5.large", "ami-api", "subnet-a"),
                      inst("i-4", "cache", "r5.large", "ami-cache", "subnet-b")],
        "launch_templates": [{"id": "lt-api", "name": "w-api", "tags": {T.SERVICE: "api"}, "image_id": "ami-api",
                              "instance_type": "c5.large",
                              "env": {"DB_URL": "postgres://db-1.abc.us-east-1.rds.amazonaws.com:5432/app",
                                      "LOG_LEVEL": "info"}}],
        "images": {"ami-web": {"name": "web-v1"}, "ami-api": {"name": "api-v1"}, "ami-cache": {"name": "cache-v1"}},
        "load_balancers": [{"arn": "arn:lb", "name": "w-alb", "dns_name": "w-alb.us-east-1.elb.amazonaws.com",
                            "scheme": "internet-facing", "tags": {},
                            "listeners": [{"port": 80, "protocol": "HTTP", "target_groups": ["arn:tg-web"]}]}],
        "target_groups": [{"arn": "arn:tg-web", "name": "w-web", "port": 8080, "protocol": "HTTP",
                           "health_check_path": "/healthz", "tags": {T.SERVICE: "web"}}],
        "hosted_zones": [{"id": "Z1", "name": "example.com.", "records": [
            {"name": "www.example.com.", "type": "A", "set_identifier": "us-east-1-primary", "failover": "PRIMARY",
             "ttl": None, "values": [], "alias": "w-alb.us-east-1.elb.amazonaws.com."},
            {"name": "www.example.com.", "type": "A", "set_identifier": "us-west-2-shadow",
             "failover": "SECONDARY", "ttl": 60, "values": ["192.0.2.10"], "alias": None}]}],
        "db_instances": [{"identifier": "db-1", "arn": "arn:aws:rds:us-east-1:123456789012:db:db-1",
                          "engine": "postgres", "instance_class": "db.r5.large",
                          "endpoint": "db-1.abc.us-east-1.rds.amazonaws.com", "port": 5432, "cluster": None,
                          "tags": {T.SERVICE: "db"}}],
        "db_clusters": [],
        "buckets": [{"name": "assets", "region": PRIMARY, "tags": {T.SERVICE: "web"}}],
    }


def graph() -> dict[str, Any]:
    return {
        "directed": True, "multigraph": False,
        "graph": {"launch_tiers": [["db"], ["api", "cache"], ["web"]], "cycles": [["api", "cache"]]},
        "nodes": [{"id": "web", "ports": [{"port": 8080, "target_port": 8080}]},
                  {"id": "api", "ports": [{"port": 9090, "target_port": 9090}]},
                  {"id": "cache", "ports": [{"port": 6379, "target_port": 6379}]},
                  {"id": "db", "ports": [{"port": 5432, "target_port": 5432}]},
                  {"id": "jaeger", "kind": "telemetry"}],
        "edges": [{"source": "web", "target": "api"}, {"source": "api", "target": "cache"},
                  {"source": "cache", "target": "api"}, {"source": "api", "target": "db"}],
    }


def fingerprint() -> dict[str, Any]:
    return {"services": {"web": {"sizing": {"instances": 4}}, "api": {"sizing": {"instances": 2}},
                         "cache": {"sizing": {"instances": None, "reason": "no cpu aggregate"}},
                         "db": {"sizing": {"instances": 1}}}}


def shadow() -> dict[str, Any]:
    return {"vpc": {"id": "vpc-s", "cidr": "10.0.0.0/16"},
            "subnets": {"10.0.0.0/20": {"id": "subnet-sa", "az": "us-west-2a"}},
            "security_groups": {"web": "sg-sweb"}, "launch_templates": {"shadow-us-east-1-web": "lt-sweb"},
            "ami_copies": {"ami-web": "ami-sweb", "ami-api": "ami-sapi"}, "replicas": {},
            "azs": ["us-west-2a", "us-west-2b", "us-west-2c"]}


def build(**overrides: Any) -> Any:
    args = {"primary_region": PRIMARY, "shadow_region": SHADOW, "fingerprint": fingerprint(), "graph": graph(),
            "inventory": inventory(), "shadow": shadow(), "fingerprint_id": 7, "graph_id": 9, "run_id": "r1"}
    args.update(overrides)
    return build_blueprint(BuildInputs(**args))


def failures(result: Any) -> dict[tuple[str, str], str]:
    return {(c.check, c.subject): c.detail for c in result.issues if not c.passed}


def test_builds_a_valid_blueprint_with_tiers_groups_counts_and_amis() -> None:
    result = build()
    bp = Blueprint.from_dict(result.payload)  # round-trips through validation
    assert bp.launch_tiers == [["db"], ["api", "cache"], ["web"]]
    assert bp.services["api"].group == bp.services["cache"].group == "cycle-api"
    assert bp.services["web"].group is None
    assert bp.services["web"].count == 4 and bp.services["api"].count == 2
    assert bp.services["web"].ami is not None and bp.services["web"].ami.shadow == "ami-sweb"
    assert bp.services["web"].launch_template is not None and bp.services["web"].launch_template.id == "lt-sweb"
    assert bp.services["web"].instance_type == "t3.medium"
    assert bp.services["db"].kind == "managed" and bp.services["db"].instance_type == "db.r5.large"
    assert bp.provenance.fingerprint_id == 7 and bp.provenance.graph_id == 9


def test_missing_sizing_falls_back_to_observed_count_and_is_a_named_failure() -> None:
    result = build()
    assert result.blueprint.services["cache"].count == 1  # one instance observed
    assert ("sizing", "cache") in failures(result)


def test_security_groups_are_least_privilege_from_edges() -> None:
    bp = build().blueprint
    rules = {(n, r.from_service, r.port) for n, sg in bp.networking.security_groups.items() for r in sg.ingress}
    assert rules == {("api", "web", 9090), ("cache", "api", 6379), ("api", "cache", 9090), ("db", "api", 5432),
                     ("web", "load_balancer", 8080)}
    assert bp.networking.security_groups["web"].id == "sg-sweb"


def test_subnets_map_by_az_letter_and_use_prestaged_ids() -> None:
    bp = build().blueprint
    assert {(s.primary_az, s.az, s.id) for s in bp.networking.subnets} == {
        ("us-east-1a", "us-west-2a", "subnet-sa"), ("us-east-1b", "us-west-2b", None)}
    assert bp.services["web"].subnets == ["subnet-sa", "us-west-2b"]


def test_env_overrides_point_at_the_shadow() -> None:
    env = build().blueprint.services["api"].env_overrides
    assert env["AWS_REGION"] == SHADOW
    assert env["DB_URL"] == "postgres://db-1-shadow.abc.us-west-2.rds.amazonaws.com:5432/app"
    assert "LOG_LEVEL" not in env  # unchanged values are not overrides


def test_traffic_and_replication_plans() -> None:
    bp = build().blueprint
    assert bp.traffic.hosted_zone_id == "Z1"
    [record] = bp.traffic.records
    assert (record.name, record.failover, record.set_identifier) == ("www.example.com.", "SECONDARY",
                                                                     "us-west-2-shadow")
    assert record.primary_target == "w-alb.us-east-1.elb.amazonaws.com"
    kinds = {(r.kind, r.action, r.target.identifier) for r in bp.replication}
    assert kinds == {("rds", "create_replica_then_promote", "db-1-shadow"),
                     ("s3", "s3_replication", "assets-us-west-2")}
    with_replica = build(shadow={**shadow(), "replicas": {"db-1-shadow": {"endpoint": "x"}}}).blueprint
    assert {r.action for r in with_replica.replication if r.kind == "rds"} == {"promote_replica"}


def test_missing_ami_and_graph_node_and_capacity_are_named_failures_not_exceptions() -> None:
    g = graph()
    g["nodes"].append({"id": "ghost", "kind": "service"})
    g["graph"]["launch_tiers"][0].append("ghost")
    g["nodes"] = [n for n in g["nodes"] if n["id"] != "cache"]
    result = build(graph=g)
    found = failures(result)
    assert ("completeness", "ghost") in found  # graph node without capacity
    assert ("completeness", "cache") in found  # capacity without graph node
    assert ("completeness", "jaeger") not in found  # telemetry is not ours to launch
    assert ("ami_available", "cache") in found  # no copy in the shadow
    Blueprint.from_dict(result.payload)  # still a valid plan


def test_output_is_deterministic_and_hash_ignores_provenance() -> None:
    inv = inventory()
    shuffled = copy.deepcopy(inv)
    shuffled["instances"].reverse()
    shuffled["subnets"].reverse()
    a, b = build().payload, build(inventory=shuffled, run_id="r2", fingerprint_id=8).payload
    assert a != b  # provenance differs
    assert blueprint_hash(a) == blueprint_hash(b)


def test_changed_instance_type_changes_the_hash_and_the_diff_names_it() -> None:
    inv = inventory()
    for inst in inv["instances"]:
        if inst["id"] == "i-3":
            inst["type"] = "c5.xlarge"
    before, after = build().payload, build(inventory=inv).payload
    assert blueprint_hash(before) != blueprint_hash(after)
    diff = diff_blueprints(before, after)
    assert diff["services_changed"] == {"api": {"instance_type": {"from": "c5.large", "to": "c5.xlarge"}}}
    assert diff["services_added"] == diff["services_removed"] == []


@pytest.mark.parametrize(("sizing", "expected"), [
    ({"instances": 3}, 3), ({"instances": None}, None), (4, 4), ({"count": 2.4}, 2),
    ({"instances": {"recommended": 5}}, 5), (True, None), ("3", None), (None, None), ({"instances": -2}, 0)])
def test_sized_count(sizing: Any, expected: int | None) -> None:
    assert sized_count(sizing) == expected


def test_a_managed_database_without_ec2_metrics_is_not_a_sizing_failure() -> None:
    fp = fingerprint()
    del fp["services"]["db"]  # RDS has no EC2 fingerprint: its instance class sizes it
    result = build(fingerprint=fp)
    assert ("sizing", "db") not in failures(result)
    assert result.blueprint.services["db"].count == 1 and result.blueprint.services["db"].kind == "managed"
