"""The blueprint contract: what the shadow region must look like for one primary → shadow pair.

A :class:`Blueprint` is built by :mod:`shadowing.blueprint.builder`, stored as JSON (``to_dict``) in the
warehouse's ``blueprint_versions`` table and consumed by the failover (``Blueprint.from_dict``). ``from_dict``
validates structure AND cross-field consistency and raises :class:`~shadowing.errors.InputError` naming the
offending field as a dotted path (``services.web.count``), so a bad blueprint never becomes current.

The JSON form is deterministic: dict keys are sorted and lists that carry no order of their own (subnets,
security groups, ports, records, ingress rules) are sorted, so :func:`blueprint_hash` only changes when the
content does. Provenance (which fingerprint, graph and DAG run produced it) is deliberately left out of the
hash: a refresh from the same inputs by a later run is the same blueprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shadowing.errors import InputError
from shadowing.settings import is_region_name

SCHEMA_VERSION = 1

FailoverRole = Literal["PRIMARY", "SECONDARY"]
TrafficStrategy = Literal["failover", "weighted"]
ReplicationKind = Literal["rds", "aurora", "s3"]
ReplicationAction = Literal["create_replica_then_promote", "promote_replica", "restore_snapshot",
                            "s3_replication"]

FAILOVER_ROLES = ("PRIMARY", "SECONDARY")
TRAFFIC_STRATEGIES = ("failover", "weighted")
REPLICATION_KINDS = ("rds", "aurora", "s3")
REPLICATION_ACTIONS = ("create_replica_then_promote", "promote_replica", "restore_snapshot", "s3_replication")
PROTOCOLS = ("tcp", "udp", "icmp", "-1")
_CIDR = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")


# ───────────────────────────── field checking helpers (errors name the dotted path) ─────────────────────────────

def _fail(path: str, message: str) -> InputError:
    return InputError(message, source="blueprint", field=path)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    return value


def _get(data: Mapping[str, Any], key: str, path: str, kind: type | tuple[type, ...], *,
         optional: bool = False, default: Any = None) -> Any:
    where = f"{path}.{key}" if path else key
    if key not in data or data[key] is None:
        if optional:
            return default
        raise _fail(where, "is required")
    value = data[key]
    # bool is an int subclass: a count of True is a bug, not a number.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(where, f"expected {_kind_name(kind)}, got bool")
    if not isinstance(value, kind):
        raise _fail(where, f"expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _no_unknown(data: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    """A misspelt field (``launch_tier`` for ``tier``) must not be silently ignored."""
    for key in sorted(set(data) - allowed, key=str):
        raise _fail(f"{path}.{key}" if path else str(key), f"unknown field (expected one of {', '.join(sorted(allowed))})")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "list": "a list", "dict": "an object",
                        "Mapping": "an object", "bool": "a boolean", "float": "a number"}.get(k.__name__,
                                                                                             k.__name__)
                       for k in kinds)


def _str(data: Mapping[str, Any], key: str, path: str, *, optional: bool = False,
         non_empty: bool = True) -> str | None:
    value = _get(data, key, path, str, optional=optional)
    if value is not None and non_empty and not value.strip():
        raise _fail(f"{path}.{key}" if path else key, "must not be empty")
    return value


def _int(data: Mapping[str, Any], key: str, path: str, *, minimum: int | None = None,
         maximum: int | None = None, optional: bool = False) -> int | None:
    value = _get(data, key, path, int, optional=optional)
    where = f"{path}.{key}" if path else key
    if value is not None and minimum is not None and value < minimum:
        raise _fail(where, f"must be ≥ {minimum}, got {value}")
    if value is not None and maximum is not None and value > maximum:
        raise _fail(where, f"must be ≤ {maximum}, got {value}")
    return value


def _str_list(data: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> list[str]:
    values = _get(data, key, path, list, optional=optional, default=[])
    for i, item in enumerate(values):
        if not isinstance(item, str) or not item:
            raise _fail(f"{path}.{key}[{i}]", "expected a non-empty string")
    return list(values)


def _str_map(data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    values = _mapping(_get(data, key, path, Mapping, optional=True, default={}), f"{path}.{key}")
    for k, v in values.items():
        if not isinstance(v, str):
            raise _fail(f"{path}.{key}.{k}", f"expected a string, got {type(v).__name__}")
    return dict(values)


def _choice(data: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...]) -> str:
    value = _str(data, key, path)
    if value not in choices:
        raise _fail(f"{path}.{key}" if path else key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def _region(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _str(data, key, path)
    assert value is not None
    if not is_region_name(value):
        raise _fail(f"{path}.{key}" if path else key, f"not an AWS region name: {value!r}")
    return value


def _cidr(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _str(data, key, path)
    assert value is not None
    if not _CIDR.match(value):
        raise _fail(f"{path}.{key}", f"not an IPv4 CIDR: {value!r}")
    return value


# ───────────────────────────────────────────── services ─────────────────────────────────────────────

@dataclass(frozen=True)
class AmiMapping:
    """The machine image of a service in both regions."""

    primary: str
    """AMI id the service runs in the primary region (``ami-…``)."""
    shadow: str | None
    """AMI id of the same image available in the shadow region (a tracked copy or a same-named image);
    None until it has been copied — a readiness failure (``ami_available``), not a crash."""

    def to_dict(self) -> dict[str, Any]:
        return {"primary": self.primary, "shadow": self.shadow}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> AmiMapping:
        data = _mapping(data, path)
        return cls(primary=_str(data, "primary", path), shadow=_str(data, "shadow", path, optional=True))  # type: ignore[arg-type]


@dataclass(frozen=True)
class LaunchTemplateRef:
    """The pre-staged EC2 launch template in the shadow region the failover launches from."""

    name: str
    """Launch template name (deterministic: ``shadow-<primary>-<service>``), found by name at failover."""
    id: str | None = None
    """Launch template id once pre-staged (``lt-…``); None before the first pre-staging."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> LaunchTemplateRef:
        data = _mapping(data, path)
        return cls(name=_str(data, "name", path), id=_str(data, "id", path, optional=True))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TargetGroupRef:
    """The load-balancer target group a service's instances register with (edge services only)."""

    name: str
    """Target group name in the shadow region (ELBv2 names are ≤ 32 characters)."""
    port: int
    """Port the targets receive traffic on (the service's listening port)."""
    health_check_path: str
    """HTTP path the load balancer probes (``/health``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "health_check_path": self.health_check_path}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> TargetGroupRef:
        data = _mapping(data, path)
        name = _str(data, "name", path)
        assert name is not None
        if len(name) > 32:
            raise _fail(f"{path}.name", f"target group names are at most 32 characters, got {len(name)}")
        return cls(name=name, port=_int(data, "port", path, minimum=1, maximum=65535),  # type: ignore[arg-type]
                   health_check_path=_str(data, "health_check_path", path))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ServiceBlueprint:
    """How one service is launched in the shadow region."""

    name: str
    """Service name (the ``shadowing:service`` tag and the dependency-graph node id)."""
    tier: int
    """Index into :attr:`Blueprint.launch_tiers` of the tier that launches this service (0 = first)."""
    group: str | None
    """Id of the dependency cycle (strongly connected component) this service belongs to, launched together
    with its other members in the same tier; None when the service is in no cycle."""
    ami: AmiMapping | None
    """Machine image in primary and shadow; None for managed data stores (no instances of ours)."""
    instance_type: str
    """EC2 instance type (as in the primary; ``db.*`` classes for managed databases)."""
    count: int
    """Instances to launch: the fingerprint's sizing recommendation, else (no usable sizing, said as a failed
    ``sizing`` readiness check) the primary's running count; 1, not 0, for a service the primary runs (see
    :mod:`shadowing.blueprint.builder`)."""
    subnets: list[str]
    """Shadow subnets to spread instances over: subnet ids once pre-staged, else availability-zone names."""
    security_groups: list[str]
    """Security group ids (or names before pre-staging) attached to the service's instances."""
    ports: list[int]
    """Ports the service listens on (callee side of every dependency edge into it)."""
    launch_template: LaunchTemplateRef | None
    """The pre-staged launch template; None for managed data stores."""
    env_overrides: dict[str, str]
    """Environment variables rewritten for the shadow (endpoints and region pointing at the shadow)."""
    target_group: TargetGroupRef | None
    """Target group for load-balanced (edge) services; None for internal services."""
    tags: dict[str, str]
    """Tags the failover puts on launched instances (on top of failover id / mode / tier)."""
    kind: str = "compute"
    """``compute`` (EC2 instances launched by the failover) or ``managed`` (a data store brought up through
    :attr:`Blueprint.replication`, never launched as instances)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "tier": self.tier, "group": self.group,
            "ami": None if self.ami is None else self.ami.to_dict(),
            "instance_type": self.instance_type, "count": self.count, "subnets": sorted(self.subnets),
            "security_groups": sorted(self.security_groups), "ports": sorted(set(self.ports)),
            "launch_template": None if self.launch_template is None else self.launch_template.to_dict(),
            "env_overrides": dict(sorted(self.env_overrides.items())),
            "target_group": None if self.target_group is None else self.target_group.to_dict(),
            "tags": dict(sorted(self.tags.items())), "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, name: str, data: Any, path: str) -> ServiceBlueprint:
        data = _mapping(data, path)
        _no_unknown(data, path, {"name", "tier", "group", "ami", "instance_type", "count", "subnets",
                                 "security_groups", "ports", "launch_template", "env_overrides", "target_group",
                                 "tags", "kind"})
        ports = _get(data, "ports", path, list, optional=True, default=[])
        for i, port in enumerate(ports):
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise _fail(f"{path}.ports[{i}]", f"expected a port 1..65535, got {port!r}")
        kind = data.get("kind", "compute")
        if kind not in ("compute", "managed"):
            raise _fail(f"{path}.kind", f"must be compute or managed, got {kind!r}")
        group = data.get("group")
        if group is not None and (not isinstance(group, str) or not group):
            raise _fail(f"{path}.group", "expected a cycle group id (string) or null")
        target_group = data.get("target_group")
        ami, template = data.get("ami"), data.get("launch_template")
        if kind == "compute" and ami is None:
            raise _fail(f"{path}.ami", "is required for a compute service")
        if kind == "compute" and template is None:
            raise _fail(f"{path}.launch_template", "is required for a compute service")
        return cls(
            name=name,
            tier=_int(data, "tier", path, minimum=0),  # type: ignore[arg-type]
            group=group,
            ami=None if ami is None else AmiMapping.from_dict(ami, f"{path}.ami"),
            instance_type=_str(data, "instance_type", path),  # type: ignore[arg-type]
            count=_int(data, "count", path, minimum=0),  # type: ignore[arg-type]
            subnets=_str_list(data, "subnets", path),
            security_groups=_str_list(data, "security_groups", path, optional=True),
            ports=list(ports),
            launch_template=None if template is None else LaunchTemplateRef.from_dict(template,
                                                                                      f"{path}.launch_template"),
            env_overrides=_str_map(data, "env_overrides", path),
            target_group=None if target_group is None else TargetGroupRef.from_dict(target_group,
                                                                                     f"{path}.target_group"),
            tags=_str_map(data, "tags", path),
            kind=kind,
        )


# ───────────────────────────────────────────── networking ─────────────────────────────────────────────

@dataclass(frozen=True)
class VpcSpec:
    """The shadow VPC."""

    cidr: str
    """IPv4 CIDR block (the primary's, so private addresses in configs keep their shape)."""
    id: str | None = None
    """VPC id once pre-staged."""

    def to_dict(self) -> dict[str, Any]:
        return {"cidr": self.cidr, "id": self.id}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> VpcSpec:
        data = _mapping(data, path)
        return cls(cidr=_cidr(data, "cidr", path), id=_str(data, "id", path, optional=True))


@dataclass(frozen=True)
class SubnetSpec:
    """One shadow subnet, mapped from a primary subnet by AZ position (…a → …a)."""

    az: str
    """Availability zone in the shadow region (``us-west-2a``)."""
    cidr: str
    """IPv4 CIDR of the subnet."""
    id: str | None = None
    """Subnet id once pre-staged."""
    primary_az: str | None = None
    """The primary availability zone this subnet shadows."""

    def to_dict(self) -> dict[str, Any]:
        return {"az": self.az, "cidr": self.cidr, "id": self.id, "primary_az": self.primary_az}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> SubnetSpec:
        data = _mapping(data, path)
        return cls(az=_str(data, "az", path), cidr=_cidr(data, "cidr", path),  # type: ignore[arg-type]
                   id=_str(data, "id", path, optional=True), primary_az=_str(data, "primary_az", path, optional=True))


@dataclass(frozen=True)
class IngressRule:
    """One least-privilege ingress rule: traffic seen (a dependency edge) from a caller service."""

    from_service: str
    """Calling service (its security group is the rule's source; ``internet`` for the load balancer)."""
    port: int
    """Destination port on this service."""
    protocol: str = "tcp"
    """IP protocol (``tcp``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"from_service": self.from_service, "port": self.port, "protocol": self.protocol}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> IngressRule:
        data = _mapping(data, path)
        return cls(from_service=_str(data, "from_service", path),  # type: ignore[arg-type]
                   port=_int(data, "port", path, minimum=0, maximum=65535),  # type: ignore[arg-type]
                   protocol=_choice(data, "protocol", path, PROTOCOLS) if "protocol" in data else "tcp")


@dataclass(frozen=True)
class SecurityGroupSpec:
    """A service's security group in the shadow."""

    ingress: list[IngressRule]
    """Allowed inbound traffic: exactly the dependency edges into the service (nothing else)."""
    id: str | None = None
    """Security group id once pre-staged."""
    name: str | None = None
    """Security group name (``shadow-<primary>-<service>``)."""

    def to_dict(self) -> dict[str, Any]:
        rules = sorted((r.to_dict() for r in self.ingress),
                       key=lambda r: (r["from_service"], r["port"], r["protocol"]))
        return {"id": self.id, "name": self.name, "ingress": rules}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> SecurityGroupSpec:
        data = _mapping(data, path)
        rules = _get(data, "ingress", path, list, optional=True, default=[])
        return cls(ingress=[IngressRule.from_dict(r, f"{path}.ingress[{i}]") for i, r in enumerate(rules)],
                   id=_str(data, "id", path, optional=True), name=_str(data, "name", path, optional=True))


@dataclass(frozen=True)
class ListenerSpec:
    """A load-balancer listener forwarding to a target group."""

    port: int
    """Listener port (80/443)."""
    protocol: str
    """HTTP | HTTPS | TCP."""
    target_group: str
    """Name of the target group it forwards to."""

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "protocol": self.protocol, "target_group": self.target_group}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> ListenerSpec:
        data = _mapping(data, path)
        return cls(port=_int(data, "port", path, minimum=1, maximum=65535),  # type: ignore[arg-type]
                   protocol=_str(data, "protocol", path),  # type: ignore[arg-type]
                   target_group=_str(data, "target_group", path))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TargetGroupSpec:
    """A target group of the shadow load balancer."""

    name: str
    """Target group name (≤ 32 characters)."""
    port: int
    """Target port."""
    protocol: str
    """HTTP | HTTPS | TCP."""
    health_check_path: str
    """Health-check path."""
    service: str
    """Service whose instances register in it."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "protocol": self.protocol,
                "health_check_path": self.health_check_path, "service": self.service}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> TargetGroupSpec:
        data = _mapping(data, path)
        ref = TargetGroupRef.from_dict(data, path)
        return cls(name=ref.name, port=ref.port, protocol=_str(data, "protocol", path),  # type: ignore[arg-type]
                   health_check_path=ref.health_check_path, service=_str(data, "service", path))  # type: ignore[arg-type]


@dataclass(frozen=True)
class LoadBalancerSpec:
    """The shadow's application load balancer (mirrors the primary's)."""

    name: str
    """Load balancer name."""
    scheme: str
    """internet-facing | internal."""
    listeners: list[ListenerSpec]
    """Listeners."""
    target_groups: list[TargetGroupSpec]
    """Target groups."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scheme": self.scheme,
                "listeners": sorted((x.to_dict() for x in self.listeners), key=lambda x: (x["port"], x["protocol"])),
                "target_groups": sorted((x.to_dict() for x in self.target_groups), key=lambda x: x["name"])}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> LoadBalancerSpec:
        data = _mapping(data, path)
        scheme = _choice(data, "scheme", path, ("internet-facing", "internal"))
        listeners = _get(data, "listeners", path, list, optional=True, default=[])
        groups = _get(data, "target_groups", path, list, optional=True, default=[])
        spec = cls(name=_str(data, "name", path), scheme=scheme,  # type: ignore[arg-type]
                   listeners=[ListenerSpec.from_dict(x, f"{path}.listeners[{i}]") for i, x in enumerate(listeners)],
                   target_groups=[TargetGroupSpec.from_dict(x, f"{path}.target_groups[{i}]")
                                  for i, x in enumerate(groups)])
        names = {g.name for g in spec.target_groups}
        for i, listener in enumerate(spec.listeners):
            if listener.target_group not in names:
                raise _fail(f"{path}.listeners[{i}].target_group",
                            f"names no target group of the load balancer: {listener.target_group!r}")
        return spec


