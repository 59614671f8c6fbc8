"""Databases a failover creates (cross-region replica, snapshot restore) and a failback's reverse replica carry
the shadowing tags every other created resource carries: failover id, mode, service, tier (moto server)."""

from __future__ import annotations

from typing import Any

from shadowing.aws import tags as T
from shadowing.aws.clients import client
from shadowing.blueprint.model import Blueprint
from shadowing.failover.clients import FailoverClients
from shadowing.failover.replication import trigger_replication
from tests.support.shadow_world import PRIMARY, SHADOW, build_shadow_world


def _tags(rds: Any, identifier: str) -> dict[str, str]:
    arn = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["DBInstanceArn"]
    return T.from_aws(rds.list_tags_for_resource(ResourceName=arn)["TagList"])


def test_created_databases_are_tagged_with_the_failover(aws: str) -> None:
    world = build_shadow_world(aws, services=4, instances_per_service=1)
    shadow_rds = client("rds", SHADOW, aws)
    # a snapshot already copied to the shadow region (what restore_snapshot restores from)
    shadow_rds.create_db_instance(DBInstanceIdentifier="orders-db", DBInstanceClass="db.t3.micro", Engine="postgres",
                                  MasterUsername="orders", MasterUserPassword="not-a-secret1", AllocatedStorage=20)
    shadow_rds.create_db_snapshot(DBInstanceIdentifier="orders-db", DBSnapshotIdentifier="orders-db-copy")
    source = world.blueprint["replication"][0]["source"]
    world.blueprint["replication"] = [
        {"kind": "rds", "action": "create_replica_then_promote", "service": "db", "source": source,
         "target": {"region": SHADOW, "identifier": "shop-db-new-replica"}},
        {"kind": "rds", "action": "restore_snapshot", "service": "db",
         "source": {"region": PRIMARY, "identifier": "orders-db"},
         "target": {"region": SHADOW, "identifier": "orders-db-restored"}}]
    blueprint = Blueprint.from_dict(world.blueprint)
    clients = FailoverClients.for_endpoint(aws)
    steps = trigger_replication(clients, blueprint, failover_id="regional_failover__t1", mode="live")
    assert all(s["status"] != "failed" for s in steps), steps
    tier = str(world.blueprint["services"]["db"]["tier"])
    expected = {T.FAILOVER_ID: "regional_failover__t1", T.MODE: "live", T.SERVICE: "db", T.TIER: tier,
                T.ROLE: "launched", T.PRESTAGED_FOR: PRIMARY}
    for identifier in ("shop-db-new-replica", "orders-db-restored"):
        assert expected.items() <= _tags(shadow_rds, identifier).items(), identifier
    # idempotent: a retried task creates nothing twice and the tags stay
    trigger_replication(clients, blueprint, failover_id="regional_failover__t1", mode="live")
    assert expected.items() <= _tags(shadow_rds, "shop-db-new-replica").items()
    # failback: the reverse replica in the primary region names the failover it undoes
    trigger_replication(clients, blueprint, failover_id="regional_failover__t1", reverse=True)
    assert _tags(client("rds", PRIMARY, aws), "shop-db-from-shadow")[T.FAILOVER_ID] == "regional_failover__t1"
