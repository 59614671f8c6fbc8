"""Shadow networking, idempotently: target groups, listeners, security-group ingress, internal DNS.

Everything is "ensure": read what exists, create only the difference, so a retried step is a no-op. Ingress
rules come from the blueprint (one per dependency edge into a service: least privilege); internal DNS is a
Route 53 private hosted zone in the shadow VPC with one record per service — multi-value A records of the
launched instances' private addresses, or the load balancer's name for load-balanced services.
"""

from __future__ import annotations

import logging
from typing import Any

from shadowing.aws import tags as tag_keys
from shadowing.blueprint.model import Blueprint
from shadowing.failover.backoff import error_code, poll_until
from shadowing.failover.identity import safe_name
from shadowing.failover.launcher import describe_tagged, target_group_arns
from shadowing.failover.plan import private_zone_name

log = logging.getLogger(__name__)
ANYWHERE = "0.0.0.0/0"


def drill_zone_name(primary_region: str, failover_id: str) -> str:
    """A drill gets its own private zone so it never touches the zone a live failover serves from."""
    return f"{failover_id}.drill.{private_zone_name(primary_region)}"


def zone_for(primary_region: str, failover_id: str, mode: str) -> str:
    return drill_zone_name(primary_region, failover_id) if mode == "drill" else private_zone_name(primary_region)


def ensure_target_groups(elbv2: Any, blueprint: Blueprint) -> dict[str, str]:
    """Every target group of the shadow load balancer exists (created in the shadow VPC when missing)."""
    lb = blueprint.networking.load_balancer
    if lb is None:
        return {}
    arns = target_group_arns(elbv2, [g.name for g in lb.target_groups])
    vpc = blueprint.networking.vpc.id
    for group in lb.target_groups:
        if group.name in arns:
            continue
        if not vpc:
            raise RuntimeError(f"target group {group.name} is missing and the shadow VPC is not pre-staged")
        try:
            created = elbv2.create_target_group(
                Name=group.name, Protocol=group.protocol, Port=group.port, VpcId=vpc, TargetType="instance",
                HealthCheckPath=group.health_check_path,
                Tags=tag_keys.to_aws({tag_keys.SERVICE: group.service, tag_keys.ROLE: "prestaged",
                                      tag_keys.PRESTAGED_FOR: blueprint.primary_region}))
            arns[group.name] = created["TargetGroups"][0]["TargetGroupArn"]
        except Exception as exc:
            if error_code(exc) != "DuplicateTargetGroupName":
                raise
            arns.update(target_group_arns(elbv2, [group.name]))
    return arns


def load_balancer(elbv2: Any, name: str) -> dict[str, Any] | None:
    try:
        found = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
    except Exception as exc:
        if error_code(exc) in ("LoadBalancerNotFound", "LoadBalancerNotFoundException"):
            return None
        raise
    return found[0] if found else None


def ensure_load_balancer(elbv2: Any, blueprint: Blueprint, arns: dict[str, str]) -> dict[str, Any] | None:
    """The shadow load balancer and its listeners (created when pre-staging did not)."""
    spec = blueprint.networking.load_balancer
    if spec is None:
        return None
    lb = load_balancer(elbv2, spec.name)
    if lb is None:
        subnets = [s.id for s in blueprint.networking.subnets if s.id]
        if len(subnets) < 2:
            raise RuntimeError(f"load balancer {spec.name} is missing and fewer than 2 shadow subnets exist")
        lb = elbv2.create_load_balancer(
            Name=spec.name, Subnets=subnets, Scheme=spec.scheme, Type="application",
            Tags=tag_keys.to_aws({tag_keys.ROLE: "prestaged", tag_keys.PRESTAGED_FOR: blueprint.primary_region}),
        )["LoadBalancers"][0]
    existing = {(x["Port"], x["Protocol"]) for x in
                elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]}
    for listener in spec.listeners:
        if (listener.port, listener.protocol) in existing:
            continue
        elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Port=listener.port,
                              Protocol=listener.protocol,
                              DefaultActions=[{"Type": "forward", "TargetGroupArn": arns[listener.target_group]}])
    return lb


