"""Reading the live inventory of a region through boto3 clients passed in (real AWS or the emulator).

The result is a plain JSON-able dict (sorted, deterministic) so the builder stays pure and testable on
hand-made dicts, and so its hash can detect drift. Resources belong to a service through the
``shadowing:service`` tag (shadowing.aws.tags.SERVICE); resources tagged ``shadowing:role`` = prestaged or
launched are never mistaken for the primary's own.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shadowing.aws import tags as T
from shadowing.warehouse.codec import content_hash

log = logging.getLogger(__name__)

ClientFactory = Callable[[str, str], Any]
"""(service, region) → boto3 client."""

_NOT_PRIMARY = {"prestaged", "launched"}


def _is_primary(tags: dict[str, str]) -> bool:
    return tags.get(T.ROLE, "primary") not in _NOT_PRIMARY


def paginate_all(client: Any, operation: str, key: str, *, page_size: int | None = None,
                 **kwargs: Any) -> list[dict[str, Any]]:
    if client.can_paginate(operation):
        items: list[dict[str, Any]] = []
        if page_size:
            kwargs["PaginationConfig"] = {"PageSize": page_size}
        for page in client.get_paginator(operation).paginate(**kwargs):
            items.extend(page.get(key, []))
        return items
    return list(getattr(client, operation)(**kwargs).get(key, []))


def list_launch_templates(ec2: Any, filters: list[dict[str, Any]] | None = None,
                          names: list[str] | None = None) -> list[dict[str, Any]]:
    """Launch templates, by name chunks when the names are known.

    moto 5.2 truncates DescribeLaunchTemplates at MaxResults (default 15) and returns no NextToken, so pages
    are asked at the API's maximum (200) and, when the names are known, per chunk of names."""
    if names:
        found: list[dict[str, Any]] = []
        unique = sorted(set(names))
        for start in range(0, len(unique), 200):
            found += paginate_all(ec2, "describe_launch_templates", "LaunchTemplates", page_size=200, Filters=[
                *(filters or []), {"Name": "launch-template-name", "Values": unique[start:start + 200]}])
        return found
    return paginate_all(ec2, "describe_launch_templates", "LaunchTemplates", page_size=200, Filters=filters or [])


def parse_user_data_env(user_data_b64: str | None) -> dict[str, str]:
    """KEY=VALUE lines (optionally ``export KEY=VALUE``) of a launch template's user data."""
    if not user_data_b64:
        return {}
    try:
        text = base64.b64decode(user_data_b64).decode("utf-8", "replace")
    except (ValueError, TypeError):
        return {}
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export "):
            line = line[len("export "):].strip()
        key, sep, value = line.partition("=")
        if sep and key and key.replace("_", "").isalnum() and key[0].isalpha() and key.upper() == key:
            env[key] = value.strip().strip("'\"")
    return dict(sorted(env.items()))


def read_ec2(ec2: Any) -> dict[str, Any]:
    vpcs = [{"id": v["VpcId"], "cidr": v["CidrBlock"], "tags": T.from_aws(v.get("Tags"))}
            for v in paginate_all(ec2, "describe_vpcs", "Vpcs")]
    subnets = [{"id": s["SubnetId"], "az": s["AvailabilityZone"], "cidr": s["CidrBlock"], "vpc_id": s["VpcId"],
                "tags": T.from_aws(s.get("Tags"))} for s in paginate_all(ec2, "describe_subnets", "Subnets")]
    groups = []
    for g in paginate_all(ec2, "describe_security_groups", "SecurityGroups"):
        tags = T.from_aws(g.get("Tags"))
        ingress = []
        for perm in g.get("IpPermissions", []):
            ingress.append({"protocol": perm.get("IpProtocol", "tcp"), "from_port": perm.get("FromPort"),
                            "to_port": perm.get("ToPort"),
                            "from_groups": sorted(p["GroupId"] for p in perm.get("UserIdGroupPairs", [])),
                            "cidrs": sorted(r["CidrIp"] for r in perm.get("IpRanges", []))})
        groups.append({"id": g["GroupId"], "name": g["GroupName"], "vpc_id": g.get("VpcId"), "tags": tags,
                       "ingress": sorted(ingress, key=lambda r: (str(r["from_port"]), r["protocol"]))})
    instances = []
    for reservation in paginate_all(ec2, "describe_instances", "Reservations", page_size=1000,
                                    Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]):
        for inst in reservation.get("Instances", []):
            tags = T.from_aws(inst.get("Tags"))
            instances.append({
                "id": inst["InstanceId"], "type": inst["InstanceType"], "ami": inst.get("ImageId"),
                "subnet": inst.get("SubnetId"), "az": inst.get("Placement", {}).get("AvailabilityZone"),
                "security_groups": sorted(g["GroupId"] for g in inst.get("SecurityGroups", [])),
                "private_ip": inst.get("PrivateIpAddress"), "tags": tags,
                "launch_template": tags.get("aws:ec2launchtemplate:id"),
            })
    listed = [lt for lt in list_launch_templates(ec2) if _is_primary(T.from_aws(lt.get("Tags")))]

    # every template's default version in one call (not one round trip per template)
    datas: dict[str, dict[str, Any]] = {}
    if listed:
        try:
            for version in paginate_all(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                                        page_size=200, Versions=["$Default"]):
                datas[version["LaunchTemplateId"]] = version.get("LaunchTemplateData") or {}
        except ClientError as exc:
            log.warning("describe_launch_template_versions: %s", exc)
    templates = []
    for lt in listed:
        data = datas.get(lt["LaunchTemplateId"], {})
        templates.append({"id": lt["LaunchTemplateId"], "name": lt["LaunchTemplateName"],
                          "tags": T.from_aws(lt.get("Tags")), "image_id": data.get("ImageId"),
                          "instance_type": data.get("InstanceType"),
                          "env": parse_user_data_env(data.get("UserData"))})
    amis = sorted({i["ami"] for i in instances if i["ami"]} | {t["image_id"] for t in templates if t["image_id"]})
    images = describe_images(ec2, amis)
    return {"vpcs": sorted(vpcs, key=lambda v: v["id"]), "subnets": sorted(subnets, key=lambda s: s["id"]),
            "security_groups": sorted(groups, key=lambda g: g["id"]),
            "instances": sorted(instances, key=lambda i: i["id"]),
            "launch_templates": sorted(templates, key=lambda t: t["name"]), "images": images}


