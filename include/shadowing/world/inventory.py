"""Who owned which private IP when: the time-ranged IP → service map of the emulated world (DESIGN §4).

Built either synthetically (no AWS: benchmarks, unit tests) or from the seeded world's EC2 instances, ENIs and
their validity tags. Includes the traps a dependency mapper must survive: an instance replaced mid-window whose
IP is later reused by an instance of another service, load-balancer ENIs (requester-managed, instance-id "-")
and the managed database's ENI.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from shadowing.world.app import App
from shadowing.world.shapes import hash_uniform

ACCOUNT_ID = "123456789012"


def az_names(region: str) -> tuple[str, str, str]:
    """The world's three AZs in ``region``: letters a, b, c (the blueprint maps AZs by letter)."""
    return (f"{region}a", f"{region}b", f"{region}c")


AZ_NAMES = az_names("us-east-1")
AZ_IDS = ("use1-az1", "use1-az2", "use1-az4")
LB_SERVICE = "alb"  # pseudo-service of the load balancer's ENIs (not part of the application graph)


@dataclass(frozen=True)
class Endpoint:
    ip: str
    service: str
    instance_id: str  # "-" for requester-managed ENIs (load balancer, RDS)
    eni_id: str
    subnet_id: str
    az_index: int
    valid_from: datetime
    valid_to: datetime | None = None
    kind: str = "instance"  # instance | alb | rds

    def active(self, start: datetime, end: datetime) -> bool:
        return self.valid_from < end and (self.valid_to is None or self.valid_to > start)


@dataclass(frozen=True)
class Inventory:
    endpoints: tuple[Endpoint, ...]
    vpc_id: str
    region: str = "us-east-1"
    account_id: str = ACCOUNT_ID

    def for_service(self, service: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.service == service]

    def app_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.kind != "alb"]


def _ip(az: int, n: int) -> str:
    # /20 per AZ: 10.0.0.0/20, 10.0.16.0/20, 10.0.32.0/20; skip the 4 addresses AWS reserves
    host = n + 4
    return f"10.0.{az * 16 + host // 256}.{host % 256}"


def _hex(seed: int, *keys: int, width: int = 17) -> str:
    hi = int(hash_uniform(seed, *keys) * (1 << 52))
    lo = int(hash_uniform(seed + 1, *keys) * (1 << 52))
    return f"{hi:013x}{lo:013x}"[:width]


def synthetic_inventory(app: App, start: datetime, end: datetime, seed: int = 0, *,
                        vpc_id: str | None = None, region: str = "us-east-1",
                        replace_fraction: float = 0.5) -> Inventory:
    """Instances of every compute service (spread over 3 AZs), RDS and ALB ENIs, plus the IP-reuse trap.

    At ``start + replace_fraction × (end - start)`` the last instance of the first service with ≥ 2 instances is
    terminated and replaced (new IP) two minutes later; its old IP is reused five minutes after termination by an
    extra instance of another service.
    """
    vpc = vpc_id or f"vpc-{_hex(seed, 1, width=17)}"
    subnets = [f"subnet-{_hex(seed, 2, az, width=17)}" for az in range(3)]
    counters = [0, 0, 0]
    eps: list[Endpoint] = []

    def add(service: str, kind: str, az: int, key: int, valid_from: datetime, ip: str | None = None,
            valid_to: datetime | None = None) -> Endpoint:
        if ip is None:
            ip = _ip(az, counters[az])
            counters[az] += 1
        inst = f"i-{_hex(seed, 3, key)}" if kind == "instance" else "-"
        ep = Endpoint(ip, service, inst, f"eni-{_hex(seed, 4, key)}", subnets[az], az, valid_from, valid_to, kind)
        eps.append(ep)
        return ep

    key = 0
    for az in range(3):
        key += 1
        add(LB_SERVICE, "alb", az, key, start)
    for svc in app.services:
        n = 1 if svc.managed else svc.instances
        for o in range(n):
            key += 1
            add(svc.name, "rds" if svc.managed else "instance", (o + key) % 3, key, start)
    multi = [s for s in app.compute_services() if s.instances >= 2]
    if multi and len(app.compute_services()) >= 2:
        victim_svc = multi[min(len(multi) - 1, 6)]
        others = [s for s in app.compute_services() if s.name != victim_svc.name]
        reuser_svc = others[int(hash_uniform(seed, 5) * len(others))]
        at = start + (end - start) * replace_fraction
        victim = [e for e in eps if e.service == victim_svc.name][-1]
        eps[eps.index(victim)] = replace(victim, valid_to=at)
        key += 1
        add(victim_svc.name, "instance", victim.az_index, key, at + timedelta(minutes=2))
        key += 1
        add(reuser_svc.name, "instance", victim.az_index, key, at + timedelta(minutes=5), ip=victim.ip)
    return Inventory(tuple(eps), vpc, region)


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.isoformat().replace("+00:00", "Z")


def write_inventory_csv(inventory: Inventory, path: str | Path, *, include_load_balancers: bool = False) -> Path:
    """``ip,service,valid_from,valid_to`` (ISO-8601 UTC; empty valid_to = still valid), DESIGN §4."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ip", "service", "valid_from", "valid_to"])
        for e in inventory.endpoints:
            if e.kind == "alb" and not include_load_balancers:
                continue
            w.writerow([e.ip, e.service, _iso(e.valid_from), _iso(e.valid_to)])
    return path


def inventory_rows(endpoints: Iterable[Endpoint]) -> list[dict[str, str]]:
    return [{"ip": e.ip, "service": e.service, "instance_id": e.instance_id, "eni_id": e.eni_id,
             "valid_from": _iso(e.valid_from), "valid_to": _iso(e.valid_to), "kind": e.kind} for e in endpoints]
