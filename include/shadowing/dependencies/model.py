"""Evidence and the service catalog every extractor feeds: who exists, under which names, on which ports."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

EVIDENCE_KINDS = ("config", "discovery", "flow", "access_log")

# How much one fresh piece of evidence of each sort is worth on its own (combined as independent signals).
STRENGTH: dict[str, float] = {
    "env": 0.85,  # an address of the callee in the caller's own environment/args/config file
    "proxy": 0.85,  # nginx upstream / proxy_pass, Spring URL, Consul upstream
    "depends_on": 0.6,  # compose start-up order, corroborated by an address the caller holds
    "depends_on_unaddressed": 0.3,  # start-up order only: the caller holds no address of the callee
    "network_policy": 0.55,  # an ingress allow-list: permission, not proof of a call
    "discovery": 0.7,  # a lookup of the callee by the caller
    "access_log": 0.9,  # the caller's sidecar named the callee
    "flow": 0.0,  # computed from windows and bytes, see flowlogs.flow_strength
}

# Callees that receive telemetry (spans, metrics, logs), not requests: recorded, not launch-order edges.
TELEMETRY_PATTERN = re.compile(
    r"(jaeger|zipkin|otel|opentelemetry|collector|prometheus|grafana|fluentd|fluent-bit|datadog|statsd|loki|"
    r"tempo|elastic-apm)", re.IGNORECASE)


def is_telemetry(name: str, image: str | None = None) -> bool:
    return bool(TELEMETRY_PATTERN.search(name) or (image and TELEMETRY_PATTERN.search(image)))


@dataclass
class Reference:
    """`caller` holds an address (or declaration) of `target` (a raw name, resolved later)."""

    caller: str
    target: str
    port: int | None
    strength_key: str
    detail: str
    kind: str = "config"
    first_seen: float | None = None
    last_seen: float | None = None
    count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceInfo:
    name: str
    kind: str = "service"  # service | database | cache | queue | telemetry | external
    aliases: set[str] = field(default_factory=set)
    ports: list[dict[str, int]] = field(default_factory=list)  # [{"port": 5000, "target_port": 8080}]
    listen_ports: set[int] = field(default_factory=set)
    image: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)

    def add_port(self, port: int | None, target_port: int | None = None) -> None:
        if port is None and target_port is None:
            return
        entry = {"port": int(port if port is not None else target_port),  # type: ignore[arg-type]
                 "target_port": int(target_port if target_port is not None else port)}  # type: ignore[arg-type]
        if entry not in self.ports:
            self.ports.append(entry)
        self.listen_ports.add(entry["target_port"])

    def to_node(self) -> dict[str, Any]:
        node: dict[str, Any] = {"id": self.name, "kind": self.kind}
        if self.aliases - {self.name}:
            node["aliases"] = sorted(self.aliases - {self.name})
        if self.ports:
            node["ports"] = sorted(self.ports, key=lambda p: (p["port"], p["target_port"]))
        if self.image:
            node["image"] = self.image
        if self.sources:
            node["sources"] = sorted(self.sources)
        return node


_DB_PATTERN = re.compile(r"(mongo|postgres|mysql|mariadb|redis|memcache|cassandra|rabbitmq|kafka|zookeeper|"
                         r"elasticsearch|etcd|nats|dynamo)", re.IGNORECASE)


def infer_kind(name: str, image: str | None) -> str:
    text = f"{name} {image or ''}"
    if is_telemetry(name, image):
        return "telemetry"
    match = _DB_PATTERN.search(text)
    if match:
        word = match.group(1).lower()
        if word in {"redis", "memcache"}:
            return "cache"
        if word in {"rabbitmq", "kafka", "nats"}:
            return "queue"
        return "database"
    return "service"


class Catalog:
    """Known services and every name they answer to (Service, Deployment, container, hostname, DNS, Consul)."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceInfo] = {}
        self._alias: dict[str, str] = {}
        self.settled = False  # once references name services, a canonical name no longer changes

    def add(self, name: str, *, source: str | None = None, image: str | None = None,
            kind: str | None = None) -> ServiceInfo:
        canonical = self.resolve(name) or name
        if not self.settled and canonical != name and canonical.lower() == name == name.lower() \
                and canonical in self.services:
            canonical = self._rename(canonical, name)
        info = self.services.get(canonical)
        if info is None:
            info = ServiceInfo(canonical, kind=kind or infer_kind(canonical, image), image=image)
            self.services[canonical] = info
            self.alias(canonical, canonical)
        if image and not info.image:
            info.image = image
            info.kind = kind or infer_kind(canonical, image)
        if source:
            info.sources.add(source)
        return info

    def _rename(self, old: str, new: str) -> str:
        """`API` then `api` (one DNS name): the lower-case spelling wins whichever file came first, so the node's
        name does not depend on the order of the files."""
        info = self.services.pop(old)
        info.name = new
        self.services[new] = info
        info.aliases.add(old)
        for key, target in self._alias.items():
            if target == old:
                self._alias[key] = new
        return new

    def alias(self, alias: str, canonical: str) -> None:
        key = alias.strip().lower()
        if key and key not in self._alias:
            self._alias[key] = canonical
            if canonical in self.services:
                self.services[canonical].aliases.add(alias)

    def resolve(self, name: str | None) -> str | None:
        """Canonical service for a host name, or None (handles k8s DNS forms and Consul `srv-` names)."""
        if not name:
            return None
        key = name.strip().strip("'\"").lower().rstrip(".")
        if key in self._alias:
            return self._alias[key]
        for suffix in (".svc.cluster.local", ".service.consul", ".svc", ".cluster.local", ".local"):
            if key.endswith(suffix):
                key = key[: -len(suffix)]
                if key in self._alias:
                    return self._alias[key]
        first = key.split(".")[0]
        if "." in key and key.count(".") <= 2 and first in self._alias:  # name.namespace[.svc]
            return self._alias[first]
        for prefix in ("srv-", "svc-", "service-"):
            if first.startswith(prefix) and first[len(prefix):] in self._alias:
                return self._alias[first[len(prefix):]]
        return None

    def by_label(self, labels: dict[str, str]) -> list[str]:
        if not labels:
            return []
        return sorted(n for n, s in self.services.items()
                      if s.labels and all(s.labels.get(k) == v for k, v in labels.items()))