def _permission_key(perm: dict[str, Any]) -> set[tuple[str, int, int, str]]:
    keys: set[tuple[str, int, int, str]] = set()
    proto = str(perm.get("IpProtocol"))
    lo, hi = int(perm.get("FromPort", -1) or -1), int(perm.get("ToPort", -1) or -1)
    for pair in perm.get("UserIdGroupPairs") or []:
        keys.add((proto, lo, hi, pair["GroupId"]))
    for rng in perm.get("IpRanges") or []:
        keys.add((proto, lo, hi, rng["CidrIp"]))
    return keys


def desired_ingress(blueprint: Blueprint) -> dict[str, list[dict[str, Any]]]:
    """Security group id → IpPermissions from the blueprint's rules (sources resolved to group ids)."""
    groups = blueprint.networking.security_groups
    ids = {name: sg.id for name, sg in groups.items() if sg.id}
    vpc_cidr = blueprint.networking.vpc.cidr
    desired: dict[str, list[dict[str, Any]]] = {}
    for _name, sg in sorted(groups.items()):
        if not sg.id:
            continue
        for rule in sg.ingress:
            proto = "-1" if rule.protocol == "-1" else rule.protocol
            perm: dict[str, Any] = {"IpProtocol": proto, "FromPort": rule.port, "ToPort": rule.port}
            if rule.from_service == "internet":
                perm["IpRanges"] = [{"CidrIp": ANYWHERE, "Description": "internet"}]
            elif rule.from_service == "load_balancer" or rule.from_service not in ids:
                perm["IpRanges"] = [{"CidrIp": vpc_cidr, "Description": f"from {rule.from_service}"}]
            else:
                perm["UserIdGroupPairs"] = [{"GroupId": ids[rule.from_service],
                                             "Description": f"from {rule.from_service}"}]
            desired.setdefault(sg.id, []).append(perm)
    return desired


def ensure_ingress(ec2: Any, blueprint: Blueprint) -> int:
    """Authorize the missing ingress rules; returns how many were added."""
    desired = desired_ingress(blueprint)
    if not desired:
        return 0
    present: dict[str, set[tuple[str, int, int, str]]] = {}
    described = ec2.describe_security_groups(GroupIds=sorted(desired))["SecurityGroups"]
    for group in described:
        present[group["GroupId"]] = set().union(*(_permission_key(p) for p in group.get("IpPermissions", [])))
    added = 0
    for group_id, perms in desired.items():
        missing = [p for p in perms if not _permission_key(p) <= present.get(group_id, set())]
        for perm in missing:  # one by one: a duplicate (raced) rule must not hide the others
            try:
                ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[perm])
                added += 1
            except Exception as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise
    return added


def find_zone(route53: Any, name: str, vpc_id: str | None = None) -> str | None:
    """Id of the private hosted zone called ``name`` (associated with ``vpc_id`` when given)."""
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            if zone["Name"] == name and zone.get("Config", {}).get("PrivateZone"):
                return str(zone["Id"])
    return None


def ensure_private_zone(route53: Any, name: str, vpc_id: str, shadow_region: str, *, reference: str) -> str:
    zone = find_zone(route53, name)
    if zone:
        return zone
    # CallerReference makes the create idempotent on real AWS; moto is not, hence the lookup above.
    created = route53.create_hosted_zone(
        Name=name, CallerReference=safe_name(reference, 128),
        HostedZoneConfig={"Comment": "shadowing: internal service discovery of the shadow", "PrivateZone": True},
        VPC={"VPCRegion": shadow_region, "VPCId": vpc_id})
    return str(created["HostedZone"]["Id"])


def wait_insync(route53: Any, change_id: str, timeout: float = 300) -> None:
    poll_until(lambda: True if route53.get_change(Id=change_id)["ChangeInfo"]["Status"] == "INSYNC" else None,
               what="Route 53 change INSYNC", timeout=timeout, interval=0.2, max_interval=5.0)


