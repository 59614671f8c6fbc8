"""A small, fully pre-staged shadow in the moto server plus its blueprint, for failover tests.

Independent of the world seeder and the refresh pipeline on purpose: failover tests pin exactly the blueprint
they run (tiers, a dependency cycle, a load-balanced edge service, an RDS replica, failover DNS records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shadowing.aws import tags as T
from shadowing.aws.clients import client

PRIMARY, SHADOW = "us-east-1", "us-west-2"
ZONE = "example.com."
RECORD = "shop.example.com."


@dataclass
class ShadowWorld:
    endpoint: str
    blueprint: dict[str, Any]
    vpc_id: str
    subnet_ids: list[str]
    hosted_zone_id: str
    primary_target: str
    shadow_lb_dns: str

    @property
    def expected_instances(self) -> int:
        return sum(s["count"] for s in self.blueprint["services"].values() if s.get("kind", "compute") == "compute")


def _services(services: int) -> tuple[list[list[str]], dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """web (tier 2, load-balanced) → api ↔ worker (cycle, tier 1) → cache/svc-i (tier 0) + managed db."""
    names0 = ["cache"] + [f"svc{i:02d}" for i in range(max(0, services - 4))]
    tiers = [names0 + ["db"], ["api", "worker"], ["web"]]
    edges = [("web", "api"), ("api", "worker"), ("worker", "api"), ("api", "db"), ("worker", "cache")]
    edges += [("api", n) for n in names0[1:]]
    spec = {n: {"tier": i, "group": "cycle-0" if n in ("api", "worker") else None} for i, t in enumerate(tiers)
            for n in t}
    return tiers, spec, edges


def build_shadow_world(endpoint: str, *, services: int = 6, instances_per_service: int = 2,
                       strategy: str = "failover") -> ShadowWorld:
    ec2 = client("ec2", SHADOW, endpoint)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{SHADOW}{az}")
               ["Subnet"]["SubnetId"] for i, az in enumerate("ab")]
    tiers, layout, edges = _services(services)
    sgs = {name: ec2.create_security_group(GroupName=f"shadow-{PRIMARY}-{name}", Description=name, VpcId=vpc,
                                           TagSpecifications=[{"ResourceType": "security-group", "Tags": T.to_aws(
                                               {T.ROLE: "prestaged", T.SERVICE: name})}])["GroupId"]
           for name in layout}
    elbv2 = client("elbv2", SHADOW, endpoint)
    lb = elbv2.create_load_balancer(Name="shadow-shopfront", Subnets=subnets, Scheme="internet-facing",
                                    Type="application")["LoadBalancers"][0]
    tg = elbv2.create_target_group(Name="shadow-web", Protocol="HTTP", Port=8080, VpcId=vpc,
                                   HealthCheckPath="/health")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Port=80, Protocol="HTTP",
                          DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    # Primary data store and its pre-staged cross-region replica.
    rds_primary = client("rds", PRIMARY, endpoint)
    src = rds_primary.create_db_instance(DBInstanceIdentifier="shop-db", DBInstanceClass="db.t3.micro",
                                         Engine="postgres", MasterUsername="shop", MasterUserPassword="not-a-secret1",
                                         AllocatedStorage=20)["DBInstance"]["DBInstanceArn"]
    client("rds", SHADOW, endpoint).create_db_instance_read_replica(
        DBInstanceIdentifier="shop-db-shadow", SourceDBInstanceIdentifier=src, SourceRegion=PRIMARY)
    route53 = client("route53", PRIMARY, endpoint)
    zone = route53.create_hosted_zone(Name=ZONE, CallerReference="shadowing-test-zone")["HostedZone"]["Id"]
    primary_target = "primary-alb-123.us-east-1.elb.amazonaws.com"
    if strategy == "failover":
        records = [("PRIMARY", "shop-primary", primary_target), ("SECONDARY", "shop-secondary", primary_target)]
        changes = [{"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "CNAME", "SetIdentifier": sid, "Failover": role, "TTL": 60,
            "ResourceRecords": [{"Value": target}]}} for role, sid, target in records]
    else:
        changes = [{"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "CNAME", "SetIdentifier": "shop-primary", "Weight": 100, "TTL": 60,
            "ResourceRecords": [{"Value": primary_target}]}}]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})

    svc: dict[str, Any] = {}
    for name, where in layout.items():
        managed = name == "db"
        svc[name] = {
            "tier": where["tier"], "group": where["group"], "kind": "managed" if managed else "compute",
            "ami": {"primary": "ami-primary0001", "shadow": ami},
            "instance_type": "db.t3.micro" if managed else "t3.micro",
            "count": 1 if managed else instances_per_service, "subnets": subnets, "security_groups": [sgs[name]],
            "ports": [5432 if managed else 8080],
            "launch_template": {"name": f"shadow-{PRIMARY}-{name}", "id": None}, "env_overrides": {},
            "target_group": {"name": "shadow-web", "port": 8080, "health_check_path": "/health"}
            if name == "web" else None,
            "tags": {"app": "shopfront"},
        }
    ingress: dict[str, list[dict[str, Any]]] = {n: [] for n in layout}
    for caller, callee in edges:
        ingress[callee].append({"from_service": caller, "port": svc[callee]["ports"][0], "protocol": "tcp"})
    ingress["web"].append({"from_service": "load_balancer", "port": 8080, "protocol": "tcp"})
    blueprint = {
        "schema_version": 1, "primary_region": PRIMARY, "shadow_region": SHADOW, "services": svc,
        "launch_tiers": tiers,
        "networking": {
            "vpc": {"cidr": "10.20.0.0/16", "id": vpc},
            "subnets": [{"az": f"{SHADOW}{az}", "cidr": f"10.20.{i}.0/24", "id": s, "primary_az": f"{PRIMARY}{az}"}
                        for i, (az, s) in enumerate(zip("ab", subnets, strict=True))],
            "security_groups": {n: {"id": sgs[n], "name": f"shadow-{PRIMARY}-{n}", "ingress": ingress[n]}
                                for n in layout},
            "load_balancer": {"name": "shadow-shopfront", "scheme": "internet-facing",
                              "listeners": [{"port": 80, "protocol": "HTTP", "target_group": "shadow-web"}],
                              "target_groups": [{"name": "shadow-web", "port": 8080, "protocol": "HTTP",
                                                 "health_check_path": "/health", "service": "web"}]},
        },
        "traffic": {"hosted_zone_id": zone.rsplit("/", 1)[-1], "zone_name": ZONE, "strategy": strategy,
                    "weighted_steps": [10, 50, 100],
                    "records": [{"name": RECORD, "type": "CNAME", "set_identifier": "shop-primary",
                                 "failover": "PRIMARY", "primary_target": primary_target,
                                 "shadow_target": lb["DNSName"], "ttl": 60}]},
        "replication": [{"kind": "rds", "action": "promote_replica", "service": "db",
                         "source": {"region": PRIMARY, "identifier": "shop-db", "arn": src},
                         "target": {"region": SHADOW, "identifier": "shop-db-shadow"}}],
        "provenance": {"fingerprint_id": None, "graph_id": None, "run_id": "test", "primary_inventory_hash": None},
    }
    return ShadowWorld(endpoint=endpoint, blueprint=blueprint, vpc_id=vpc, subnet_ids=subnets,
                       hosted_zone_id=zone.rsplit("/", 1)[-1], primary_target=primary_target,
                       shadow_lb_dns=lb["DNSName"])


def store_blueprint(engine: Any, world: ShadowWorld) -> int:
    """Make the world's blueprint current in the warehouse; returns its version."""
    from shadowing.blueprint.model import Blueprint
    from shadowing.warehouse.blueprints import upsert_blueprint_version

    Blueprint.from_dict(world.blueprint)  # the contract must accept it
    return upsert_blueprint_version(engine, primary_region=PRIMARY, shadow_region=SHADOW,
                                    payload=world.blueprint).version.version
