"""Data replication after traffic moved: triggered, never awaited (the failover does not wait for data sync).

Per blueprint step: ``promote_replica`` promotes the pre-staged cross-region RDS read replica (Aurora: the
replica cluster); ``create_replica_then_promote`` creates the replica from the primary's ARN (promotion
follows once it is available — promoted right away when the emulator reports it available); ``restore_snapshot``
restores the newest snapshot copied to the shadow; ``s3_replication`` turns on bucket versioning and a
replication rule towards the shadow bucket. Every action is idempotent: state is read first.
Failback plans and triggers the reverse direction (shadow → primary).
"""

from __future__ import annotations

import logging
from typing import Any

from shadowing.aws import tags as T
from shadowing.blueprint.model import Blueprint, ReplicationStep
from shadowing.failover.backoff import error_code

log = logging.getLogger(__name__)
REPLICATION_ROLE = "arn:aws:iam::{account}:role/shadowing-s3-replication"


def _db(rds: Any, identifier: str) -> dict[str, Any] | None:
    try:
        return rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    except Exception as exc:
        if error_code(exc) == "DBInstanceNotFound" or error_code(exc) == "DBInstanceNotFoundFault":
            return None
        raise


def _promote(rds: Any, identifier: str) -> str:
    try:
        rds.promote_read_replica(DBInstanceIdentifier=identifier, BackupRetentionPeriod=1)
        return "promotion triggered"
    except Exception as exc:
        # Already a standalone instance (an earlier attempt promoted it): nothing left to do.
        if error_code(exc) in ("InvalidDBInstanceState", "InvalidDBInstanceStateFault"):
            return "already promoted"
        raise


def database_tags(blueprint: Blueprint, step: ReplicationStep, *, failover_id: str | None,
                  mode: str) -> list[dict[str, str]]:
    """Tags of a database a failover (or failback) creates: like every launched resource, who made it (failover
    id, mode) and what it is (service, tier), so it is found, audited and cleaned up by tag."""
    values = {T.ROLE: "launched", T.PRESTAGED_FOR: blueprint.primary_region, T.MODE: mode}
    if failover_id:
        values[T.FAILOVER_ID] = failover_id
    if step.service:
        values[T.SERVICE] = step.service
        service = blueprint.services.get(step.service)
        if service is not None:
            values[T.TIER] = str(service.tier)
    return T.to_aws(values)


def _rds_step(rds_shadow: Any, rds_primary: Any, step: ReplicationStep,
              tags: list[dict[str, str]]) -> dict[str, Any]:
    target = step.target.identifier
    if step.kind == "aurora":
        try:
            rds_shadow.promote_read_replica_db_cluster(DBClusterIdentifier=target)
            return {"status": "promotion triggered"}
        except Exception as exc:
            if error_code(exc) in ("InvalidDBClusterStateFault", "InvalidDBClusterState"):
                return {"status": "already promoted"}
            raise
    current = _db(rds_shadow, target)
    if step.action == "promote_replica":
        if current is None:
            raise RuntimeError(f"replica {target} does not exist in {step.target.region}")
        return {"status": _promote(rds_shadow, target)}
    if step.action == "create_replica_then_promote":
        if current is None:
            source = step.source.arn or step.source.identifier
            rds_shadow.create_db_instance_read_replica(DBInstanceIdentifier=target,
                                                       SourceDBInstanceIdentifier=source,
                                                       SourceRegion=step.source.region, Tags=tags)
            current = _db(rds_shadow, target)
        if current is not None and current.get("DBInstanceStatus") == "available":
            return {"status": f"replica created; {_promote(rds_shadow, target)}"}
        return {"status": "replica creation triggered; promote once available"}
    if step.action == "restore_snapshot":
        if current is not None:
            return {"status": "already restored"}
        snapshots = rds_shadow.describe_db_snapshots()["DBSnapshots"]
        candidates = [s for s in snapshots if step.source.identifier in (s.get("DBInstanceIdentifier"),
                                                                           s.get("SourceDBSnapshotIdentifier"))
                      or step.source.identifier in s["DBSnapshotIdentifier"]]
        if not candidates:
            raise RuntimeError(f"no snapshot of {step.source.identifier} in {step.target.region}")
        latest = max(candidates, key=lambda s: str(s.get("SnapshotCreateTime", "")))
        rds_shadow.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=target,
                                                        DBSnapshotIdentifier=latest["DBSnapshotIdentifier"],
                                                        Tags=tags)
        return {"status": f"restore from {latest['DBSnapshotIdentifier']} triggered"}
    raise RuntimeError(f"unsupported RDS action {step.action}")


