"""The emulated application: its services and its TRUE call graph (caller → callee).

The example application *shopfront* has its configuration files in ``include/apps/shopfront/``; those files
mention exactly the edges marked ``config`` here (a unit test checks it). Edges marked ``traffic`` exist only in
the network traffic (flow logs), never in a configuration file or a discovery lookup.
Larger worlds (benchmarks) use :func:`generated_app`: a layered random DAG plus a cycle, deterministic by seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx

Kind = Literal["edge", "service", "worker", "database", "broker", "cache"]
Visibility = Literal["config", "traffic"]


@dataclass(frozen=True)
class Service:
    name: str
    port: int  # listening port (the callee side of every edge into this service)
    kind: Kind
    instance_type: str
    instances: int  # default instance count in the primary region
    load_scale: float  # relative load: 1.0 = a typical mid-tier service
    protocol: str = "http"  # http | grpc | postgres | amqp | redis
    managed: bool = False  # True: a managed service (RDS) with an ENI but no EC2 instance of ours


@dataclass(frozen=True)
class Edge:
    caller: str
    callee: str
    visibility: Visibility = "config"


@dataclass(frozen=True)
class App:
    name: str
    services: tuple[Service, ...]
    edges: tuple[Edge, ...]
    domain: str = "example.com"
    _index: dict[str, Service] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({s.name: s for s in self.services})
        unknown = {e.caller for e in self.edges} | {e.callee for e in self.edges}
        unknown -= set(self._index)
        if unknown:
            raise ValueError(f"app {self.name}: edges name unknown services {sorted(unknown)}")

    def service(self, name: str) -> Service:
        return self._index[name]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def config_edges(self) -> set[tuple[str, str]]:
        return {(e.caller, e.callee) for e in self.edges if e.visibility == "config"}

    def traffic_only_edges(self) -> set[tuple[str, str]]:
        return {(e.caller, e.callee) for e in self.edges if e.visibility == "traffic"}

    def edge_pairs(self) -> set[tuple[str, str]]:
        return {(e.caller, e.callee) for e in self.edges}

    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for s in self.services:
            g.add_node(s.name, port=s.port, kind=s.kind)
        for e in self.edges:
            g.add_edge(e.caller, e.callee, visibility=e.visibility)
        return g

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one service (each launches as one group)."""
        return sorted(sorted(c) for c in nx.strongly_connected_components(self.graph()) if len(c) > 1)

    def edge_services(self) -> list[Service]:
        return [s for s in self.services if s.kind == "edge"]

    def compute_services(self) -> list[Service]:
        """Services that run on EC2 instances of ours (everything but managed databases)."""
        return [s for s in self.services if not s.managed]


def _edges(spec: Iterable[tuple[str, str, Visibility]]) -> tuple[Edge, ...]:
    return tuple(Edge(a, b, v) for a, b, v in spec)


SHOPFRONT = App(
    name="shopfront",
    services=(
        Service("web", 8080, "edge", "t3.medium", 3, 1.6),
        Service("api-gateway", 8080, "edge", "c5.large", 3, 2.0),
        Service("auth", 8080, "service", "t3.medium", 2, 0.8),
        Service("catalog", 8080, "service", "m5.large", 3, 1.4),
        Service("search", 33000, "service", "c5.xlarge", 2, 1.2),  # listens above the ephemeral floor
        Service("cart", 8080, "service", "t3.medium", 2, 0.9),
        Service("recommendation", 8080, "service", "c5.large", 2, 1.1),
        Service("checkout", 8080, "service", "t3.large", 2, 0.7),
        Service("payment", 50051, "service", "t3.medium", 2, 0.5, protocol="grpc"),
        Service("notification", 8080, "worker", "t3.small", 1, 0.3),
        Service("db", 5432, "database", "db.r5.large", 1, 1.5, protocol="postgres", managed=True),
        Service("broker", 5672, "broker", "m5.large", 2, 0.6, protocol="amqp"),
        Service("cache", 6379, "cache", "r5.large", 2, 0.9, protocol="redis"),
    ),
    edges=_edges([
        ("web", "api-gateway", "config"),
        ("web", "cache", "config"),
        ("api-gateway", "auth", "config"),
        ("api-gateway", "catalog", "config"),
        ("api-gateway", "search", "config"),
        ("api-gateway", "cart", "config"),
        ("api-gateway", "checkout", "config"),
        ("auth", "db", "config"),
        ("auth", "cache", "config"),
        ("catalog", "db", "config"),
        ("catalog", "cache", "config"),
        ("search", "catalog", "config"),
        ("cart", "cache", "config"),
        ("cart", "recommendation", "config"),
        ("recommendation", "catalog", "config"),
        ("recommendation", "cart", "config"),  # cycle cart <-> recommendation
        ("checkout", "cart", "config"),
        ("checkout", "payment", "config"),
        ("checkout", "db", "config"),
        ("checkout", "broker", "config"),
        ("payment", "db", "config"),
        ("notification", "broker", "config"),
        # visible only in traffic: payment's asynchronous confirmation callback (URL sent in each request)
        # closes a second cycle checkout <-> payment; the worker resolves users through a hard-coded IP list.
        ("payment", "checkout", "traffic"),
        ("notification", "auth", "traffic"),
    ]),
)