@dataclass(frozen=True)
class Networking:
    """The shadow network: VPC, subnets, per-service security groups, load balancer."""

    vpc: VpcSpec
    """The VPC."""
    subnets: list[SubnetSpec]
    """Subnets, one per primary subnet, in mapped AZs."""
    security_groups: dict[str, SecurityGroupSpec]
    """Service name → its security group (least privilege from dependency edges)."""
    load_balancer: LoadBalancerSpec | None
    """The load balancer (None when the primary has none)."""

    def to_dict(self) -> dict[str, Any]:
        return {"vpc": self.vpc.to_dict(),
                "subnets": sorted((s.to_dict() for s in self.subnets), key=lambda s: (s["az"], s["cidr"])),
                "security_groups": {k: v.to_dict() for k, v in sorted(self.security_groups.items())},
                "load_balancer": None if self.load_balancer is None else self.load_balancer.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> Networking:
        data = _mapping(data, path)
        subnets = _get(data, "subnets", path, list)
        groups = _mapping(_get(data, "security_groups", path, Mapping, optional=True, default={}),
                          f"{path}.security_groups")
        lb = data.get("load_balancer")
        return cls(vpc=VpcSpec.from_dict(_get(data, "vpc", path, Mapping), f"{path}.vpc"),
                   subnets=[SubnetSpec.from_dict(s, f"{path}.subnets[{i}]") for i, s in enumerate(subnets)],
                   security_groups={k: SecurityGroupSpec.from_dict(v, f"{path}.security_groups.{k}")
                                    for k, v in groups.items()},
                   load_balancer=None if lb is None else LoadBalancerSpec.from_dict(lb, f"{path}.load_balancer"))


# ───────────────────────────────────────────── traffic ─────────────────────────────────────────────

@dataclass(frozen=True)
class DnsRecord:
    """One Route 53 record pair: the primary's record and the shadow's failover/weighted counterpart."""

    name: str
    """Fully qualified record name (``shop.example.com.``)."""
    type: str
    """Record type (A | AAAA | CNAME)."""
    set_identifier: str
    """Set identifier of the record in the failover/weighted set."""
    failover: FailoverRole
    """PRIMARY | SECONDARY: the role of the record the failover flips."""
    primary_target: str
    """What the name resolves to in the primary (load balancer DNS name or address)."""
    shadow_target: str | None
    """What it resolves to once the shadow serves (shadow load balancer DNS name); None until pre-staged."""
    ttl: int = 60
    """TTL in seconds (short, so clients follow the switch quickly)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "set_identifier": self.set_identifier,
                "failover": self.failover, "primary_target": self.primary_target,
                "shadow_target": self.shadow_target, "ttl": self.ttl}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> DnsRecord:
        data = _mapping(data, path)
        return cls(name=_str(data, "name", path), type=_choice(data, "type", path, ("A", "AAAA", "CNAME")),  # type: ignore[arg-type]
                   set_identifier=_str(data, "set_identifier", path),  # type: ignore[arg-type]
                   failover=_choice(data, "failover", path, FAILOVER_ROLES),  # type: ignore[arg-type]
                   primary_target=_str(data, "primary_target", path),  # type: ignore[arg-type]
                   shadow_target=_str(data, "shadow_target", path, optional=True),
                   ttl=_int(data, "ttl", path, minimum=0, optional=True) or 60)


@dataclass(frozen=True)
class Traffic:
    """How traffic moves to the shadow: the Route 53 change set and its strategy."""

    hosted_zone_id: str | None
    """Route 53 hosted zone id (``Z…``); None when the primary has no hosted zone (readiness failure)."""
    zone_name: str | None
    """Zone name (``example.com.``)."""
    records: list[DnsRecord]
    """Records to switch."""
    strategy: TrafficStrategy = "failover"
    """``failover``: flip at once; ``weighted``: shift in :attr:`weighted_steps`."""
    weighted_steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    """Percentages of traffic on the shadow, in order, for the weighted strategy (ends at 100)."""

    def to_dict(self) -> dict[str, Any]:
        return {"hosted_zone_id": self.hosted_zone_id, "zone_name": self.zone_name,
                "records": sorted((r.to_dict() for r in self.records), key=lambda r: (r["name"], r["type"])),
                "strategy": self.strategy, "weighted_steps": list(self.weighted_steps)}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> Traffic:
        data = _mapping(data, path)
        records = _get(data, "records", path, list, optional=True, default=[])
        steps = _get(data, "weighted_steps", path, list, optional=True, default=[10, 50, 100])
        for i, step in enumerate(steps):
            if isinstance(step, bool) or not isinstance(step, int) or not 0 < step <= 100:
                raise _fail(f"{path}.weighted_steps[{i}]", f"expected a percentage 1..100, got {step!r}")
        if steps and (steps != sorted(steps) or steps[-1] != 100):
            raise _fail(f"{path}.weighted_steps", f"must increase and end at 100, got {steps}")
        strategy = _choice(data, "strategy", path, TRAFFIC_STRATEGIES) if "strategy" in data else "failover"
        return cls(hosted_zone_id=_str(data, "hosted_zone_id", path, optional=True),
                   zone_name=_str(data, "zone_name", path, optional=True),
                   records=[DnsRecord.from_dict(r, f"{path}.records[{i}]") for i, r in enumerate(records)],
                   strategy=strategy, weighted_steps=list(steps))  # type: ignore[arg-type]


# ───────────────────────────────────────────── replication ─────────────────────────────────────────────

@dataclass(frozen=True)
class ReplicationSource:
    """The primary data store."""

    region: str
    """Primary region."""
    identifier: str
    """DB instance / cluster identifier or bucket name."""
    arn: str | None = None
    """Its ARN (what a cross-region replica is created from)."""

    def to_dict(self) -> dict[str, Any]:
        return {"region": self.region, "identifier": self.identifier, "arn": self.arn}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> ReplicationSource:
        data = _mapping(data, path)
        return cls(region=_region(data, "region", path), identifier=_str(data, "identifier", path),  # type: ignore[arg-type]
                   arn=_str(data, "arn", path, optional=True))


@dataclass(frozen=True)
class ReplicationTarget:
    """The shadow data store."""

    region: str
    """Shadow region."""
    identifier: str
    """Replica identifier / bucket name in the shadow."""

    def to_dict(self) -> dict[str, Any]:
        return {"region": self.region, "identifier": self.identifier}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> ReplicationTarget:
        data = _mapping(data, path)
        return cls(region=_region(data, "region", path), identifier=_str(data, "identifier", path))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReplicationStep:
    """What the failover does for one data store (after traffic has moved, DESIGN §1)."""

    kind: ReplicationKind
    """rds | aurora | s3."""
    source: ReplicationSource
    """The primary store."""
    target: ReplicationTarget
    """The shadow store."""
    action: ReplicationAction
    """create_replica_then_promote (no replica yet) | promote_replica (pre-staged replica exists) |
    restore_snapshot (fallback when replicas are unavailable) | s3_replication (bucket replication rule)."""
    service: str | None = None
    """The application service this store is (``db``), when it is one; None for buckets."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source.to_dict(), "target": self.target.to_dict(),
                "action": self.action, "service": self.service}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> ReplicationStep:
        data = _mapping(data, path)
        kind = _choice(data, "kind", path, REPLICATION_KINDS)
        action = _choice(data, "action", path, REPLICATION_ACTIONS)
        if (kind == "s3") != (action == "s3_replication"):
            raise _fail(f"{path}.action", f"action {action!r} does not apply to kind {kind!r}")
        return cls(kind=kind, action=action,  # type: ignore[arg-type]
                   source=ReplicationSource.from_dict(_get(data, "source", path, Mapping), f"{path}.source"),
                   target=ReplicationTarget.from_dict(_get(data, "target", path, Mapping), f"{path}.target"),
                   service=_str(data, "service", path, optional=True))


