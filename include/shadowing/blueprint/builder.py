"""Building the blueprint from a fingerprint, a dependency graph, the live primary inventory and the shadow's
pre-staged state. Pure: every input is a plain dict, so it is tested on hand-made dicts.

Problems with the inputs never raise: they become named :class:`ReadinessCheck` failures (a service without
sizing, a graph node without capacity, an AMI not yet in the shadow…), and the blueprint is still built
from the best information available (observed counts, the last tier) so the failover always has a plan.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shadowing.aws import tags as T
from shadowing.blueprint.model import (
    AmiMapping,
    Blueprint,
    DnsRecord,
    IngressRule,
    LaunchTemplateRef,
    ListenerSpec,
    LoadBalancerSpec,
    Networking,
    Provenance,
    ReplicationSource,
    ReplicationStep,
    ReplicationTarget,
    SecurityGroupSpec,
    ServiceBlueprint,
    SubnetSpec,
    TargetGroupRef,
    TargetGroupSpec,
    Traffic,
    VpcSpec,
)
from shadowing.warehouse.operations import ReadinessCheck

# Graph nodes that are not ours to launch: telemetry sinks and external endpoints are recorded, not shadowed.
_NOT_LAUNCHED_KINDS = {"telemetry", "external"}
_SIZING_COUNT_KEYS = ("instances", "count", "recommended_instances", "recommended_count", "target_instances")


@dataclass(frozen=True)
class BuildInputs:
    primary_region: str
    shadow_region: str
    fingerprint: Mapping[str, Any] | None
    graph: Mapping[str, Any] | None
    inventory: Mapping[str, Any]
    shadow: Mapping[str, Any] = field(default_factory=dict)
    fingerprint_id: int | None = None
    graph_id: int | None = None
    run_id: str | None = None


@dataclass
class BuildResult:
    blueprint: Blueprint
    issues: list[ReadinessCheck]

    @property
    def payload(self) -> dict[str, Any]:
        return self.blueprint.to_dict()


def prestaged_name(primary_region: str, service: str) -> str:
    """Deterministic name of a pre-staged per-service resource (launch template, security group)."""
    return f"shadow-{primary_region}-{service}"


def shadow_az(primary_az: str, primary_region: str, shadow_region: str) -> str:
    """us-east-1a → us-west-2a: AZs map by their letter (position), the only stable correspondence."""
    return shadow_region + primary_az.removeprefix(primary_region)


def sized_count(sizing: Any) -> int | None:
    """Instance count a fingerprint's ``sizing`` recommends, or None when it says nothing usable."""
    if isinstance(sizing, bool):
        return None
    if isinstance(sizing, int | float):
        return max(0, int(round(sizing)))
    if isinstance(sizing, Mapping):
        for key in _SIZING_COUNT_KEYS:
            value = sizing.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return max(0, int(round(value)))
            if isinstance(value, Mapping):  # e.g. {"instances": {"recommended": 3}}
                nested = sized_count(value.get("recommended", value.get("count")))
                if nested is not None:
                    return nested
    return None


def _majority(values: Iterable[str | None]) -> str | None:
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _service_of(tags: Mapping[str, str] | None) -> str | None:
    return (tags or {}).get(T.SERVICE)


def _graph_parts(graph: Mapping[str, Any] | None) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]],
                                                            list[list[str]], list[list[str]]]:
    if not graph:
        return {}, [], [], []
    nodes = {str(n["id"]): dict(n) for n in graph.get("nodes", []) if isinstance(n, Mapping) and "id" in n}
    edge_key = "edges" if "edges" in graph else "links"
    edges = sorted({(str(e["source"]), str(e["target"])) for e in graph.get(edge_key, [])
                    if isinstance(e, Mapping) and "source" in e and "target" in e})
    meta = graph.get("graph") or {}
    tiers = [[str(n) for n in tier] for tier in meta.get("launch_tiers") or []]
    cycles = [sorted(str(n) for n in c) for c in meta.get("cycles") or [] if len(c) > 1]
    return nodes, edges, tiers, cycles


def _node_ports(node: Mapping[str, Any] | None) -> set[int]:
    ports: set[int] = set()
    for p in (node or {}).get("ports") or []:
        if isinstance(p, Mapping):
            value = p.get("target_port", p.get("port"))
        else:
            value = p
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
            ports.add(value)
    return ports