def _s3_step(s3_source: Any, s3_target: Any, source: str, target: str, target_region: str,
             account: str) -> dict[str, Any]:
    try:
        s3_target.head_bucket(Bucket=target)
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3_target.create_bucket(Bucket=target, CreateBucketConfiguration={"LocationConstraint": target_region})
    for client, bucket in ((s3_source, source), (s3_target, target)):
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3_source.put_bucket_replication(Bucket=source, ReplicationConfiguration={
        "Role": REPLICATION_ROLE.format(account=account),
        "Rules": [{"ID": "shadowing", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::{target}"}}]})
    return {"status": "replication rule set"}


def trigger_replication(clients: Any, blueprint: Blueprint, *, account: str = "123456789012",
                        reverse: bool = False, failover_id: str | None = None,
                        mode: str = "live") -> list[dict[str, Any]]:
    """Trigger every replication step (or, ``reverse``, plan+trigger shadow → primary). Raises after trying
    all steps when any failed, so the (idempotent) task is retried. Databases it creates carry
    :func:`database_tags` (``failover_id``: the failover that creates them, or that a failback undoes)."""
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for step in blueprint.replication:
        entry = {"kind": step.kind, "action": step.action, "source": step.source.identifier,
                 "target": step.target.identifier, "reverse": reverse}
        try:
            if step.kind == "s3":
                src_region, dst_region = step.source.region, step.target.region
                src, dst = step.source.identifier, step.target.identifier
                if reverse:
                    src_region, dst_region, src, dst = dst_region, src_region, dst, src
                entry.update(_s3_step(clients.get("s3", src_region), clients.get("s3", dst_region), src, dst,
                                      dst_region, account))
            elif reverse:
                entry.update(_reverse_rds(clients.get("rds", step.source.region), clients.get("rds",
                                                                                             step.target.region), step,
                                          database_tags(blueprint, step, failover_id=failover_id, mode=mode)))
            else:
                entry.update(_rds_step(clients.get("rds", step.target.region),
                                       clients.get("rds", step.source.region), step,
                                       database_tags(blueprint, step, failover_id=failover_id, mode=mode)))
        except Exception as exc:
            entry.update({"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            failures.append(f"{step.kind} {step.target.identifier}: {exc}")
        results.append(entry)
    if failures:
        raise RuntimeError("replication trigger failed: " + "; ".join(failures))
    return results


def _reverse_rds(rds_primary: Any, rds_shadow: Any, step: ReplicationStep,
                 tags: list[dict[str, str]]) -> dict[str, Any]:
    """Failback: the promoted shadow database becomes the source of a new replica in the primary region."""
    shadow = _db(rds_shadow, step.target.identifier)
    if shadow is None:
        return {"status": f"nothing to reverse: {step.target.identifier} absent in the shadow"}
    name = f"{step.source.identifier}-from-shadow"
    if _db(rds_primary, name) is not None:
        return {"status": f"reverse replica {name} exists"}
    rds_primary.create_db_instance_read_replica(DBInstanceIdentifier=name,
                                                SourceDBInstanceIdentifier=shadow["DBInstanceArn"],
                                                SourceRegion=step.target.region, Tags=tags)
    return {"status": f"reverse replica {name} creation triggered"}


def replication_plan(blueprint: Blueprint, *, reverse: bool = False) -> list[dict[str, Any]]:
    plan = []
    for step in blueprint.replication:
        source, target = (step.target, step.source) if reverse else (step.source, step.target)
        plan.append({"kind": step.kind, "action": "reverse_replica" if reverse and step.kind != "s3" else step.action,
                     "from": f"{source.region}/{source.identifier}", "to": f"{target.region}/{target.identifier}"})
    return plan