# ───────────────────────────────────────────── provenance + blueprint ─────────────────────────────────────────────

@dataclass(frozen=True)
class Provenance:
    """Where the blueprint came from (not part of the content hash)."""

    fingerprint_id: int | None
    """``capacity_fingerprints.id`` the sizing came from."""
    graph_id: int | None
    """``dependency_graphs.id`` the tiers and rules came from."""
    run_id: str | None
    """Airflow DAG run (or CLI invocation) that built it."""
    primary_inventory_hash: str | None
    """Hash of the live primary inventory the builder read (drift detection)."""

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint_id": self.fingerprint_id, "graph_id": self.graph_id, "run_id": self.run_id,
                "primary_inventory_hash": self.primary_inventory_hash}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> Provenance:
        data = _mapping(data, path)
        return cls(fingerprint_id=_int(data, "fingerprint_id", path, optional=True),
                   graph_id=_int(data, "graph_id", path, optional=True),
                   run_id=_str(data, "run_id", path, optional=True),
                   primary_inventory_hash=_str(data, "primary_inventory_hash", path, optional=True))


@dataclass(frozen=True)
class Blueprint:
    """Everything the failover needs to bring the shadow region up, with nothing left to discover."""

    primary_region: str
    """The primary region this blueprint shadows."""
    shadow_region: str
    """The region the shadow is launched in."""
    services: dict[str, ServiceBlueprint]
    """Service name → how it is launched."""
    launch_tiers: list[list[str]]
    """Service names per launch tier, dependencies first; every service in exactly one tier; the members
    of a dependency cycle together in one tier (launched as a group)."""
    networking: Networking
    """VPC, subnets, security groups, load balancer."""
    traffic: Traffic
    """Route 53 change set and strategy."""
    replication: list[ReplicationStep]
    """Per data store: how the shadow gets the data (after traffic moved)."""
    provenance: Provenance
    """Inputs it was built from."""
    schema_version: int = SCHEMA_VERSION
    """Version of this contract (bumped on incompatible changes)."""

    def content_dict(self) -> dict[str, Any]:
        """The hashed part: everything but provenance."""
        return {
            "schema_version": self.schema_version, "primary_region": self.primary_region,
            "shadow_region": self.shadow_region,
            "services": {k: v.to_dict() for k, v in sorted(self.services.items())},
            "launch_tiers": [sorted(t) for t in self.launch_tiers],
            "networking": self.networking.to_dict(), "traffic": self.traffic.to_dict(),
            "replication": sorted((r.to_dict() for r in self.replication),
                                  key=lambda r: (r["kind"], r["source"]["identifier"])),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.content_dict(), "provenance": self.provenance.to_dict()}

    def content_hash(self) -> str:
        return blueprint_hash(self.to_dict())

    def tier_of(self, service: str) -> int:
        return self.services[service].tier

    @classmethod
    def from_dict(cls, data: Any) -> Blueprint:
        """Parse and validate; raises InputError naming the first bad field."""
        data = _mapping(data, "")
        _no_unknown(data, "", {"schema_version", "primary_region", "shadow_region", "services", "launch_tiers",
                               "networking", "traffic", "replication", "provenance"})
        version = _int(data, "schema_version", "")
        if version != SCHEMA_VERSION:
            raise _fail("schema_version", f"unsupported schema version {version} (this code reads {SCHEMA_VERSION})")
        primary, shadow = _region(data, "primary_region", ""), _region(data, "shadow_region", "")
        if primary == shadow:
            raise _fail("shadow_region", f"must differ from primary_region ({primary})")
        raw_services = _mapping(_get(data, "services", "", Mapping), "services")
        services = {name: ServiceBlueprint.from_dict(name, spec, f"services.{name}")
                    for name, spec in raw_services.items()}
        tiers_raw = _get(data, "launch_tiers", "", list)
        tiers: list[list[str]] = []
        for i, tier in enumerate(tiers_raw):
            if not isinstance(tier, list):
                raise _fail(f"launch_tiers[{i}]", "expected a list of service names")
            for j, name in enumerate(tier):
                if not isinstance(name, str) or not name:
                    raise _fail(f"launch_tiers[{i}][{j}]", "expected a service name")
            tiers.append(list(tier))
        blueprint = cls(
            schema_version=version, primary_region=primary, shadow_region=shadow, services=services,
            launch_tiers=tiers,
            networking=Networking.from_dict(_get(data, "networking", "", Mapping), "networking"),
            traffic=Traffic.from_dict(_get(data, "traffic", "", Mapping), "traffic"),
            replication=[ReplicationStep.from_dict(r, f"replication[{i}]")
                         for i, r in enumerate(_get(data, "replication", "", list, optional=True, default=[]))],
            provenance=Provenance.from_dict(_get(data, "provenance", "", Mapping, optional=True, default={}),
                                            "provenance"),
        )
        blueprint.check_consistency()
        return blueprint

    def check_consistency(self) -> None:
        """Cross-field rules: tiers cover services exactly once, tier indexes agree, cycles stay together,
        security-group rules only name known services, target groups exist on the load balancer."""
        seen: dict[str, int] = {}
        for i, tier in enumerate(self.launch_tiers):
            if not tier:
                raise _fail(f"launch_tiers[{i}]", "a launch tier must not be empty")
            for name in tier:
                if name not in self.services:
                    raise _fail(f"launch_tiers[{i}]", f"names unknown service {name!r}")
                if name in seen:
                    raise _fail(f"launch_tiers[{i}]", f"service {name!r} is already in tier {seen[name]}")
                seen[name] = i
        for name, spec in sorted(self.services.items()):
            if name not in seen:
                raise _fail(f"services.{name}", "is in no launch tier")
            if spec.tier != seen[name]:
                raise _fail(f"services.{name}.tier", f"is {spec.tier} but launch_tiers puts it in tier {seen[name]}")
            if spec.kind == "compute" and spec.count > 0 and not spec.subnets:
                raise _fail(f"services.{name}.subnets", "a launched service needs at least one subnet")
        groups: dict[str, set[int]] = {}
        for spec in self.services.values():
            if spec.group is not None:
                groups.setdefault(spec.group, set()).add(spec.tier)
        for group, tier_set in sorted(groups.items()):
            if len(tier_set) > 1:
                raise _fail("launch_tiers", f"cycle group {group!r} is split over tiers {sorted(tier_set)}")
        known = set(self.services) | {"internet", "load_balancer"}
        for name, sg in sorted(self.networking.security_groups.items()):
            if name not in self.services:
                raise _fail(f"networking.security_groups.{name}", "names an unknown service")
            for i, rule in enumerate(sg.ingress):
                if rule.from_service not in known:
                    raise _fail(f"networking.security_groups.{name}.ingress[{i}].from_service",
                                f"names an unknown service {rule.from_service!r}")
        lb_groups = {g.name for g in self.networking.load_balancer.target_groups} \
            if self.networking.load_balancer else set()
        for name, spec in sorted(self.services.items()):
            if spec.target_group is not None and spec.target_group.name not in lb_groups:
                raise _fail(f"services.{name}.target_group.name",
                            f"{spec.target_group.name!r} is not a target group of the load balancer")
        for i, step in enumerate(self.replication):
            if step.source.region != self.primary_region:
                raise _fail(f"replication[{i}].source.region", f"must be the primary {self.primary_region}")
            if step.target.region != self.shadow_region:
                raise _fail(f"replication[{i}].target.region", f"must be the shadow {self.shadow_region}")


def blueprint_hash(blueprint: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a blueprint dict without its provenance."""
    content = {k: v for k, v in blueprint.items() if k != "provenance"}
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def validate_blueprint(data: Any) -> Blueprint:
    """Alias of :meth:`Blueprint.from_dict` for callers holding a raw dict."""
    return Blueprint.from_dict(data)
