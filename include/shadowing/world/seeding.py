"""Seeds the emulated PRIMARY region (moto or a real sandbox account) with the world's infrastructure.

Every step finds its resources by tags/names first and creates only what is missing, so a re-run neither
duplicates anything nor fails on a half-seeded world; it repairs it (moto's ClientToken is not idempotent, so
idempotency rests on tags). Progress that is expensive to redo (metric history, flow logs) is checkpointed in
the world state parameter.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from shadowing import PRIMARY_REGION, SHADOW_REGION
from shadowing.aws import tags as T
from shadowing.metrics.names import INSTANCE_DIMENSION, METRICS
from shadowing.world.app import App, Service, build_app
from shadowing.world.discovery import discovery_events
from shadowing.world.inventory import ACCOUNT_ID, LB_SERVICE, Endpoint, Inventory, az_names
from shadowing.world.metrics import instance_block
from shadowing.world.state import (
    ENDPOINT_KIND,
    ORDINAL,
    VALID_FROM,
    VALID_TO,
    WorldClients,
    WorldState,
    iso,
    load_state,
    parse_iso,
    save_state,
)
from shadowing.world.traffic import V5_LOG_FORMAT, flow_log_lines, generate_flow_records

log = logging.getLogger(__name__)

FLOW_LOG_GROUP = "/shadowing/vpc-flow-logs"
DISCOVERY_LOG_GROUP = "/shadowing/discovery"
DISCOVERY_STREAM = "consul-server"
HEALTH_NAMESPACE = "Shadowing/Health"
HEALTH_METRIC = "RegionHealthy"
VPC_CIDR = "10.0.0.0/16"
_LIVE = ("pending", "running", "stopping", "stopped")
SAMPLE_SECONDS = 60  # the instances' reporting resolution: every datum is a 1-minute value
METRIC_BATCH = 1000  # PutMetricData: at most 1000 datums per call
LOG_BATCH = 10000  # PutLogEvents: at most 10 000 events (and 1 MB) per call


def alarm_name(region: str = PRIMARY_REGION) -> str:
    return f"shadowing-region-health-{region}"


def world_id_for(app: App, seed: int) -> str:
    return f"{app.name}-s{seed}"


@dataclass
class SeedReport:
    world_id: str
    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    timings: dict[str, float] = field(default_factory=dict)
    metric_datums: int = 0
    flow_events: int = 0
    discovery_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"world_id": self.world_id, "created": dict(self.created), "timings_s": self.timings,
                "metric_datums": self.metric_datums, "flow_events": self.flow_events,
                "discovery_events": self.discovery_events}


def _tags(world: str, service: str, **extra: str) -> dict[str, str]:
    return {T.SERVICE: service, T.WORLD: world, T.ROLE: "primary", **extra}


def _spec(resource: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource, "Tags": T.to_aws(tags)}]


ORDINALS = "shadowing:ordinals"  # "0,3,6": ordinals of one run_instances call, indexed by AmiLaunchIndex


def instance_ordinal(inst: dict[str, Any]) -> int | None:
    """The instance's ordinal within its service: its own tag, or from its launch call's ordinal list."""
    tg = T.from_aws(inst.get("Tags"))
    if ORDINAL in tg:
        return int(tg[ORDINAL])
    if ORDINALS in tg:
        ords = [int(x) for x in tg[ORDINALS].split(",")]
        idx = int(inst.get("AmiLaunchIndex", 0))
        return ords[idx] if idx < len(ords) else None
    return None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Seeder:
    def __init__(self, clients: WorldClients, app: App, state: WorldState, report: SeedReport) -> None:
        self.c, self.app, self.state, self.report = clients, app, state, report
        self.world = state.world_id
        # what this run found or created, so the inventory needs no second full describe (1000 instances
        # cost moto ~50 s to describe again)
        self.known_instances: dict[tuple[str, int], dict[str, Any]] = {}
        self.known_enis: list[dict[str, Any]] = []
        self.subnet_az: dict[str, int] = {}

    # ---------------------------------------------------------------- network
    def vpc(self) -> str:
        found = self.c.ec2.describe_vpcs(Filters=[{"Name": f"tag:{T.WORLD}", "Values": [self.world]}])["Vpcs"]
        if found:
            return str(found[0]["VpcId"])
        vpc = self.c.ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=_spec(
            "vpc", _tags(self.world, "network", Name=f"{self.world}-vpc")))["Vpc"]["VpcId"]
        self.report.created["vpc"] += 1
        return str(vpc)

    def internet_gateway(self, vpc: str) -> None:
        igws = self.c.ec2.describe_internet_gateways(
            Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"]
        if igws:
            return
        igw = self.c.ec2.create_internet_gateway(TagSpecifications=_spec(
            "internet-gateway", _tags(self.world, "network")))["InternetGateway"]["InternetGatewayId"]
        self.c.ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        self.report.created["internet_gateway"] += 1

    def subnets(self, vpc: str) -> list[str]:
        have = {s["AvailabilityZone"]: s["SubnetId"] for s in self.c.ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]}
        out = []
        for az_i, az in enumerate(az_names(self.c.region)):
            if az not in have:
                have[az] = self.c.ec2.create_subnet(
                    VpcId=vpc, CidrBlock=f"10.0.{az_i * 16}.0/20", AvailabilityZone=az,
                    TagSpecifications=_spec("subnet", _tags(self.world, "network", Name=f"{self.world}-{az}")),
                )["Subnet"]["SubnetId"]
                self.report.created["subnet"] += 1
            out.append(str(have[az]))
            self.subnet_az[str(have[az])] = az_i
        return out

    def security_groups(self, vpc: str) -> dict[str, str]:
        existing = {g["GroupName"]: g for g in self.c.ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]}
        ids: dict[str, str] = {}
        for name in [LB_SERVICE, *self.app.names]:
            gname = f"{self.world}-{name}"
            if gname in existing:
                ids[name] = existing[gname]["GroupId"]
                continue
            ids[name] = self.c.ec2.create_security_group(
                GroupName=gname, Description=f"{name} ({self.world})", VpcId=vpc,
                TagSpecifications=_spec("security-group", _tags(self.world, name, Name=gname)))["GroupId"]
            existing[gname] = {"GroupId": ids[name], "IpPermissions": []}
            self.report.created["security_group"] += 1
        # wanted rules: callers' SGs on the callee's port (every true edge: traffic must be allowed),
        # the ALB to the edge services, the internet to the ALB
        wanted: dict[str, set[tuple[int, str]]] = defaultdict(set)
        for e in self.app.edges:
            wanted[e.callee].add((self.app.service(e.callee).port, ids[e.caller]))
        for s in self.app.edge_services():
            wanted[s.name].add((s.port, ids[LB_SERVICE]))
        for name, rules in wanted.items():
            have = {(p.get("FromPort"), pair["GroupId"]) for p in existing[f"{self.world}-{name}"]["IpPermissions"]
                    for pair in p.get("UserIdGroupPairs", [])}
            missing = sorted(r for r in rules if r not in have)
            if missing:
                self.c.ec2.authorize_security_group_ingress(GroupId=ids[name], IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": g}]}
                    for port, g in missing])
                self.report.created["sg_rule"] += len(missing)
        alb_rules = existing[f"{self.world}-{LB_SERVICE}"]["IpPermissions"]
        if not any(p.get("FromPort") == 80 for p in alb_rules):
            self.c.ec2.authorize_security_group_ingress(GroupId=ids[LB_SERVICE], IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
            self.report.created["sg_rule"] += 1
        return ids

    # ---------------------------------------------------------------- compute
    def images(self) -> dict[str, str]:
        have = {T.from_aws(i.get("Tags")).get(T.SERVICE): i["ImageId"] for i in self.c.ec2.describe_images(
            Owners=["self"], Filters=[{"Name": f"tag:{T.WORLD}", "Values": [self.world]}])["Images"]}
        out: dict[str, str] = {}
        for s in self.app.compute_services():
            if s.name not in have:
                img = self.c.ec2.register_image(
                    Name=f"{self.world}-{s.name}-v1", Description=f"{s.name} service image",
                    Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm",
                    BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20}}])["ImageId"]
                self.c.ec2.create_tags(Resources=[img], Tags=T.to_aws(_tags(self.world, s.name)))
                have[s.name] = img
                self.report.created["image"] += 1
            out[s.name] = str(have[s.name])
        return out

    def launch_templates(self, images: dict[str, str], sgs: dict[str, str]) -> dict[str, str]:
        have: dict[str, str] = {}
        paginator = self.c.ec2.get_paginator("describe_launch_templates")
        for page in paginator.paginate(Filters=[{"Name": f"tag:{T.WORLD}", "Values": [self.world]}]):
            for lt in page["LaunchTemplates"]:
                have[lt["LaunchTemplateName"]] = lt["LaunchTemplateId"]
        out = {}
        for s in self.app.compute_services():
            name = f"{self.world}-{s.name}"
            if name not in have:
                have[name] = self.c.ec2.create_launch_template(
                    LaunchTemplateName=name,
                    LaunchTemplateData={
                        "ImageId": images[s.name], "InstanceType": s.instance_type,
                        "SecurityGroupIds": [sgs[s.name]],
                        "TagSpecifications": _spec("instance", _tags(self.world, s.name)),
                    },
                    TagSpecifications=_spec("launch-template", _tags(self.world, s.name)),
                )["LaunchTemplate"]["LaunchTemplateId"]
                self.report.created["launch_template"] += 1
            out[s.name] = str(have[name])
        return out

    def world_instances(self, states: Iterable[str] = _LIVE, services: list[str] | None = None) -> list[dict[str, Any]]:
        out = []
        filters = [{"Name": f"tag:{T.WORLD}", "Values": [self.world]},
                   {"Name": "instance-state-name", "Values": list(states)}]
        if services is not None:
            filters.append({"Name": f"tag:{T.SERVICE}", "Values": services})
        paginator = self.c.ec2.get_paginator("describe_instances")
        for page in paginator.paginate(Filters=filters):
            for res in page["Reservations"]:
                out.extend(res["Instances"])
        return out

    def _victim_and_reuser(self) -> tuple[Service | None, Service | None]:
        multi = [s for s in self.app.compute_services() if s.instances >= 2]
        if not multi or len(self.app.compute_services()) < 2:
            return None, None
        victim = multi[min(len(multi) - 1, 6)]
        others = [s for s in self.app.compute_services() if s.name != victim.name]
        return victim, others[len(victim.name) % len(others)]

    def instances(self, templates: dict[str, str], subnets: list[str], sgs: dict[str, str]) -> None:
        """Original instances (ordinals 0..n-1, valid since history start) + the replacement/IP-reuse trap."""
        hist = self.state.history_start
        replaced_at = parse_iso(self.state.replaced_at)
        victim, reuser = self._victim_and_reuser()
        everything = self.world_instances(_LIVE + ("shutting-down", "terminated"))
        by_key: dict[tuple[str, int], dict[str, Any]] = {}
        untagged: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for inst in everything:
            tg = T.from_aws(inst.get("Tags"))
            svc = tg.get(T.SERVICE)
            if svc is None:
                continue
            ordinal = instance_ordinal(inst)
            if ordinal is not None:
                by_key[(svc, ordinal)] = inst
            elif inst["State"]["Name"] in _LIVE:
                untagged[svc].append(inst)  # launched by a run that died before tagging: adopt it
        to_tag: list[tuple[str, dict[str, str]]] = []
        launches: list[tuple[str, int, list[int]]] = []
        for s in self.app.compute_services():
            missing = [o for o in range(s.instances) if (s.name, o) not in by_key]
            for inst in untagged.get(s.name, []):
                if missing:
                    o = missing.pop(0)
                    by_key[(s.name, o)] = inst
                    to_tag.append((inst["InstanceId"], self._instance_tags(s.name, o, hist, inst)))
            if victim is not None and s.name == victim.name:
                missing = [o for o in missing if o != s.instances - 1]  # the victim is launched on its own ENI
            per_subnet: dict[int, list[int]] = defaultdict(list)
            for o in missing:
                per_subnet[o % 3].append(o)
            launches += [(s.name, az, ords) for az, ords in per_subnet.items()]

        def launch(job: tuple[str, int, list[int]]) -> list[tuple[tuple[str, int], dict[str, Any]]]:
            # one call per service and AZ; the ordinals ride on the launch tags (no per-instance call)
            name, az, ords = job
            launch_tags = _tags(self.world, name, **{ORDINALS: ",".join(map(str, ords)), VALID_FROM: hist,
                                                     ENDPOINT_KIND: "instance"})
            resp = self.c.ec2.run_instances(
                MinCount=len(ords), MaxCount=len(ords), SubnetId=subnets[az],
                LaunchTemplate={"LaunchTemplateId": templates[name]},
                TagSpecifications=_spec("instance", launch_tags))
            out = []
            for inst in resp["Instances"]:
                inst.setdefault("Tags", T.to_aws(launch_tags))
                out.append(((name, ords[int(inst.get("AmiLaunchIndex", 0))]), inst))
            return out
        # sequential on purpose: moto's EC2 is not thread-safe for RunInstances (concurrent launches draw the
        # same private address and the server answers 500)
        for launched in map(launch, launches):
            self.report.created["instance"] += len(launched)
            by_key.update(launched)
        self._tag_many(to_tag)
        for inst_id, tags in to_tag:  # adopted instances: their new tags, locally too
            for inst in by_key.values():
                if inst["InstanceId"] == inst_id:
                    inst["Tags"] = T.to_aws({**T.from_aws(inst.get("Tags")), **tags})
        self.known_instances = by_key
        if victim is None or reuser is None:
            return
        v_key = (victim.name, victim.instances - 1)
        v_inst = by_key.get(v_key)
        if v_inst is None:
            v_inst = self._launch_on_eni(victim, v_key[1], subnets[v_key[1] % 3], sgs, templates, None, hist,
                                         iso(replaced_at))
            by_key[v_key] = v_inst
        if v_inst["State"]["Name"] not in ("terminated", "shutting-down"):
            self.c.ec2.terminate_instances(InstanceIds=[v_inst["InstanceId"]])
        v_tags = T.from_aws(v_inst.get("Tags"))
        v_ip = v_tags.get("shadowing:private-ip") or v_inst.get("PrivateIpAddress")
        repl_key = (victim.name, victim.instances)
        if repl_key not in by_key:
            by_key[repl_key] = self._launch_on_eni(victim, repl_key[1], subnets[repl_key[1] % 3], sgs, templates,
                                                   None, iso(replaced_at + timedelta(minutes=2)), None)
        reuse_key = (reuser.name, reuser.instances)
        if reuse_key not in by_key:
            # free the victim's ENI so its address can be handed to an instance of another service
            enis = self.c.ec2.describe_network_interfaces(Filters=[
                {"Name": "addresses.private-ip-address", "Values": [v_ip]},
                {"Name": "vpc-id", "Values": [self.state.vpc_id]}])["NetworkInterfaces"]
            for eni in enis:
                if eni.get("Attachment", {}).get("Status") in ("attached", "attaching"):
                    continue
                self.c.ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
            by_key[reuse_key] = self._launch_on_eni(reuser, reuse_key[1], subnets[v_key[1] % 3], sgs, templates,
                                                    v_ip, iso(replaced_at + timedelta(minutes=5)), None)

    def _instance_tags(self, service: str, ordinal: int, valid_from: str, inst: dict[str, Any],
                       valid_to: str | None = None) -> dict[str, str]:
        t = {ORDINAL: str(ordinal), VALID_FROM: valid_from, "Name": f"{service}-{ordinal}",
             "shadowing:private-ip": inst.get("PrivateIpAddress", ""), ENDPOINT_KIND: "instance"}
        nics = inst.get("NetworkInterfaces") or []
        if nics:
            t["shadowing:eni"] = nics[0]["NetworkInterfaceId"]
        if valid_to:
            t[VALID_TO] = valid_to
        return t

    def _tag_many(self, items: list[tuple[str, dict[str, str]]]) -> None:
        # per-instance tags differ (ordinal, ip), so one call each; threads overlap the round trips
        def one(item: tuple[str, dict[str, str]]) -> None:
            self.c.ec2.create_tags(Resources=[item[0]], Tags=T.to_aws(item[1]))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, items))

    def _launch_on_eni(self, s: Service, ordinal: int, subnet: str, sgs: dict[str, str], templates: dict[str, str],
                       ip: str | None, valid_from: str, valid_to: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"SubnetId": subnet, "Groups": [sgs[s.name]], "Description": f"{s.name}-{ordinal}",
                              "TagSpecifications": _spec("network-interface", _tags(self.world, s.name))}
        if ip:
            kw["PrivateIpAddress"] = ip
        eni = self.c.ec2.create_network_interface(**kw)["NetworkInterface"]
        inst = self.c.ec2.run_instances(
            MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateId": templates[s.name]},
            NetworkInterfaces=[{"NetworkInterfaceId": eni["NetworkInterfaceId"], "DeviceIndex": 0}],
            TagSpecifications=_spec("instance", _tags(self.world, s.name)))["Instances"][0]
        self.report.created["instance"] += 1
        tags = self._instance_tags(s.name, ordinal, valid_from, inst, valid_to)
        tags["shadowing:private-ip"] = eni["PrivateIpAddress"]
        tags["shadowing:eni"] = eni["NetworkInterfaceId"]
        self.c.ec2.create_tags(Resources=[inst["InstanceId"]], Tags=T.to_aws(tags))
        inst["Tags"] = T.to_aws({**_tags(self.world, s.name), **tags})
        return dict(inst)

    def service_enis(self, subnets: list[str], sgs: dict[str, str], db_ids: dict[str, str]) -> None:
        """Requester-managed-style ENIs: one per AZ for the ALB, one per managed database (no instance-id)."""
        found = self.c.ec2.describe_network_interfaces(Filters=[
            {"Name": f"tag:{ENDPOINT_KIND}", "Values": ["alb", "rds"]},
            {"Name": f"tag:{T.WORLD}", "Values": [self.world]}])["NetworkInterfaces"]
        have = {(T.from_aws(e.get("TagSet")).get(T.SERVICE), T.from_aws(e.get("TagSet")).get(ORDINAL)) for e in found}
        self.known_enis = list(found)
        wanted = [(LB_SERVICE, az, "alb", f"ELB app/{self.world}-alb") for az in range(3)]
        wanted += [(s.name, 0, "rds", f"RDSNetworkInterface {db_ids.get(s.name, '')}")
                   for s in self.app.services if s.managed]
        for svc, ordinal, kind, desc in wanted:
            if (svc, str(ordinal)) in have:
                continue
            tags = _tags(self.world, svc, **{ORDINAL: str(ordinal), ENDPOINT_KIND: kind,
                                             VALID_FROM: self.state.history_start})
            eni = self.c.ec2.create_network_interface(
                SubnetId=subnets[ordinal % 3], Groups=[sgs[svc]], Description=desc,
                TagSpecifications=_spec("network-interface", tags))["NetworkInterface"]
            eni["TagSet"] = T.to_aws(tags)
            self.known_enis.append(eni)
            self.report.created["eni"] += 1

    # ---------------------------------------------------------------- edge, DNS, health, data
    def load_balancer(self, subnets: list[str], sgs: dict[str, str], vpc: str) -> dict[str, Any]:
        name = f"{self.world}-alb"[:32]
        try:
            lb = self.c.elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]
        except ClientError as exc:
            if _code(exc) not in ("LoadBalancerNotFound", "LoadBalancerNotFoundException"):
                raise
            lb = self.c.elbv2.create_load_balancer(
                Name=name, Subnets=subnets, SecurityGroups=[sgs[LB_SERVICE]], Scheme="internet-facing",
                Type="application", Tags=T.to_aws(_tags(self.world, LB_SERVICE)))["LoadBalancers"][0]
            self.report.created["load_balancer"] += 1
        arn = lb["LoadBalancerArn"]
        existing_tgs = {t["TargetGroupName"]: t for t in self.c.elbv2.describe_target_groups().get("TargetGroups", [])}
        edge = {s.name for s in self.app.edge_services()}
        # from what this run found or launched: moto filters DescribeInstances by tag in O(instances × tags)
        # (343 s for 1 000 instances under load); the terminated victim carries a valid-to tag; stopped ones
        # (a failed primary) cannot be registered
        running = [i for i in self.known_instances.values() if T.from_aws(i.get("Tags")).get(T.SERVICE) in edge
                   and VALID_TO not in T.from_aws(i.get("Tags"))
                   and i.get("State", {}).get("Name") in ("pending", "running")]
        tg_arns = []
        for s in self.app.edge_services():
            tname = f"{self.world[:18]}-{s.name[:12]}"[:32].rstrip("-")
            tg = existing_tgs.get(tname)
            if tg is None:
                tg = self.c.elbv2.create_target_group(
                    Name=tname, Protocol="HTTP", Port=s.port, VpcId=vpc, TargetType="instance",
                    HealthCheckPath="/healthz", HealthCheckIntervalSeconds=10,
                    Tags=T.to_aws(_tags(self.world, s.name)))["TargetGroups"][0]
                self.report.created["target_group"] += 1
            targets = [{"Id": i["InstanceId"], "Port": s.port} for i in running
                       if T.from_aws(i.get("Tags")).get(T.SERVICE) == s.name]
            if targets:
                self.c.elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=targets)
            tg_arns.append(tg["TargetGroupArn"])
        listeners = self.c.elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]
        if not listeners and tg_arns:
            listener = self.c.elbv2.create_listener(
                LoadBalancerArn=arn, Protocol="HTTP", Port=80,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arns[0]}])["Listeners"][0]
            self.report.created["listener"] += 1
            if len(tg_arns) > 1:
                self.c.elbv2.create_rule(ListenerArn=listener["ListenerArn"], Priority=10,
                                         Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                                         Actions=[{"Type": "forward", "TargetGroupArn": tg_arns[1]}])
        return dict(lb)

    def dns(self, lb: dict[str, Any]) -> None:
        zone_name = f"{self.app.name}.{self.app.domain}."
        zones = [z for z in self.c.route53.list_hosted_zones_by_name(DNSName=zone_name)["HostedZones"]
                 if z["Name"] == zone_name]
        if zones:
            zone_id = zones[0]["Id"].split("/")[-1]
        else:
            zone_id = self.c.route53.create_hosted_zone(
                Name=zone_name, CallerReference=f"{self.world}-zone",
                HostedZoneConfig={"Comment": f"shadowing world {self.world}", "PrivateZone": False},
            )["HostedZone"]["Id"].split("/")[-1]
            self.c.route53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id,
                                                    AddTags=T.to_aws(_tags(self.world, "dns")))
            self.report.created["hosted_zone"] += 1
        checks = [h for h in self.c.route53.list_health_checks()["HealthChecks"]
                  if h.get("CallerReference") == f"{self.world}-primary"]
        if checks:
            check_id = checks[0]["Id"]
        else:
            check_id = self.c.route53.create_health_check(
                CallerReference=f"{self.world}-primary",
                HealthCheckConfig={"Type": "HTTP", "FullyQualifiedDomainName": lb["DNSName"], "Port": 80,
                                   "ResourcePath": "/healthz", "RequestInterval": 10, "FailureThreshold": 3},
            )["HealthCheck"]["Id"]
            self.report.created["health_check"] += 1
        record = f"www.{zone_name}"
        self.c.route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {
                "Name": record, "Type": "A", "SetIdentifier": f"{PRIMARY_REGION}-primary", "Failover": "PRIMARY",
                "HealthCheckId": check_id,
                "AliasTarget": {"HostedZoneId": lb["CanonicalHostedZoneId"], "DNSName": lb["DNSName"],
                                "EvaluateTargetHealth": True}}},
            {"Action": "UPSERT", "ResourceRecordSet": {
                # placeholder until the shadow exists: TEST-NET address, replaced by the failover DAG
                "Name": record, "Type": "A", "SetIdentifier": f"{SHADOW_REGION}-shadow", "Failover": "SECONDARY",
                "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.10"}]}},
        ]})

    def alarm(self) -> None:
        name = alarm_name(self.c.region)
        if self.c.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
            return  # never re-put: that would reset a state driven by `chaos`
        self.c.cloudwatch.put_metric_alarm(
            AlarmName=name, AlarmDescription=f"primary region {self.c.region} health (shadowing world)",
            Namespace=HEALTH_NAMESPACE, MetricName=HEALTH_METRIC,
            Dimensions=[{"Name": "Region", "Value": self.c.region}], Statistic="Minimum", Period=60,
            EvaluationPeriods=3, DatapointsToAlarm=3, Threshold=1.0, ComparisonOperator="LessThanThreshold",
            TreatMissingData="breaching", Tags=T.to_aws(_tags(self.world, "health")))
        self.c.cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="world seeded")
        self.report.created["alarm"] += 1

    def databases(self, subnets: list[str], sgs: dict[str, str]) -> dict[str, str]:
        out = {}
        group = f"{self.world}-db-subnets"
        try:
            self.c.rds.describe_db_subnet_groups(DBSubnetGroupName=group)
        except ClientError as exc:
            if _code(exc) != "DBSubnetGroupNotFoundFault":
                raise
            self.c.rds.create_db_subnet_group(DBSubnetGroupName=group, DBSubnetGroupDescription=self.world,
                                              SubnetIds=subnets, Tags=T.to_aws(_tags(self.world, "network")))
        for s in self.app.services:
            if not s.managed:
                continue
            ident = f"{self.world}-{s.name}"
            out[s.name] = ident
            try:
                self.c.rds.describe_db_instances(DBInstanceIdentifier=ident)
                continue
            except ClientError as exc:
                if _code(exc) != "DBInstanceNotFound":
                    raise
            self.c.rds.create_db_instance(
                DBInstanceIdentifier=ident, Engine="postgres", EngineVersion="16.3", DBInstanceClass=s.instance_type,
                AllocatedStorage=100, MasterUsername="shopfront", MasterUserPassword="not-a-secret-emulated-db",
                DBName=self.app.name.replace("-", "_"), DBSubnetGroupName=group, VpcSecurityGroupIds=[sgs[s.name]],
                MultiAZ=True, BackupRetentionPeriod=7, Port=s.port, Tags=T.to_aws(_tags(self.world, s.name)))
            self.report.created["db_instance"] += 1
        return out

    def buckets(self) -> None:
        have = {b["Name"] for b in self.c.s3.list_buckets().get("Buckets", [])}
        for purpose in ("static-assets", "uploads"):
            name = f"{self.world}-{purpose}".lower()
            if name in have:
                continue
            # outside us-east-1, S3 wants the bucket's region named (a world seeded in any primary region)
            where = ({} if self.c.region == "us-east-1"
                     else {"CreateBucketConfiguration": {"LocationConstraint": self.c.region}})
            self.c.s3.create_bucket(Bucket=name, **where)
            self.c.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": T.to_aws(
                _tags(self.world, "web" if purpose == "static-assets" else "api-gateway"))})
            self.report.created["bucket"] += 1

    def log_groups(self, vpc: str) -> None:
        have = {g["logGroupName"] for g in self.c.logs.describe_log_groups(
            logGroupNamePrefix="/shadowing/")["logGroups"]}
        for group in (FLOW_LOG_GROUP, DISCOVERY_LOG_GROUP):
            if group not in have:
                self.c.logs.create_log_group(logGroupName=group, tags=_tags(self.world, "observability"))
                self.report.created["log_group"] += 1
        flows = self.c.ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc]}])["FlowLogs"]
        if not flows:
            self.c.ec2.create_flow_logs(
                ResourceIds=[vpc], ResourceType="VPC", TrafficType="ALL", LogDestinationType="cloud-watch-logs",
                LogGroupName=FLOW_LOG_GROUP, LogFormat=V5_LOG_FORMAT, MaxAggregationInterval=60,
                DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT_ID}:role/shadowing-flow-logs",
                TagSpecifications=_spec("vpc-flow-log", _tags(self.world, "observability")))
            self.report.created["flow_log"] += 1


# -------------------------------------------------------------------- inventory from AWS
def inventory_from_aws(clients: WorldClients, state: WorldState, app: App) -> Inventory:
    """Time-ranged endpoints of the seeded world, from instance/ENI tags (terminated instances included)."""
    azs = az_names(clients.region)
    subnet_az = {s["SubnetId"]: azs.index(s["AvailabilityZone"]) for s in clients.ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [state.vpc_id or ""]}])["Subnets"] if s["AvailabilityZone"] in azs}
    instances = [inst for page in clients.ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{T.WORLD}", "Values": [state.world_id]}]) for res in page["Reservations"]
        for inst in res["Instances"]]
    enis = clients.ec2.describe_network_interfaces(Filters=[
        {"Name": f"tag:{ENDPOINT_KIND}", "Values": ["alb", "rds"]},
        {"Name": f"tag:{T.WORLD}", "Values": [state.world_id]}])["NetworkInterfaces"]
    return inventory_from_records(instances, enis, subnet_az, state, app, clients.region)


def inventory_from_records(instances: Iterable[dict[str, Any]], enis: Iterable[dict[str, Any]],
                           subnet_az: dict[str, int], state: WorldState, app: App, region: str) -> Inventory:
    """The inventory from EC2 instance and service-ENI records (as DescribeInstances/RunInstances return them)."""
    order = {n: i for i, n in enumerate(app.names)}
    eps: list[tuple[tuple[int, int, int], Endpoint]] = []
    for inst in instances:
        tg = T.from_aws(inst.get("Tags"))
        ordinal = instance_ordinal(inst)
        if ordinal is None or tg.get(T.SERVICE) not in order:
            continue
        ip = tg.get("shadowing:private-ip") or inst.get("PrivateIpAddress")
        eni = tg.get("shadowing:eni") or (inst.get("NetworkInterfaces") or [{}])[0].get("NetworkInterfaceId")
        if not ip or not eni:
            continue
        subnet = inst.get("SubnetId", "")
        vt = tg.get(VALID_TO)
        eps.append(((1, order[tg[T.SERVICE]], ordinal), Endpoint(
            ip, tg[T.SERVICE], inst["InstanceId"], eni, subnet, subnet_az.get(subnet, 0),
            parse_iso(tg.get(VALID_FROM, state.history_start)), parse_iso(vt) if vt else None)))
    for eni in enis:
        tg = T.from_aws(eni.get("TagSet"))
        kind = tg[ENDPOINT_KIND]
        rank = (0, 0, int(tg.get(ORDINAL, 0))) if kind == "alb" else (1, order.get(tg[T.SERVICE], 0), 0)
        eps.append((rank, Endpoint(eni["PrivateIpAddress"], tg[T.SERVICE], "-", eni["NetworkInterfaceId"],
                                   eni["SubnetId"], subnet_az.get(eni["SubnetId"], 0),
                                   parse_iso(tg.get(VALID_FROM, state.history_start)), None, kind)))
    eps.sort(key=lambda x: (x[0], x[1].valid_from))
    return Inventory(tuple(e for _, e in eps), state.vpc_id or "", region)


# -------------------------------------------------------------------- metrics and logs
SIZING_METRICS = ("cpu_utilization", "memory_utilization", "network_in_bytes", "network_out_bytes")
SECONDARY_METRICS = tuple(m for m in METRICS if m not in SIZING_METRICS)


def metric_datums(app: App, inventory: Inventory, start: datetime, end: datetime, step: int, seed: int,
                  metrics: Iterable[str] = tuple(METRICS)) -> dict[str, list[dict[str, Any]]]:
    """PutMetricData datums per namespace for instance endpoints alive in [start, end), every ``step`` seconds.

    The world's instances report at 1-minute resolution (detailed monitoring), so every datum carries the
    1-minute value (byte counters: bytes per minute) whatever ``step``: a coarse history is the live series
    sampled, not a different unit — the Average of any period stays comparable across history and live data.
    """
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    ts = np.arange(t0 - t0 % step + (step if t0 % step else 0), t1, step, dtype=np.int64)
    names = list(metrics)
    specs = [METRICS[m] for m in names]
    order = {n: i for i, n in enumerate(app.names)}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not len(ts):
        return out
    ordinals = _ordinals(inventory)
    stamps = [datetime.fromtimestamp(int(t), UTC) for t in ts]
    for ep in inventory.endpoints:
        if ep.kind != "instance" or ep.service not in order:
            continue
        lo = ep.valid_from.timestamp()
        hi = ep.valid_to.timestamp() if ep.valid_to else float("inf")
        alive = (ts >= lo) & (ts < hi)
        if not alive.any():
            continue
        ordinal = ordinals[ep]
        block = instance_block(app, order[ep.service], np.array([ordinal]), ts, SAMPLE_SECONDS, seed,
                               names)[:, 0, :]
        dims = [{"Name": INSTANCE_DIMENSION, "Value": ep.instance_id}]
        for mi, spec in enumerate(specs):
            vals = block[mi]
            ns = out[spec.namespace]
            for k in np.nonzero(alive)[0].tolist():
                ns.append({"MetricName": spec.cloudwatch_name, "Dimensions": dims, "Timestamp": stamps[k],
                           "Value": round(float(vals[k]), 4), "Unit": spec.unit})
    return out


def _ordinals(inventory: Inventory) -> dict[Endpoint, int]:
    """Each instance endpoint's position among its service's instance endpoints (the generator's ordinal)."""
    seen: dict[str, int] = defaultdict(int)
    out = {}
    for e in inventory.endpoints:
        if e.kind == "instance":
            out[e] = seen[e.service]
            seen[e.service] += 1
    return out


def put_metric_datums(cloudwatch: Any, by_namespace: dict[str, list[dict[str, Any]]], workers: int = 2) -> int:
    calls = [(ns, data[i:i + METRIC_BATCH]) for ns, data in by_namespace.items()
             for i in range(0, len(data), METRIC_BATCH)]

    def one(call: tuple[str, list[dict[str, Any]]]) -> int:
        cloudwatch.put_metric_data(Namespace=call[0], MetricData=call[1])
        return len(call[1])
    # two threads overlap client-side serialisation with the server's work
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, calls))


