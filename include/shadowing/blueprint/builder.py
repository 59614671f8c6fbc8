"""Building the blueprint from a fingerprint, a dependency graph, the live primary inventory and the shadow's
pre-staged state. Pure: every input is a plain dict, so it is tested on hand-made dicts.

Problems with the inputs never raise: they become named :class:`ReadinessCheck` failures (a service without
sizing, a graph node without capacity, an AMI not yet in the shadow…), and the blueprint is still built
from the best information available (observed counts, the last tier) so the failover always has a plan.

What a service launches (``count``), in order of preference, every departure from the sizing named:

* the fingerprint's ``sizing.instances`` (a whole number ≥ 0; a fraction rounds up), made under whatever rule
  it records — the blueprint never re-sizes; a recorded rule the sizing package refuses discredits the count;
* else (no sizing: no aggregate, demand beyond any count, a fingerprint of another region, a malformed block)
  the primary's running count; with none running, the count the fingerprint last observed;
* a sizing of 0 for a service the primary runs launches 1: zero CPU demand is not zero callers.

A service the fingerprint still sizes (a fold keeps a silent service for 7 days before retiring it) but that
neither runs in the primary nor has a launch template there cannot be launched (no AMI, no instance type): it is
left out and named, since a planned service without an image fails the failover's preflight for the whole plan. Names are matched
as the dependency catalog matches them, ignoring case and surrounding spaces; the primary's tag names the service.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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
from shadowing.errors import InputError
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
    placement: dict[str, list[str]] = field(default_factory=dict)
    """Per service, the CIDRs of the subnets its primary instances run in: what a service's availability-zone
    entries stand for until pre-staging resolves them to the shadow subnets of exactly these CIDRs."""

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
    """Instance count a fingerprint's ``sizing`` recommends, or None when it says nothing usable.

    Lenient (rounds, clamps at 0); the builder reads sizings through :func:`read_sizing`, which refuses what
    this clamps and says why."""
    if isinstance(sizing, bool):
        return None
    if isinstance(sizing, int | float):
        return max(0, int(round(sizing))) if math.isfinite(sizing) else None
    if isinstance(sizing, Mapping):
        for key in _SIZING_COUNT_KEYS:
            value = sizing.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                return max(0, int(round(value)))
            if isinstance(value, Mapping):  # e.g. {"instances": {"recommended": 3}}
                nested = sized_count(value.get("recommended", value.get("count")))
                if nested is not None:
                    return nested
    return None


def read_sizing(sizing: Any) -> tuple[int | None, str]:
    """(count, why) from a fingerprint service's ``sizing``: the instance count when it is a whole number ≥ 0 (a
    fraction rounds up: never below the recommendation), else None and why — the sizing's own ``reason`` (no
    aggregate, demand beyond any count) or what is wrong with the block. A recorded ``rule`` that
    :meth:`SizingRule.from_dict` refuses (a negative margin sizes below demand) discredits the count."""
    if sizing is None:
        return None, "no sizing in the fingerprint"
    if not isinstance(sizing, Mapping):
        return _whole_count(sizing, "sizing")
    rule = sizing.get("rule")
    if rule is not None:
        from shadowing.capacity.sizing import SizingRule

        try:
            SizingRule.from_dict(rule)
        except InputError as exc:
            return None, f"the sizing's recorded rule cannot be replayed ({exc})"
    for key in _SIZING_COUNT_KEYS:
        value = sizing.get(key)
        if isinstance(value, Mapping):  # e.g. {"instances": {"recommended": 3}}
            value = value.get("recommended", value.get("count"))
        if value is not None:
            return _whole_count(value, f"sizing {key}")
    reason = sizing.get("reason")
    return None, reason if isinstance(reason, str) and reason.strip() else "the sizing gives no instance count"


def _whole_count(value: Any, what: str) -> tuple[int | None, str]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"{what} {value!r} is not a number"
    if not math.isfinite(value):
        return None, f"{what} {value!r} is not a finite count"
    if value < 0:
        return None, f"{what} {value!r} is negative"
    nearest = round(value)
    return (int(nearest) if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)) else math.ceil(value)), ""


def _last_observed(entry: Any) -> int:
    """Instances the fingerprint saw running at the end of its window (else at most), 0 when it cannot say."""
    seen = entry.get("instances") if isinstance(entry, Mapping) else None
    if not isinstance(seen, Mapping):
        return 0
    for key in ("last", "max"):
        count, _ = _whole_count(seen.get(key), key)
        if count:
            return count
    return 0


def _name_key(name: str) -> str:
    """Service names compare as the dependency catalog compares them: surrounding spaces and case ignored."""
    return name.strip().casefold()


class _Names:
    """Maps the fingerprint's and the graph's spellings of a service onto the primary's (its tag names it), and
    remembers every variant it matched so the builder can name them."""

    def __init__(self, primary: Iterable[str]) -> None:
        self.primary = set(primary)
        self.by_key: dict[str, set[str]] = {}
        for name in self.primary:
            self.by_key.setdefault(_name_key(name), set()).add(name)
        self.variants: dict[str, set[tuple[str, str]]] = {}  # primary name → {(source, spelling)}
        self.ambiguous: dict[str, tuple[set[str], set[str]]] = {}  # spelling → (primary names, sources)

    def resolve(self, name: str, source: str) -> str:
        if name in self.primary:
            return name
        matches = self.by_key.get(_name_key(name), set())
        if len(matches) == 1:
            match = next(iter(matches))
            if name.strip() != match:  # a case difference is said; spaces alone are not (every producer strips)
                self.variants.setdefault(match, set()).add((source, name))
            return match
        if len(matches) > 1:
            self.ambiguous.setdefault(name, (matches, set()))[1].add(source)
        return name


def _majority(values: Iterable[str | None]) -> str | None:
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def service_of(tags: Mapping[str, str] | None) -> str | None:
    """The service tag, without surrounding spaces (the fingerprint and the graph strip them too)."""
    name = (tags or {}).get(T.SERVICE)
    return name.strip() or None if isinstance(name, str) else None


def _graph_parts(graph: Mapping[str, Any] | None, names: _Names | None = None,
                 ) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]], list[list[str]], list[list[str]]]:
    """Nodes, edges, tiers and cycles of the graph, its node ids spelt as the primary spells its services."""
    if not graph:
        return {}, [], [], []

    def canon(node_id: Any) -> str:
        return names.resolve(str(node_id), "dependency graph") if names else str(node_id)

    nodes: dict[str, dict[str, Any]] = {}
    for n in graph.get("nodes", []):
        if isinstance(n, Mapping) and "id" in n:
            name = canon(n["id"])
            if name not in nodes or str(n["id"]) == name:  # two spellings of one service: the exact one wins
                nodes[name] = dict(n)
    edge_key = "edges" if "edges" in graph else "links"
    edges = sorted({(canon(e["source"]), canon(e["target"])) for e in graph.get(edge_key, [])
                    if isinstance(e, Mapping) and "source" in e and "target" in e})
    meta = graph.get("graph") or {}
    tiers = [[canon(n) for n in tier] for tier in meta.get("launch_tiers") or []]
    cycles = [sorted({canon(n) for n in c}) for c in meta.get("cycles") or [] if len(c) > 1]
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

    # ── services observed in the primary (EC2 instances and managed databases tagged with a service) ──
    instances_by_service: dict[str, list[Mapping[str, Any]]] = {}
    for inst in inv.get("instances", []):
        name = service_of(inst.get("tags"))
        if name:
            instances_by_service.setdefault(name, []).append(inst)
    databases_by_service: dict[str, Mapping[str, Any]] = {}
    for db in inv.get("db_instances", []):
        name = service_of(db.get("tags"))
        if name and name not in databases_by_service:
            databases_by_service[name] = db
    observed = set(instances_by_service) | set(databases_by_service)
    running = _Names(observed)  # other resources' tags spelt as the running services' are theirs

    def owner(tags: Mapping[str, str] | None) -> str | None:
        name = service_of(tags)
        return running.resolve(name, "tag") if name else None

    templates_by_service: dict[str, Mapping[str, Any]] = {}
    for t in inv.get("launch_templates", []):
        templates_by_service.setdefault(owner(t.get("tags")) or t["name"], t)
    sgs_by_id = {g["id"]: g for g in inv.get("security_groups", [])}
    sg_by_service: dict[str, Mapping[str, Any]] = {}
    for g in inv.get("security_groups", []):
        name = owner(g.get("tags"))
        if name and name not in sg_by_service:
            sg_by_service[name] = g
    for name, insts in instances_by_service.items():  # untagged groups: the one the service's instances use
        if name not in sg_by_service:
            attached = _majority(gid for i in insts for gid in i.get("security_groups", []))
            if attached in sgs_by_id:
                sg_by_service[name] = sgs_by_id[attached]

    # What can be launched: what runs, or what has a launch template (its AMI and type) in the primary.
    launchable = observed | set(templates_by_service)
    names_of = _Names(launchable)
    fp_services, fp_unusable = _fingerprint_services(inputs.fingerprint, primary, fail)
    sizings: dict[str, Any] = {}
    for spelt in sorted(fp_services, key=lambda n: (n not in launchable, n)):  # exact spellings first
        sizings.setdefault(names_of.resolve(spelt, "fingerprint"), fp_services[spelt])
    nodes, edges, graph_tiers, cycles = _graph_parts(inputs.graph, names_of)
    for name, variants in sorted(names_of.variants.items()):
        spelt = " and ".join(f"{variant!r} by the {source}" for source, variant in sorted(variants))
        fail("naming", name, f"spelt {spelt}, {name!r} by the primary's tag: matched ignoring case and surrounding "
                             f"spaces (fix the spelling at its source)")
    for spelt, (matches, sources) in sorted(names_of.ambiguous.items()):
        fail("naming", spelt, f"{spelt!r} in the {' and the '.join(sorted(sources))} matches several services of "
                              f"the primary ignoring case ({', '.join(sorted(matches))}): not guessed, not used")

    # A service is shadowed when the primary runs it, or the fingerprint sized it and it can be launched; the
    # graph places it.
    names = sorted(observed | (set(sizings) & launchable))
    retired = sorted(set(sizings) - launchable)
    launchable_nodes = {n for n, node in nodes.items() if node.get("kind") not in _NOT_LAUNCHED_KINDS}

    for name in sorted(launchable_nodes - set(names) - set(retired)):
        fail("completeness", name, "in the dependency graph but neither running in the primary nor sized in the "
                                   "fingerprint: it has no capacity to shadow")
    if inputs.graph is not None:
        for name in names:
            if name not in nodes:
                fail("completeness", name, "has capacity but no node in the dependency graph: launched in the "
                                           "last tier, security group without ingress")
    for name in retired:
        if name in names_of.ambiguous:
            continue  # named above
        count, _ = read_sizing(sizings[name].get("sizing") if isinstance(sizings[name], Mapping) else None)
        fail("drift", name, f"sized{'' if count is None else f' {count} instance(s)'} in the fingerprint but not "
                            f"running in the primary, and no AMI or launch template is known for it: left out of "
                            f"the blueprint (it could not be launched)")
    for name in sorted((set(sizings) & launchable) - observed):
        fail("drift", name, "sized in the fingerprint but not running in the primary any more: planned from its "
                            "launch template")

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
    cidr_of: dict[str, str] = {}  # primary subnet id → its CIDR (the shadow subnet's)
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
        cidr_of[s["id"]] = s["cidr"]

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
        name = owner(g.get("tags")) or (g["name"] if g["name"] in names else None)
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
            service=owner(db.get("tags"))))
        if db.get("endpoint"):
            shadow_endpoint[db["endpoint"]] = (replica or {}).get("endpoint") or db["endpoint"].replace(
                db["identifier"], target_id, 1).replace(primary, shadow)
    for cl in inv.get("db_clusters", []):
        replication.append(ReplicationStep(
            kind="aurora", source=ReplicationSource(primary, cl["identifier"], cl.get("arn")),
            target=ReplicationTarget(shadow, f"{cl['identifier']}-shadow"),
            action="create_replica_then_promote", service=owner(cl.get("tags"))))
    for bucket in inv.get("buckets", []):
        replication.append(ReplicationStep(
            kind="s3", source=ReplicationSource(primary, bucket["name"], f"arn:aws:s3:::{bucket['name']}"),
            target=ReplicationTarget(shadow, _shadow_bucket(bucket["name"], primary, shadow)),
            action="s3_replication", service=owner(bucket.get("tags"))))

    # ── per-service blueprint ──
    ami_copies: Mapping[str, str] = sh.get("ami_copies") or {}
    templates: Mapping[str, str] = sh.get("launch_templates") or {}
    lb_dns = [lb.get("dns_name") for lb in lbs if lb.get("dns_name")]
    services: dict[str, ServiceBlueprint] = {}
    placement: dict[str, list[str]] = {}
    for name in names:
        insts = instances_by_service.get(name, [])
        db = databases_by_service.get(name)
        managed_only = db is not None and not insts  # sized by its instance class, not by EC2 metrics
        entry = sizings.get(name)
        sizing = entry.get("sizing") if isinstance(entry, Mapping) else None
        if fp_unusable:
            count, why = None, fp_unusable
        elif entry is None:
            count, why = None, "not in the fingerprint"
        else:
            count, why = read_sizing(sizing)
        running_count = len(insts) if insts else (1 if db else 0)
        if count is None:
            count, source = running_count, f"the {running_count} running in the primary"
            last_seen = _last_observed(entry)
            if not running_count and last_seen:  # nothing runs now: 0 would launch nothing for real demand
                count, source = last_seen, (f"{last_seen}, the count the fingerprint last observed (none runs in "
                                            f"the primary now)")
            if not managed_only:
                fail("sizing", name, f"no usable sizing ({why}): launching {source}")
        elif count == 0 and running_count and not managed_only:
            fail("sizing", name, f"sized 0 instances ({_zero_sizing(sizing)}) but {running_count} run in the "
                                 f"primary: launching 1 so that its callers still find it")
            count = 1
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
        sized_type = sizing.get("instance_type") if isinstance(sizing, Mapping) else None
        instance_type = (sized_type if isinstance(sized_type, str) and sized_type.strip() else None) \
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
        cidrs = sorted({cidr_of[i["subnet"]] for i in insts if i.get("subnet") in cidr_of})
        if cidrs:
            placement[name] = cidrs
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
    return BuildResult(blueprint=blueprint, issues=issues, placement=placement)


def _fingerprint_services(fingerprint: Any, primary: str,
                          fail: Callable[[str, str, str], None]) -> tuple[Mapping[str, Any], str]:
    """The fingerprint's services, and why none of its sizing may be used ('' when it may)."""
    if fingerprint is None:
        return {}, "no valid fingerprint"
    if not isinstance(fingerprint, Mapping):
        fail("fingerprint", "payload", f"is {type(fingerprint).__name__}, not an object: no sizing used")
        return {}, "the fingerprint is unreadable"
    region = fingerprint.get("region")
    if isinstance(region, str) and region.strip() not in ("", "unknown", primary):
        # Another region's demand says nothing about this one's: its counts would be confidently wrong.
        fail("fingerprint", "region", f"the fingerprint is of {region.strip()}, not of the primary {primary}: its "
                                      f"sizing is not used (running counts instead)")
        return {}, f"the fingerprint is of {region.strip()}"
    services = fingerprint.get("services")
    if services is None:
        return {}, ""
    if not isinstance(services, Mapping):
        fail("fingerprint", "services", f"is {type(services).__name__}, not an object of services: no sizing used")
        return {}, "the fingerprint's services are unreadable"
    stripped: dict[str, Any] = {}
    for key, entry in sorted(services.items(), key=lambda kv: str(kv[0])):  # "web" before "web ": first wins
        if str(key).strip():
            stripped.setdefault(str(key).strip(), entry)
    return stripped, ""


def _zero_sizing(sizing: Any) -> str:
    """Why a sizing said 0, from what it records (demand, rule)."""
    if not isinstance(sizing, Mapping):
        return "the fingerprint's sizing"
    rule = sizing.get("rule") if isinstance(sizing.get("rule"), Mapping) else {}
    parts = []
    demand = sizing.get("base_demand", sizing.get("demand_quantile"))
    if isinstance(demand, int | float) and not isinstance(demand, bool):
        parts.append(f"{rule.get('metric', 'sizing metric')} demand {demand:g}")
    if "min_instances" in rule:
        parts.append(f"rule min_instances {rule['min_instances']}")
    return ", ".join(parts) or "the fingerprint's sizing"


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
