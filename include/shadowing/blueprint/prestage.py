"""Pre-staging: the cheap, data-free parts of the shadow created ahead of time and kept in step.

VPC, subnets, per-service security groups (least-privilege ingress from the blueprint), launch templates,
AMI copies and RDS cross-region read replicas. Every resource is tagged ``shadowing:role = prestaged`` and
``shadowing:prestaged-for = <primary>`` and is found by those tags before anything is created, so a re-run
creates nothing (moto's ClientToken is not idempotent — DESIGN §5 — so idempotency rests on the tags).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from shadowing.aws import tags as T
from shadowing.blueprint.builder import prestaged_name
from shadowing.blueprint.inventory import ClientFactory, list_launch_templates, paginate_all
from shadowing.blueprint.model import Blueprint

log = logging.getLogger(__name__)

SOURCE_AMI = "shadowing:source-ami"  # on an AMI copy: the primary AMI it was copied from


def prestage_tags(primary_region: str, **extra: str) -> dict[str, str]:
    return {T.ROLE: "prestaged", T.PRESTAGED_FOR: primary_region, **extra}


def _tag_spec(resource: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource, "Tags": T.to_aws(tags)}]


def _prestaged_filters(primary_region: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{T.ROLE}", "Values": ["prestaged"]},
            {"Name": f"tag:{T.PRESTAGED_FOR}", "Values": [primary_region]}]


def find_prestaged(clients: ClientFactory, shadow_region: str, primary_region: str,
                   primary_images: Mapping[str, Mapping[str, Any]] | list[str],
                   services: list[str] | None = None) -> dict[str, Any]:
    """The shadow's pre-staged state for ``primary_region``: ids by CIDR/service/name, AMI copies, replicas.
    ``services``: the services whose launch templates to look up by name (all pre-staged ones when None)."""
    ec2 = clients("ec2", shadow_region)
    filters = _prestaged_filters(primary_region)
    state: dict[str, Any] = {"vpc": None, "subnets": {}, "security_groups": {}, "launch_templates": {},
                             "ami_copies": {}, "ami_copies_pending": {}, "replicas": {}, "azs": [], "ingress": {},
                             "template_keys": {}}
    try:
        state["azs"] = sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]
                              if z.get("State", "available") == "available")
    except ClientError as exc:
        log.warning("describe_availability_zones in %s: %s", shadow_region, exc)
    vpcs = sorted(paginate_all(ec2, "describe_vpcs", "Vpcs", Filters=filters), key=lambda v: v["VpcId"])
    if vpcs:
        state["vpc"] = {"id": vpcs[0]["VpcId"], "cidr": vpcs[0]["CidrBlock"]}
        in_vpc = [{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}, *filters]
        for s in paginate_all(ec2, "describe_subnets", "Subnets", Filters=in_vpc):
            state["subnets"][s["CidrBlock"]] = {"id": s["SubnetId"], "az": s["AvailabilityZone"]}
        for g in paginate_all(ec2, "describe_security_groups", "SecurityGroups", Filters=in_vpc):
            service = T.from_aws(g.get("Tags")).get(T.SERVICE)
            if service:
                state["security_groups"][service] = g["GroupId"]
                state["ingress"][g["GroupId"]] = sorted(_rules_of(g))
    names = [prestaged_name(primary_region, s) for s in services] if services is not None else None
    for lt in list_launch_templates(ec2, filters, names):
        state["launch_templates"][lt["LaunchTemplateName"]] = lt["LaunchTemplateId"]
    if state["launch_templates"]:
        # every template's default version in one call (no per-template round trip to stay in step)
        for version in paginate_all(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                                    page_size=200, Versions=["$Default"]):
            if version["LaunchTemplateName"] in state["launch_templates"]:
                state["template_keys"][version["LaunchTemplateName"]] = template_key(
                    version.get("LaunchTemplateData") or {})
    images = dict(primary_images) if isinstance(primary_images, Mapping) else {a: {} for a in primary_images}
    state["ami_copies"], state["ami_copies_pending"] = _ami_copies(ec2, primary_region, images)
    state["replicas"] = _replicas(clients, shadow_region, primary_region)
    return state


def _ami_copies(ec2: Any, primary_region: str, images: Mapping[str, Mapping[str, Any]],
                ) -> tuple[dict[str, str], dict[str, str]]:
    """(primary AMI → AMI usable in the shadow: the same id when the image is regional-agnostic (found in the
    shadow), else a tracked copy (``shadowing:source-ami`` tag), else an image with the same name;
    primary AMI → tracked copy still ``pending``). A copy takes minutes on AWS: a pending one is not usable yet,
    but must not be copied again (every refresh meanwhile started another copy of every image)."""
    copies: dict[str, str] = {}
    pending: dict[str, str] = {}
    for img in paginate_all(ec2, "describe_images", "Images", Owners=["self"], Filters=_prestaged_filters(primary_region)):
        source = T.from_aws(img.get("Tags")).get(SOURCE_AMI)
        if source and img.get("State", "available") == "available":
            copies.setdefault(source, img["ImageId"])
        elif source and img.get("State") == "pending":
            pending.setdefault(source, img["ImageId"])
    missing = [a for a in images if a not in copies]
    for start in range(0, len(missing), 100):  # an image-id filter, unlike ImageIds, ignores unknown ids
        for img in ec2.describe_images(Filters=[{"Name": "image-id", "Values": missing[start:start + 100]}]).get(
                "Images", []):
            if img.get("State", "available") == "available":
                copies[img["ImageId"]] = img["ImageId"]
    names = {meta.get("name"): ami for ami, meta in images.items() if ami not in copies and meta.get("name")}
    if names:
        for img in ec2.describe_images(Filters=[{"Name": "name", "Values": sorted(names)}]).get("Images", []):
            source = names.get(img.get("Name"))
            if source and img.get("State", "available") == "available":
                copies.setdefault(source, img["ImageId"])
    return dict(sorted(copies.items())), {a: i for a, i in sorted(pending.items()) if a not in copies}


def _replicas(clients: ClientFactory, shadow_region: str, primary_region: str) -> dict[str, dict[str, Any]]:
    try:
        dbs = clients("rds", shadow_region).describe_db_instances()["DBInstances"]
    except ClientError as exc:
        log.warning("describe_db_instances in %s: %s", shadow_region, exc)
        return {}
    found = {}
    for db in dbs:
        tags = T.from_aws(db.get("TagList"))
        if tags.get(T.ROLE) == "prestaged" and tags.get(T.PRESTAGED_FOR) == primary_region:
            found[db["DBInstanceIdentifier"]] = {"arn": db["DBInstanceArn"],
                                                 "endpoint": (db.get("Endpoint") or {}).get("Address"),
                                                 "status": db.get("DBInstanceStatus"),
                                                 "source": db.get("ReadReplicaSourceDBInstanceIdentifier")}
    return found


@dataclass
class PrestageReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # could not be pre-staged yet (named reason)

    def to_dict(self) -> dict[str, Any]:
        return {"created": sorted(self.created), "updated": sorted(self.updated), "skipped": sorted(self.skipped)}


def prestage(clients: ClientFactory, blueprint: Blueprint, primary_images: Mapping[str, Mapping[str, Any]],
             *, with_replicas: bool = True, state: Mapping[str, Any] | None = None) -> PrestageReport:
    """Create what is missing in the shadow and bring drifted pieces back in step. Idempotent.
    ``state``: the shadow's pre-staged state when the caller has just read it (else it is read here)."""
    primary, shadow = blueprint.primary_region, blueprint.shadow_region
    ec2 = clients("ec2", shadow)
    report = PrestageReport()
    if state is None:
        state = find_prestaged(clients, shadow, primary, primary_images, sorted(blueprint.services))
    base_tags = prestage_tags(primary)

    # VPC
    if state["vpc"] is None:
        vpc_id = ec2.create_vpc(CidrBlock=blueprint.networking.vpc.cidr, TagSpecifications=_tag_spec(
            "vpc", {**base_tags, "Name": f"shadow-{primary}"}))["Vpc"]["VpcId"]
        report.created.append(f"vpc {vpc_id}")
    else:
        vpc_id = state["vpc"]["id"]

    # Subnets (by CIDR; AZ as the blueprint mapped it, else any available one)
    azs = state["azs"]
    for i, spec in enumerate(sorted(blueprint.networking.subnets, key=lambda s: s.cidr)):
        if spec.cidr in state["subnets"]:
            continue
        az = spec.az if not azs or spec.az in azs else azs[i % len(azs)]
        try:
            subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=spec.cidr, AvailabilityZone=az,
                                       TagSpecifications=_tag_spec("subnet", {**base_tags, "Name": f"shadow-{az}"}))
            report.created.append(f"subnet {subnet['Subnet']['SubnetId']} {spec.cidr}")
        except ClientError as exc:
            report.skipped.append(f"subnet {spec.cidr}: {exc.response['Error'].get('Message', exc)}")

    # Security groups: create all first (rules reference each other), then sync rules.
    group_ids = dict(state["security_groups"])
    for service in sorted(blueprint.networking.security_groups):
        if service in group_ids:
            continue
        gid = ec2.create_security_group(
            GroupName=prestaged_name(primary, service), Description=f"shadow of {service} ({primary})",
            VpcId=vpc_id, TagSpecifications=_tag_spec("security-group", {**base_tags, T.SERVICE: service}))["GroupId"]
        group_ids[service] = gid
        report.created.append(f"security-group {gid} {service}")
    vpc_cidr = blueprint.networking.vpc.cidr

    def sync(item: tuple[str, Any]) -> None:
        service, spec = item
        current = {tuple(r) for r in state["ingress"].get(group_ids[service], [])}
        _sync_ingress(ec2, group_ids[service], service, spec.ingress, group_ids, vpc_cidr, current, report)

    _in_parallel(sync, sorted(blueprint.networking.security_groups.items()))

    # AMI copies
    copies = dict(state["ami_copies"])

    def copy(ami: str) -> None:
        name = (primary_images.get(ami) or {}).get("name") or ami
        try:
            new_id = ec2.copy_image(SourceImageId=ami, SourceRegion=primary, Name=f"{name}-shadow-{shadow}"[:128],
                                    Description=f"shadow copy of {ami} from {primary}")["ImageId"]
            ec2.create_tags(Resources=[new_id], Tags=T.to_aws({**base_tags, SOURCE_AMI: ami}))
            copies[ami] = new_id
            report.created.append(f"ami {new_id} from {ami}")
        except ClientError as exc:
            report.skipped.append(f"ami {ami}: {exc.response['Error'].get('Message', exc)}")

    in_progress = state.get("ami_copies_pending") or {}
    for ami in sorted({s.ami.primary for s in blueprint.services.values()
                       if s.ami and s.ami.primary in in_progress and s.ami.primary not in copies}):
        report.skipped.append(f"ami {ami}: its copy {in_progress[ami]} in {shadow} is still pending")
    _in_parallel(copy, sorted({s.ami.primary for s in blueprint.services.values()
                               if s.ami and s.ami.primary != "unknown" and s.ami.primary not in copies
                               and s.ami.primary not in in_progress}))

    # Launch templates (a new version when the wanted data drifted)
    def template(item: tuple[str, Any]) -> None:
        name, svc = item
        image = copies.get(svc.ami.primary)
        if image is None:
            report.skipped.append(f"launch-template {svc.launch_template.name}: no AMI in {shadow}")
            return
        data = _template_data(svc, image, group_ids.get(name))
        existing = state["launch_templates"].get(svc.launch_template.name)
        if existing is None:
            lt = ec2.create_launch_template(
                LaunchTemplateName=svc.launch_template.name, LaunchTemplateData=data,
                TagSpecifications=_tag_spec("launch-template", {**base_tags, T.SERVICE: name}))
            report.created.append(f"launch-template {lt['LaunchTemplate']['LaunchTemplateId']} {name}")
            return
        if state["template_keys"].get(svc.launch_template.name) != template_key(data):
            version = ec2.create_launch_template_version(LaunchTemplateId=existing, LaunchTemplateData=data)
            number = str(version["LaunchTemplateVersion"]["VersionNumber"])
            ec2.modify_launch_template(LaunchTemplateId=existing, DefaultVersion=number)
            report.updated.append(f"launch-template {existing} {name} v{number}")

    _in_parallel(template, [(n, s) for n, s in sorted(blueprint.services.items())
                            if s.kind == "compute" and s.launch_template is not None and s.ami is not None])

    # Cross-region read replicas (moto 5.2 supports creating them from the primary's ARN)
    if with_replicas:
        rds = clients("rds", shadow)
        for step in blueprint.replication:
            if step.kind != "rds" or step.target.identifier in state["replicas"]:
                continue
            try:
                rds.create_db_instance_read_replica(
                    DBInstanceIdentifier=step.target.identifier,
                    SourceDBInstanceIdentifier=step.source.arn or step.source.identifier,
                    SourceRegion=primary,
                    Tags=T.to_aws({**base_tags, **({T.SERVICE: step.service} if step.service else {})}))
                report.created.append(f"rds-replica {step.target.identifier}")
            except ClientError as exc:
                report.skipped.append(f"rds-replica {step.target.identifier}: "
                                      f"{exc.response['Error'].get('Message', exc)}")
    return report