def launched_addresses(ec2: Any, failover_id: str) -> dict[str, list[str]]:
    """Service → private addresses of the failover's instances, described from the cloud (the fallback when the
    launch step's own answer is not at hand)."""
    addresses: dict[str, list[str]] = {}
    for instance in describe_tagged(ec2, failover_id):
        service = tag_keys.from_aws(instance.get("Tags")).get(tag_keys.SERVICE)
        if service and instance.get("PrivateIpAddress"):
            addresses.setdefault(service, []).append(instance["PrivateIpAddress"])
    return addresses


def service_records(ec2: Any, blueprint: Blueprint, failover_id: str, zone: str,
                    lb_dns: str | None, addresses: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """One record per launched service: ALB CNAME for load-balanced services, else multi-value A records."""
    needs_addresses = any(spec.target_group is None or not lb_dns for spec in blueprint.services.values())
    if addresses is None and needs_addresses:
        addresses = launched_addresses(ec2, failover_id)
    addresses = addresses or {}
    records: list[dict[str, Any]] = []
    for name, spec in sorted(blueprint.services.items()):
        fqdn = f"{name}.{zone}"
        if spec.target_group is not None and lb_dns:
            records.append({"Name": fqdn, "Type": "CNAME", "TTL": 30, "ResourceRecords": [{"Value": lb_dns}]})
        elif addresses.get(name):
            values = sorted(addresses[name])[:400]  # a record set holds at most 400 values
            records.append({"Name": fqdn, "Type": "A", "TTL": 30,
                            "ResourceRecords": [{"Value": v} for v in values]})
    return records


def configure_network(ec2: Any, elbv2: Any, route53: Any, blueprint: Blueprint, *, failover_id: str,
                      mode: str, addresses: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The whole network step; returns what it ensured (for the event timeline)."""
    arns = ensure_target_groups(elbv2, blueprint)
    lb = ensure_load_balancer(elbv2, blueprint, arns)
    rules_added = ensure_ingress(ec2, blueprint)
    detail: dict[str, Any] = {"target_groups": len(arns), "ingress_rules_added": rules_added,
                              "load_balancer": lb["DNSName"] if lb else None}
    vpc = blueprint.networking.vpc.id
    if vpc:
        name = zone_for(blueprint.primary_region, failover_id, mode)
        zone = ensure_private_zone(route53, name, vpc, blueprint.shadow_region,
                                   reference=f"shadowing-{name}")
        records = service_records(ec2, blueprint, failover_id, name, lb["DNSName"] if lb else None, addresses)
        if records:
            for start in range(0, len(records), 500):
                change = route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={
                    "Comment": f"shadowing failover {failover_id}",
                    "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in records[start:start + 500]]})
                wait_insync(route53, change["ChangeInfo"]["Id"])
        detail.update({"private_zone": name, "private_zone_id": zone, "dns_records": len(records)})
    return detail


def delete_drill_zone(route53: Any, primary_region: str, failover_id: str) -> bool:
    """Drill teardown: delete the drill's private zone and its records."""
    zone = find_zone(route53, drill_zone_name(primary_region, failover_id))
    if zone is None:
        return False
    changes = []
    for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone):
        changes.extend({"Action": "DELETE", "ResourceRecordSet": r} for r in page["ResourceRecordSets"]
                       if r["Type"] not in ("NS", "SOA"))
    for start in range(0, len(changes), 500):
        route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes[start:start + 500]})
    route53.delete_hosted_zone(Id=zone)
    return True


def deregister_launched(elbv2: Any, blueprint: Blueprint, instance_ids: set[str]) -> int:
    """Remove the given instances from the shadow target groups (drill teardown / failback)."""
    lb = blueprint.networking.load_balancer
    if lb is None or not instance_ids:
        return 0
    removed = 0
    for arn in target_group_arns(elbv2, [g.name for g in lb.target_groups]).values():
        targets = [d["Target"] for d in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
                   if d["Target"]["Id"] in instance_ids]
        if targets:
            elbv2.deregister_targets(TargetGroupArn=arn, Targets=targets)
            removed += len(targets)
    return removed