_INSTANCE_TYPES = ("t3.small", "t3.medium", "t3.large", "m5.large", "c5.large", "r5.large")
_BACKENDS: tuple[tuple[Kind, int, str], ...] = (("database", 5432, "postgres"), ("cache", 6379, "redis"),
                                                ("broker", 5672, "amqp"))


def generated_app(services: int, seed: int = 0, instances_per_service: int = 2) -> App:
    """A layered random DAG of ``services`` services (edges go to deeper layers) plus one back edge (a cycle)."""
    if services < 1:
        raise ValueError("a generated application needs at least 1 service")
    if services < 4:  # too small for layers: a chain whose first two services call each other
        small = tuple(Service(f"svc-{i:04d}", 8080, "edge" if i == 0 else "service", "t3.medium",
                              instances_per_service, 1.0) for i in range(services))
        chain = [(f"svc-{i:04d}", f"svc-{i + 1:04d}") for i in range(services - 1)]
        back = [("svc-0001", "svc-0000")] if services >= 2 else []
        return App(name=f"gen{services}", services=small, edges=tuple(Edge(a, b) for a, b in chain + back))
    rnd = random.Random(seed)
    width = max(2, round(services ** 0.5))
    names = [f"svc-{i:04d}" for i in range(services)]
    layers = [names[i:i + width] for i in range(0, services, width)]
    backend_layer = set(layers[-1]) if len(layers) > 1 else set()
    svc_list: list[Service] = []
    for i, name in enumerate(names):
        if name in backend_layer:
            kind, port, proto = _BACKENDS[i % len(_BACKENDS)]
        elif i < max(1, width // 2):
            kind, port, proto = "edge", 8080, "http"
        else:
            kind, port, proto = "service", rnd.choice((8080, 8080, 8080, 9090, 50051, 33000)), "http"
        svc_list.append(Service(name, port, kind, rnd.choice(_INSTANCE_TYPES), instances_per_service,
                                round(rnd.uniform(0.3, 2.0), 2), proto))
    edges: dict[tuple[str, str], Visibility] = {}
    for li, layer in enumerate(layers[:-1]):
        deeper = [n for lay in layers[li + 1:] for n in lay]
        nxt = layers[li + 1]
        for name in layer:
            targets = {rnd.choice(nxt)} | set(rnd.sample(deeper, k=min(len(deeper), rnd.randint(0, 2))))
            for t in targets:
                edges[(name, t)] = "traffic" if rnd.random() < 0.1 else "config"
    # every service below the first layer gets at least one caller
    for li, layer in enumerate(layers[1:], start=1):
        for name in layer:
            if not any(b == name for (_, b) in edges):
                edges[(rnd.choice(layers[li - 1]), name)] = "config"
    # one cycle between two mid-tier services of consecutive layers
    mid = max(0, len(layers) // 2 - 1)
    a = layers[mid][0]
    b = layers[mid + 1][0] if mid + 1 < len(layers) - 1 or len(layers) == 2 else layers[mid][-1]
    if a != b:
        edges[(a, b)] = edges.get((a, b), "config")
        edges[(b, a)] = "config"
    return App(name=f"gen{services}", services=tuple(svc_list),
               edges=tuple(Edge(x, y, v) for (x, y), v in sorted(edges.items())))


def build_app(services: int | None = None, seed: int = 0, instances_per_service: int | None = None) -> App:
    """The world's application: shopfront by default (or when ``services`` equals its size), else generated."""
    if services is None or services == len(SHOPFRONT.services):
        if instances_per_service is None:
            return SHOPFRONT
        return App(SHOPFRONT.name, tuple(
            s if s.managed else Service(s.name, s.port, s.kind, s.instance_type, instances_per_service,
                                        s.load_scale, s.protocol, s.managed) for s in SHOPFRONT.services),
            SHOPFRONT.edges)
    return generated_app(services, seed, instances_per_service or 2)