def put_log_lines(logs: Any, group: str, stream: str, events: list[tuple[int, str]]) -> int:
    """Events (epoch ms, message) to one stream, creating it if missing; batches ≤ 10 000 events / ~1 MB."""
    if not events:
        return 0
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except ClientError as exc:
        if _code(exc) != "ResourceAlreadyExistsException":
            raise
    events.sort(key=lambda e: e[0])
    batch: list[dict[str, Any]] = []
    size = 0
    for ts, msg in events:
        if len(batch) >= LOG_BATCH or size + len(msg) + 26 > 1_000_000:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
            batch, size = [], 0
        batch.append({"timestamp": ts, "message": msg})
        size += len(msg) + 26
    if batch:
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
    return len(events)


def publish_window(clients: WorldClients, app: App, state: WorldState, inventory: Inventory, start: datetime,
                   end: datetime, *, metric_step: int | None = None) -> tuple[int, int, int]:
    """Metrics (if ``metric_step``), flow-log lines (one stream per ENI) and discovery lines for [start, end)."""
    n_metrics = 0
    if metric_step:
        n_metrics = put_metric_datums(clients.cloudwatch, metric_datums(app, inventory, start, end, metric_step,
                                                                        state.seed))
    records = generate_flow_records(app, inventory, start, end, state.seed)
    n_flows = 0
    if len(records):
        lines = flow_log_lines(records, 5)
        starts = (records["start"].to_numpy() * 1000).tolist()
        per_eni: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for eni, ts, line in zip(records["interface_id"].astype(str).tolist(), starts, lines, strict=True):
            per_eni[eni].append((int(ts), line))
        with ThreadPoolExecutor(2) as pool:
            n_flows = sum(pool.map(lambda kv: put_log_lines(clients.logs, FLOW_LOG_GROUP, kv[0], kv[1]),
                                   per_eni.items()))
    disc = discovery_events(app, inventory, start, end, state.seed)
    from shadowing.world.discovery import _stamp  # one formatting rule for files and CloudWatch
    n_disc = put_log_lines(clients.logs, DISCOVERY_LOG_GROUP, DISCOVERY_STREAM,
                           [(t * 1000, f"{_stamp(t)} {line}") for t, line in disc])
    return n_metrics, n_flows, n_disc