def build_blueprint(inputs: BuildInputs) -> BuildResult:
    """The blueprint for ``inputs`` and every problem found on the way (as failed readiness checks)."""
    primary, shadow = inputs.primary_region, inputs.shadow_region
    inv, sh = inputs.inventory, inputs.shadow
    issues: list[ReadinessCheck] = []

    def fail(check: str, subject: str, detail: str) -> None:
        issues.append(ReadinessCheck(check, subject, False, detail))

    nodes, edges, graph_tiers, cycles = _graph_parts(inputs.graph)
    fp_services: Mapping[str, Any] = (inputs.fingerprint or {}).get("services") or {}

    # ── services observed in the primary (EC2 instances and managed databases tagged with a service) ──
    instances_by_service: dict[str, list[Mapping[str, Any]]] = {}
    for inst in inv.get("instances", []):
        name = _service_of(inst.get("tags"))
        if name:
            instances_by_service.setdefault(name, []).append(inst)
    databases_by_service: dict[str, Mapping[str, Any]] = {}
    for db in inv.get("db_instances", []):
        name = _service_of(db.get("tags"))
        if name and name not in databases_by_service:
            databases_by_service[name] = db
    templates_by_service = {_service_of(t.get("tags")) or t["name"]: t for t in inv.get("launch_templates", [])}
    sgs_by_id = {g["id"]: g for g in inv.get("security_groups", [])}
    sg_by_service: dict[str, Mapping[str, Any]] = {}
    for g in inv.get("security_groups", []):
        name = _service_of(g.get("tags"))
        if name and name not in sg_by_service:
            sg_by_service[name] = g
    for name, insts in instances_by_service.items():  # untagged groups: the one the service's instances use
        if name not in sg_by_service:
            attached = _majority(gid for i in insts for gid in i.get("security_groups", []))
            if attached in sgs_by_id:
                sg_by_service[name] = sgs_by_id[attached]

    observed = set(instances_by_service) | set(databases_by_service)
    launchable_nodes = {n for n, node in nodes.items() if node.get("kind") not in _NOT_LAUNCHED_KINDS}
    # A service is shadowed when the primary runs it or the fingerprint sized it; the graph places it.
    names = sorted(observed | set(fp_services))

    for name in sorted(launchable_nodes - set(names)):
        fail("completeness", name, "in the dependency graph but neither running in the primary nor sized in the "
                                   "fingerprint: it has no capacity to shadow")
    if inputs.graph is not None:
        for name in names:
            if name not in nodes:
                fail("completeness", name, "has capacity but no node in the dependency graph: launched in the "
                                           "last tier, security group without ingress")
    for name in sorted(set(fp_services) - observed):
        fail("drift", name, "sized in the fingerprint but not running in the primary any more")

    # ── launch tiers: the graph's, restricted to shadowed services; unplaced services go last ──
    tiers: list[list[str]] = []
    placed: set[str] = set()
    for tier in graph_tiers:
        members = sorted(n for n in tier if n in names and n not in placed)
        if members:
            tiers.append(members)
            placed.update(members)
    unplaced = sorted(set(names) - placed)
    if unplaced:
        tiers.append(unplaced)
    tier_of = {n: i for i, tier in enumerate(tiers) for n in tier}
    group_of: dict[str, str] = {}
    for cycle in cycles:
        members = [m for m in cycle if m in tier_of]
        if len(members) > 1:
            for m in members:
                group_of[m] = f"cycle-{members[0]}"

    # ── networking: VPC, subnets mapped by AZ letter ──
    vpc_counts = Counter(i.get("subnet") and next((s["vpc_id"] for s in inv.get("subnets", [])
                                                  if s["id"] == i.get("subnet")), None)
                         for i in inv.get("instances", []))
    vpc_counts.pop(None, None)
    vpcs = {v["id"]: v for v in inv.get("vpcs", [])}
    vpc_id = sorted(vpc_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if vpc_counts else (
        next(iter(sorted(vpcs)), None))
    primary_vpc = vpcs.get(vpc_id) if vpc_id else None
    if primary_vpc is None:
        fail("inventory", "vpc", f"no VPC with service instances found in {primary}")
    shadow_vpc = sh.get("vpc") or {}
    vpc = VpcSpec(cidr=(primary_vpc or {}).get("cidr") or shadow_vpc.get("cidr") or "10.0.0.0/16",
                  id=shadow_vpc.get("id"))
    shadow_subnets: Mapping[str, Mapping[str, Any]] = sh.get("subnets") or {}  # by CIDR
    subnet_specs: list[SubnetSpec] = []
    shadow_subnet_of: dict[str, str] = {}  # primary subnet id → shadow subnet id or AZ name
    shadow_azs = list(sh.get("azs") or [])
    for s in inv.get("subnets", []):
        if s.get("vpc_id") != vpc_id:
            continue
        az = shadow_az(s["az"], primary, shadow)
        if shadow_azs and az not in shadow_azs:  # the shadow has fewer AZs: wrap around by letter
            az = shadow_azs[(ord(s["az"][-1]) - ord("a")) % len(shadow_azs)]
        existing = shadow_subnets.get(s["cidr"]) or {}
        subnet_specs.append(SubnetSpec(az=az, cidr=s["cidr"], id=existing.get("id"), primary_az=s["az"]))
        shadow_subnet_of[s["id"]] = existing.get("id") or az

    # ── ports and least-privilege ingress from dependency edges ──
    ports_of: dict[str, set[int]] = {}
    for name in names:
        ports = _node_ports(nodes.get(name))
        sg = sg_by_service.get(name)
        for rule in (sg or {}).get("ingress", []):
            if rule.get("from_port") is not None and rule.get("from_port") == rule.get("to_port"):
                ports.add(int(rule["from_port"]))
        db = databases_by_service.get(name)
        if db and db.get("port"):
            ports.add(int(db["port"]))
        ports_of[name] = ports
        if not ports:
            fail("ports_known", name, "no listening port known (graph node or primary security group): "
                                      "callers cannot be allowed in")
    shadow_sgs: Mapping[str, str] = sh.get("security_groups") or {}
    target_groups = [g for g in inv.get("target_groups", [])]
    tg_by_service: dict[str, Mapping[str, Any]] = {}
    for g in target_groups:
        name = _service_of(g.get("tags")) or (g["name"] if g["name"] in names else None)
        if name and name not in tg_by_service:
            tg_by_service[name] = g
    ingress: dict[str, list[IngressRule]] = {n: [] for n in names}
    for caller, callee in edges:
        if callee in ingress and caller in tier_of and caller != callee:
            for port in sorted(ports_of.get(callee, ())):
                ingress[callee].append(IngressRule(from_service=caller, port=port))
    for name, g in tg_by_service.items():
        if name in ingress and g.get("port"):
            ingress[name].append(IngressRule(from_service="load_balancer", port=int(g["port"])))
    security_groups = {n: SecurityGroupSpec(ingress=sorted(set(rules), key=lambda r: (r.from_service, r.port)),
                                            id=shadow_sgs.get(n), name=prestaged_name(primary, n))
                       for n, rules in ingress.items()}

    # ── load balancer mirrored from the primary ──
    load_balancer = None
    lbs = inv.get("load_balancers", [])
    tg_by_arn = {g["arn"]: g for g in target_groups}
    primary_lb = lbs[0] if lbs else None
    if primary_lb is not None:
        listeners, tg_specs = [], {}
        for li in primary_lb.get("listeners", []):
            for arn in li.get("target_groups", []):
                g = tg_by_arn.get(arn)
                if g is None:
                    continue
                listeners.append(ListenerSpec(port=int(li["port"]), protocol=li.get("protocol", "HTTP"),
                                              target_group=g["name"]))
        for svc, g in tg_by_service.items():
            if svc in tier_of:
                tg_specs[g["name"]] = TargetGroupSpec(name=g["name"], port=int(g.get("port") or 80),
                                                      protocol=g.get("protocol", "HTTP"),
                                                      health_check_path=g.get("health_check_path") or "/",
                                                      service=svc)
        listeners = [li for li in listeners if li.target_group in tg_specs]
        load_balancer = LoadBalancerSpec(name=primary_lb["name"], scheme=primary_lb.get("scheme", "internet-facing"),
                                         listeners=listeners, target_groups=list(tg_specs.values()))

    # ── replication plan per data store ──
    replication: list[ReplicationStep] = []
    replicas: Mapping[str, Mapping[str, Any]] = sh.get("replicas") or {}
    shadow_endpoint: dict[str, str] = {}
    aurora = {c["identifier"]: c for c in inv.get("db_clusters", [])}
    for db in inv.get("db_instances", []):
        if db.get("cluster") and db["cluster"] in aurora:
            continue
        target_id = f"{db['identifier']}-shadow"
        replica = replicas.get(target_id)
        replication.append(ReplicationStep(
            kind="rds", source=ReplicationSource(primary, db["identifier"], db.get("arn")),
            target=ReplicationTarget(shadow, target_id),
            action="promote_replica" if replica else "create_replica_then_promote",
            service=_service_of(db.get("tags"))))
        if db.get("endpoint"):
            shadow_endpoint[db["endpoint"]] = (replica or {}).get("endpoint") or db["endpoint"].replace(
                db["identifier"], target_id, 1).replace(primary, shadow)
    for cl in inv.get("db_clusters", []):
        replication.append(ReplicationStep(
            kind="aurora", source=ReplicationSource(primary, cl["identifier"], cl.get("arn")),
            target=ReplicationTarget(shadow, f"{cl['identifier']}-shadow"),
            action="create_replica_then_promote", service=_service_of(cl.get("tags"))))
    for bucket in inv.get("buckets", []):
        replication.append(ReplicationStep(
            kind="s3", source=ReplicationSource(primary, bucket["name"], f"arn:aws:s3:::{bucket['name']}"),
            target=ReplicationTarget(shadow, _shadow_bucket(bucket["name"], primary, shadow)),
            action="s3_replication", service=_service_of(bucket.get("tags"))))

    # ── per-service blueprint ──
    ami_copies: Mapping[str, str] = sh.get("ami_copies") or {}
    templates: Mapping[str, str] = sh.get("launch_templates") or {}
    lb_dns = [lb.get("dns_name") for lb in lbs if lb.get("dns_name")]
    services: dict[str, ServiceBlueprint] = {}
    for name in names:
        insts = instances_by_service.get(name, [])
        db = databases_by_service.get(name)
        sizing = (fp_services.get(name) or {}).get("sizing") if isinstance(fp_services.get(name), Mapping) else None
        count = sized_count(sizing)
        observed_count = len(insts) if insts else (1 if db else 0)
        if count is None:
            if not (db is not None and not insts):  # a managed database is sized by its instance class, not EC2 metrics
                fail("sizing", name, f"no usable sizing in the fingerprint: using the primary's observed count "
                                     f"({observed_count})")
            count = observed_count
        tags = {T.SERVICE: name, T.PRESTAGED_FOR: primary}
        if db is not None and not insts:
            services[name] = ServiceBlueprint(
                name=name, tier=tier_of[name], group=group_of.get(name), ami=None,
                instance_type=db.get("instance_class") or "db.t3.medium", count=max(1, count),
                subnets=sorted({s.az for s in subnet_specs}), security_groups=[security_groups[name].id
                                                                               or security_groups[name].name or name],
                ports=sorted(ports_of[name]), launch_template=None, env_overrides={}, target_group=None,
                tags=tags, kind="managed")
            continue
        template = templates_by_service.get(name) or {}
        primary_ami = _majority(i.get("ami") for i in insts) or template.get("image_id")
        instance_type = (sizing.get("instance_type") if isinstance(sizing, Mapping) else None) \
            or _majority(i.get("type") for i in insts) or template.get("instance_type")
        if not primary_ami:
            fail("ami_available", name, "no AMI known for the service in the primary")
        if not instance_type:
            fail("inventory", name, "no instance type known for the service")
        shadow_ami = ami_copies.get(primary_ami) if primary_ami else None
        if primary_ami and not shadow_ami:
            fail("ami_available", name, f"{primary_ami} has no copy in {shadow} yet")
        subnets = sorted({shadow_subnet_of[i["subnet"]] for i in insts if i.get("subnet") in shadow_subnet_of}) \
            or sorted({s.id or s.az for s in subnet_specs})
        lt_name = prestaged_name(primary, name)
        env = _env_overrides(template.get("env") or {}, primary, shadow, shadow_endpoint, lb_dns)
        tg = tg_by_service.get(name)
        services[name] = ServiceBlueprint(
            name=name, tier=tier_of[name], group=group_of.get(name),
            ami=AmiMapping(primary=primary_ami or "unknown", shadow=shadow_ami),
            instance_type=instance_type or "unknown", count=count, subnets=subnets,
            security_groups=[security_groups[name].id or security_groups[name].name or name],
            ports=sorted(ports_of[name]), launch_template=LaunchTemplateRef(name=lt_name, id=templates.get(lt_name)),
            env_overrides=env,
            target_group=None if tg is None or load_balancer is None else TargetGroupRef(
                name=tg["name"], port=int(tg.get("port") or 80), health_check_path=tg.get("health_check_path") or "/"),
            tags=tags)

    traffic = _traffic(inv, primary, shadow, lbs, sh)
    if traffic.hosted_zone_id is None:
        fail("traffic", "route53", f"no public hosted zone with records for {primary}'s load balancer")
    blueprint = Blueprint(
        primary_region=primary, shadow_region=shadow, services=services, launch_tiers=tiers,
        networking=Networking(vpc=vpc, subnets=subnet_specs, security_groups=security_groups,
                              load_balancer=load_balancer),
        traffic=traffic, replication=replication,
        provenance=Provenance(fingerprint_id=inputs.fingerprint_id, graph_id=inputs.graph_id, run_id=inputs.run_id,
                              primary_inventory_hash=inv.get("inventory_hash")))
    return BuildResult(blueprint=blueprint, issues=issues)


def _shadow_bucket(name: str, primary: str, shadow: str) -> str:
    return name.replace(primary, shadow) if primary in name else f"{name}-{shadow}"[:63]


def _env_overrides(env: Mapping[str, str], primary: str, shadow: str, endpoints: Mapping[str, str],
                   lb_dns: list[str]) -> dict[str, str]:
    """Environment rewritten for the shadow: region names and primary endpoints replaced; unchanged keys omitted."""
    out = {"AWS_REGION": shadow, "AWS_DEFAULT_REGION": shadow}
    for key, value in env.items():
        new = value
        for old, replacement in endpoints.items():
            new = new.replace(old, replacement)
        for dns in lb_dns:
            new = new.replace(dns, dns.replace(primary, shadow))
        new = re.sub(rf"\b{re.escape(primary)}\b", shadow, new)
        if new != value:
            out[key] = new
    return dict(sorted(out.items()))


def _traffic(inv: Mapping[str, Any], primary: str, shadow: str, lbs: list[Mapping[str, Any]],
             sh: Mapping[str, Any]) -> Traffic:
    """Records that point at the primary's load balancer (alias or value) become failover pairs."""
    lb_names = {(lb.get("dns_name") or "").rstrip(".").lower() for lb in lbs if lb.get("dns_name")}
    shadow_lb_dns = (sh.get("load_balancer") or {}).get("dns_name")
    for zone in inv.get("hosted_zones", []):
        records = []
        for rr in zone.get("records", []):
            targets = [rr.get("alias")] + list(rr.get("values") or [])
            hit = next((t for t in targets if t and t.rstrip(".").lower() in lb_names), None)
            primary_failover = rr.get("failover") == "PRIMARY" or (rr.get("set_identifier") or "").endswith(primary)
            if rr.get("failover") == "SECONDARY":
                continue
            if hit is None and not primary_failover:
                continue
            records.append(DnsRecord(
                name=rr["name"], type=rr["type"] if rr["type"] in ("A", "AAAA", "CNAME") else "A",
                set_identifier=f"{shadow}-shadow", failover="SECONDARY",
                primary_target=(hit or next((t for t in targets if t), "")).rstrip("."),
                shadow_target=shadow_lb_dns, ttl=int(rr.get("ttl") or 60)))
        if records:
            return Traffic(hosted_zone_id=zone["id"], zone_name=zone["name"], records=records)
    return Traffic(hosted_zone_id=None, zone_name=None, records=[])