def describe_images(ec2: Any, image_ids: list[str]) -> dict[str, dict[str, Any]]:
    """AMI id → {name, state, tags}; ids the region does not know are simply absent."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(image_ids), 100):
        # an image-id filter, unlike ImageIds=, does not fail the whole call on one unknown id
        for img in ec2.describe_images(Filters=[{"Name": "image-id", "Values": image_ids[start:start + 100]}])[
                "Images"]:
            found[img["ImageId"]] = {"name": img.get("Name"), "state": img.get("State", "available"),
                                     "tags": T.from_aws(img.get("Tags"))}
    return dict(sorted(found.items()))


def read_elbv2(elbv2: Any) -> dict[str, Any]:
    lbs = []
    groups = []
    for tg in paginate_all(elbv2, "describe_target_groups", "TargetGroups"):
        groups.append({"arn": tg["TargetGroupArn"], "name": tg["TargetGroupName"], "port": tg.get("Port"),
                       "protocol": tg.get("Protocol", "HTTP"), "health_check_path": tg.get("HealthCheckPath") or "/",
                       "vpc_id": tg.get("VpcId"), "load_balancers": sorted(tg.get("LoadBalancerArns", []))})
    arns = [g["arn"] for g in groups]
    tags_by_arn: dict[str, dict[str, str]] = {}
    raw_lbs = paginate_all(elbv2, "describe_load_balancers", "LoadBalancers")
    all_arns = arns + [lb["LoadBalancerArn"] for lb in raw_lbs]
    for start in range(0, len(all_arns), 20):
        for desc in elbv2.describe_tags(ResourceArns=all_arns[start:start + 20]).get("TagDescriptions", []):
            tags_by_arn[desc["ResourceArn"]] = T.from_aws(desc.get("Tags"))
    for g in groups:
        g["tags"] = tags_by_arn.get(g["arn"], {})
    for lb in raw_lbs:
        listeners = [{"port": li["Port"], "protocol": li.get("Protocol", "HTTP"),
                      "target_groups": sorted(a.get("TargetGroupArn", "") for a in li.get("DefaultActions", [])
                                              if a.get("TargetGroupArn"))}
                     for li in paginate_all(elbv2, "describe_listeners", "Listeners", LoadBalancerArn=lb["LoadBalancerArn"])]
        lbs.append({"arn": lb["LoadBalancerArn"], "name": lb["LoadBalancerName"], "dns_name": lb.get("DNSName"),
                    "scheme": lb.get("Scheme", "internet-facing"), "vpc_id": lb.get("VpcId"),
                    "tags": tags_by_arn.get(lb["LoadBalancerArn"], {}),
                    "listeners": sorted(listeners, key=lambda x: x["port"])})
    return {"load_balancers": sorted(lbs, key=lambda x: x["name"]),
            "target_groups": sorted(groups, key=lambda x: x["name"])}


def read_route53(route53: Any) -> list[dict[str, Any]]:
    zones = []
    for zone in paginate_all(route53, "list_hosted_zones", "HostedZones"):
        if zone.get("Config", {}).get("PrivateZone"):
            continue
        records = []
        for rr in paginate_all(route53, "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone["Id"]):
            if rr["Type"] in {"SOA", "NS"}:
                continue
            records.append({"name": rr["Name"], "type": rr["Type"], "set_identifier": rr.get("SetIdentifier"),
                            "failover": rr.get("Failover"), "weight": rr.get("Weight"), "ttl": rr.get("TTL"),
                            "values": sorted(v["Value"] for v in rr.get("ResourceRecords", [])),
                            "alias": (rr.get("AliasTarget") or {}).get("DNSName")})
        zones.append({"id": zone["Id"].split("/")[-1], "name": zone["Name"],
                      "records": sorted(records, key=lambda r: (r["name"], r["type"], r["set_identifier"] or ""))})
    return sorted(zones, key=lambda z: z["name"])


def read_rds(rds: Any) -> dict[str, Any]:
    instances = []
    for db in paginate_all(rds, "describe_db_instances", "DBInstances"):
        tags = T.from_aws(db.get("TagList"))
        instances.append({"identifier": db["DBInstanceIdentifier"], "arn": db["DBInstanceArn"],
                          "engine": db.get("Engine"), "instance_class": db.get("DBInstanceClass"),
                          "endpoint": (db.get("Endpoint") or {}).get("Address"),
                          "port": (db.get("Endpoint") or {}).get("Port"),
                          "cluster": db.get("DBClusterIdentifier"),
                          "replica_of": db.get("ReadReplicaSourceDBInstanceIdentifier"),
                          "status": db.get("DBInstanceStatus"), "tags": tags})
    clusters = []
    try:
        for cl in paginate_all(rds, "describe_db_clusters", "DBClusters"):
            clusters.append({"identifier": cl["DBClusterIdentifier"], "arn": cl["DBClusterArn"],
                             "engine": cl.get("Engine"), "endpoint": cl.get("Endpoint"),
                             "tags": T.from_aws(cl.get("TagList"))})
    except ClientError as exc:
        log.warning("describe_db_clusters: %s", exc)
    return {"db_instances": sorted(instances, key=lambda d: d["identifier"]),
            "db_clusters": sorted(clusters, key=lambda d: d["identifier"])}


def read_s3(s3: Any, region: str) -> list[dict[str, Any]]:
    buckets = []
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        try:
            location = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        except ClientError:
            continue
        if location != region:
            continue
        try:
            tags = T.from_aws(s3.get_bucket_tagging(Bucket=name).get("TagSet"))
        except ClientError:
            tags = {}
        buckets.append({"name": name, "region": location, "tags": tags})
    return sorted(buckets, key=lambda b: b["name"])


def read_inventory(clients: ClientFactory, region: str) -> dict[str, Any]:
    """The live inventory of ``region`` (primary resources only), with an ``inventory_hash``."""
    ec2 = read_ec2(clients("ec2", region))
    elb = _optional(lambda: read_elbv2(clients("elbv2", region)), {"load_balancers": [], "target_groups": []})
    zones = _optional(lambda: read_route53(clients("route53", region)), [])
    rds = _optional(lambda: read_rds(clients("rds", region)), {"db_instances": [], "db_clusters": []})
    buckets = _optional(lambda: read_s3(clients("s3", region), region), [])
    inventory = {"region": region, **ec2, **elb, "hosted_zones": zones, **rds, "buckets": buckets}
    inventory = _primary_only(inventory)
    inventory["inventory_hash"] = content_hash({k: v for k, v in inventory.items() if k != "images"})
    return inventory


def _optional(read: Callable[[], Any], empty: Any) -> Any:
    try:
        return read()
    except (ClientError, BotoCoreError) as exc:  # one missing API must not hide the rest of the inventory
        log.warning("inventory: %s", exc)
        return empty


def _primary_only(inv: dict[str, Any]) -> dict[str, Any]:
    for key in ("vpcs", "subnets", "security_groups", "instances", "launch_templates", "load_balancers",
                "target_groups", "db_instances", "db_clusters", "buckets"):
        inv[key] = [item for item in inv.get(key, []) if _is_primary(item.get("tags") or {})]
    inv["db_instances"] = [d for d in inv["db_instances"] if not d.get("replica_of")]
    return inv


def shadow_state(clients: ClientFactory, shadow_region: str, primary_region: str,
                 primary_amis: list[str]) -> dict[str, Any]:
    """What is already pre-staged in the shadow for ``primary_region`` (found by tags), and which primary
    AMIs have a copy there (tracked by the ``shadowing:source-ami`` tag or the same image name)."""
    from shadowing.blueprint.prestage import find_prestaged

    return find_prestaged(clients, shadow_region, primary_region, primary_amis)