def put_region_health(clients: WorldClients, healthy: bool, at: datetime) -> None:
    clients.cloudwatch.put_metric_data(Namespace=HEALTH_NAMESPACE, MetricData=[{
        "MetricName": HEALTH_METRIC, "Dimensions": [{"Name": "Region", "Value": clients.region}],
        "Timestamp": at, "Value": 1.0 if healthy else 0.0, "Unit": "Count"}])


# -------------------------------------------------------------------- entry point
def seed_world(clients: WorldClients, *, services: int | None = None, instances_per_service: int | None = None,
               seed: int = 0, history_days: float | None = None, secondary_history_days: float | None = None,
               history_step: int | None = None, flow_minutes: int | None = None,
               now: datetime | None = None, progress: Callable[[str], None] | None = None) -> SeedReport:
    """Seed (or repair) the emulated primary region; returns what was created and how long each step took.

    Metric history: the sizing metrics (CPU, memory, network) get ``history_days`` (7 for the default world),
    the others ``secondary_history_days`` (1), at ``history_step`` seconds: by default 1 hour for histories
    longer than a day (CloudWatch's own resolution for older data), else 5 minutes. Why so coarse: moto
    stores ~5 000 datums/s under load and, worse, serves GetMetricData at ≈ queries × periods × datums in
    the window (plus ~0.3 ms per returned point), so a week at 5 minutes (240 000 datums) took 50 s to seed
    and could not be read back by a capacity bootstrap in any reasonable time; a week at 1 hour is
    21 500 datums. Live publishing adds 1-minute datapoints from then on. Worlds of more than 100 instances
    default to 2 h / 1 h of history and 5 minutes of logs (instead of 60) so that 200 × 5 seeds in about a
    minute — benchmarks needing volume use the synthetic generators.
    """
    app = build_app(services, seed, instances_per_service)
    n_instances = sum(s.instances for s in app.compute_services())
    big = n_instances > 100
    history_days = history_days if history_days is not None else (2 / 24 if big else 7.0)
    flow_minutes = flow_minutes if flow_minutes is not None else (5 if big else 60)
    secondary_history_days = (secondary_history_days if secondary_history_days is not None
                              else min(history_days, 1 / 24 if big else 1.0))
    if history_step is None:
        history_step = 3600 if history_days > 1 else 300
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    world = world_id_for(app, seed)
    state = load_state(clients.ssm)
    if state is not None and state.world_id != world:
        from shadowing.errors import ShadowingError
        raise ShadowingError(f"this endpoint already holds world {state.world_id!r}; reset the emulator to seed "
                             f"{world!r}")
    if state is None:
        history_start = now - timedelta(days=history_days)
        state = WorldState(world_id=world, app=app.name, seed=seed, services=services,
                           instances_per_service=instances_per_service, region=clients.region,
                           history_start=iso(history_start), history_step=history_step,
                           replaced_at=iso(now - timedelta(minutes=max(flow_minutes // 2, 1))), created_at=iso(now))
        save_state(clients.ssm, state)
    report = SeedReport(world)
    s = Seeder(clients, app, state, report)
    say = progress or (lambda msg: log.info(msg))

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        result = fn()
        report.timings[name] = round(time.perf_counter() - t, 3)
        say(f"{name}: {report.timings[name]} s")
        return result

    vpc = step("vpc", s.vpc)
    if state.vpc_id != vpc:
        state.vpc_id = vpc
        save_state(clients.ssm, state)
    step("internet_gateway", lambda: s.internet_gateway(vpc))
    subnets = step("subnets", lambda: s.subnets(vpc))
    sgs = step("security_groups", lambda: s.security_groups(vpc))
    images = step("images", s.images)
    templates = step("launch_templates", lambda: s.launch_templates(images, sgs))
    step("instances", lambda: s.instances(templates, subnets, sgs))
    db_ids = step("databases", lambda: s.databases(subnets, sgs))
    step("service_enis", lambda: s.service_enis(subnets, sgs, db_ids))
    lb = step("load_balancer", lambda: s.load_balancer(subnets, sgs, vpc))
    step("dns", lambda: s.dns(lb))
    step("alarm", s.alarm)
    step("buckets", s.buckets)
    step("log_groups", lambda: s.log_groups(vpc))
    inventory = step("inventory", lambda: inventory_from_records(s.known_instances.values(), s.known_enis,
                                                                 s.subnet_az, state, app, clients.region))

    # metric history, one day per checkpoint so a killed run resumes without duplicating datapoints
    t_hist = time.perf_counter()
    cursor = parse_iso(state.history_seeded_until or state.history_start)
    secondary_from = now - timedelta(days=secondary_history_days)
    while cursor < now:
        chunk_end = min(now, cursor + timedelta(days=1))
        batch = metric_datums(app, inventory, cursor, chunk_end, state.history_step, state.seed, SIZING_METRICS)
        if chunk_end > secondary_from:
            for ns, data in metric_datums(app, inventory, max(cursor, secondary_from), chunk_end,
                                          state.history_step, state.seed, SECONDARY_METRICS).items():
                batch[ns].extend(data)
        report.metric_datums += put_metric_datums(clients.cloudwatch, batch)
        cursor = chunk_end
        state.history_seeded_until = iso(cursor)
        save_state(clients.ssm, state)
    report.timings["metric_history"] = round(time.perf_counter() - t_hist, 3)
    say(f"metric_history: {report.metric_datums} datums in {report.timings['metric_history']} s")

    t_logs = time.perf_counter()
    flow_start = max(now - timedelta(minutes=flow_minutes),
                     parse_iso(state.live_published_until) if state.live_published_until else now - timedelta(days=1))
    if flow_start < now:
        # History ends on its coarse grid (the last whole hour) and live publishing starts at `now`: the minutes in
        # between are published at the live resolution, or a fold reading the hour so far would find nothing newer
        # than that last whole hour (a hole of up to an hour that a real region's metrics never have).
        last_sample = int(now.timestamp()) - 1
        last_sample -= last_sample % state.history_step
        tail_start = datetime.fromtimestamp(last_sample + 60, UTC)
        if state.live_published_until:  # a re-seed: what live publishing already covered is not sent twice
            tail_start = max(tail_start, parse_iso(state.live_published_until))
        if state.history_step > 60 and tail_start < now:
            report.metric_datums += put_metric_datums(clients.cloudwatch, metric_datums(
                app, inventory, tail_start, now, 60, state.seed))
        _, report.flow_events, report.discovery_events = publish_window(clients, app, state, inventory, flow_start,
                                                                        now)
        state.live_published_until = iso(now)
        save_state(clients.ssm, state)
    put_region_health(clients, not state.failed, now)
    report.timings["logs"] = round(time.perf_counter() - t_logs, 3)
    say(f"logs: {report.flow_events} flow events, {report.discovery_events} discovery events in "
        f"{report.timings['logs']} s")
    return report