def _in_parallel(work: Any, items: list[Any], workers: int = 8) -> None:
    """Independent create/sync calls overlap their round trips (boto3 clients are thread-safe); the first
    error is raised after all finished, so a re-run picks up exactly what is still missing."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(work, item) for item in items]
    for future in futures:
        future.result()


def _template_data(svc: Any, image: str, group_id: str | None) -> dict[str, Any]:
    env = "".join(f"export {k}={v}\n" for k, v in sorted(svc.env_overrides.items()))
    data: dict[str, Any] = {
        "ImageId": image, "InstanceType": svc.instance_type,
        "UserData": base64.b64encode(f"#!/bin/sh\n{env}".encode()).decode(),
        "TagSpecifications": [{"ResourceType": "instance", "Tags": T.to_aws(dict(sorted(svc.tags.items())))}],
    }
    if group_id:
        data["SecurityGroupIds"] = [group_id]
    return data


def _rules_of(group: Mapping[str, Any]) -> set[tuple[str, int, str]]:
    current: set[tuple[str, int, str]] = set()
    for perm in group.get("IpPermissions", []):
        port = perm.get("FromPort")
        for pair in perm.get("UserIdGroupPairs", []):
            current.add((perm.get("IpProtocol", "tcp"), port, pair["GroupId"]))
        for rng in perm.get("IpRanges", []):
            current.add((perm.get("IpProtocol", "tcp"), port, rng["CidrIp"]))
    return current


def template_key(data: Mapping[str, Any]) -> list[Any]:
    """What makes two launch-template datas the same for us (JSON-able, order-free)."""
    # only the instance tags count (moto 5.2 echoes the template's own tags into its data)
    tags = sorted({(t["Key"], t["Value"]) for spec in data.get("TagSpecifications") or []
                   if spec.get("ResourceType") == "instance" for t in spec.get("Tags") or []})
    return [data.get("ImageId"), data.get("InstanceType"), data.get("UserData"),
            sorted(data.get("SecurityGroupIds") or []), [list(t) for t in tags]]


def _sync_ingress(ec2: Any, group_id: str, service: str, rules: list[Any], group_ids: Mapping[str, str],
                  vpc_cidr: str, current: set[tuple[Any, ...]], report: PrestageReport) -> None:
    """Make the group's ingress exactly the blueprint's rules (least privilege: extras are revoked)."""
    wanted: set[tuple[str, int, str]] = set()  # (protocol, port, source group id | cidr)
    for rule in rules:
        source = group_ids.get(rule.from_service) if rule.from_service in group_ids else vpc_cidr
        wanted.add((rule.protocol, rule.port, source))
    add, remove = sorted(wanted - current), sorted(current - wanted)
    if add:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[_permission(*r) for r in add])
        report.updated.append(f"security-group {group_id} {service}: +{len(add)} rules")
    if remove:
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[_permission(*r) for r in remove])
        report.updated.append(f"security-group {group_id} {service}: -{len(remove)} rules")


def _permission(protocol: str, port: int, source: str) -> dict[str, Any]:
    perm: dict[str, Any] = {"IpProtocol": protocol, "FromPort": port, "ToPort": port}
    if source.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    else:
        perm["IpRanges"] = [{"CidrIp": source}]
    return perm
