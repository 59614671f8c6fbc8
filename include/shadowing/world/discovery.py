"""Consul-style service-discovery log lines generated from the true call graph.

Formats follow real Consul agent output (see tests/fixtures/world/consul-agent.log): registrations
(``[INFO] agent: Synced service "<svc>:<instance>"``) give nodes, health lookups
(``[DEBUG] http: Request GET /v1/health/service/<callee>?passing=1 (<dur>) from=<caller ip>:<port>``) give edges.
Only config-visible edges to HTTP/gRPC services are looked up through Consul; databases, caches and brokers are
reached by static address, and traffic-only edges never appear here. Noise: the agent's own polling from
127.0.0.1, key/value reads, periodic node syncs and check-in-sync lines.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from shadowing.world.app import App
from shadowing.world.inventory import Inventory
from shadowing.world.shapes import hash_uniform

LOOKUP_INTERVAL_SECONDS = 300
_LOOKUP_KINDS = ("edge", "service", "worker")


def _stamp(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y/%m/%d %H:%M:%S")


def _dur(seed: int, *keys: int) -> str:
    us = 150.0 + 900.0 * float(hash_uniform(seed, *keys))
    return f"{us:.3f}µs"


def discovery_events(app: App, inventory: Inventory, start: datetime, end: datetime,
                     seed: int = 0) -> list[tuple[int, str]]:
    """(epoch seconds, line) for [start, end), time-ordered."""
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    out: list[tuple[int, str]] = []
    for e in inventory.endpoints:
        if e.kind != "instance":
            continue
        sid = f"{e.service}:{e.instance_id}"
        vf = int(e.valid_from.timestamp())
        if t0 <= vf < t1:
            out.append((vf, f'[INFO] agent: Synced service "{sid}"'))
            out.append((vf, f'[DEBUG] agent: Check "service:{sid}" in sync'))
        if e.valid_to is not None and t0 <= int(e.valid_to.timestamp()) < t1:
            out.append((int(e.valid_to.timestamp()), f'[INFO] agent: Deregistered service "{sid}"'))
        first = max(t0, vf) + (-max(t0, vf)) % 600
        for t in range(first, t1, 600):
            if e.valid_to is None or t < e.valid_to.timestamp():
                out.append((t, f'[DEBUG] agent: Check "service:{sid}" in sync'))
    lookups = [(e.caller, e.callee) for e in app.edges
               if e.visibility == "config" and app.service(e.callee).kind in _LOOKUP_KINDS]
    by_service: dict[str, list[int]] = {}
    for i, ep in enumerate(inventory.endpoints):
        if ep.kind == "instance":
            by_service.setdefault(ep.service, []).append(i)
    grid = np.arange(t0 - t0 % LOOKUP_INTERVAL_SECONDS, t1, LOOKUP_INTERVAL_SECONDS, dtype=np.int64)
    grid = grid[grid >= t0]
    for li, (caller, callee) in enumerate(lookups):
        for i in by_service.get(caller, []):
            ep = inventory.endpoints[i]
            for t in grid.tolist():
                if ep.valid_from.timestamp() <= t and (ep.valid_to is None or t < ep.valid_to.timestamp()):
                    off = int(hash_uniform(seed, 31, i, li, t) * LOOKUP_INTERVAL_SECONDS)
                    port = 32768 + int(hash_uniform(seed, 32, i, li, t) * 28000)
                    out.append((t + off, f"[DEBUG] http: Request GET /v1/health/service/{callee}?passing=1 "
                                         f"({_dur(seed, 33, i, li, t)}) from={ep.ip}:{port}"))
    for t in range(t0 + (-t0) % 60, t1, 60):
        out.append((t + 7, f"[DEBUG] http: Request GET /v1/agent/services ({_dur(seed, 34, t)}) from=127.0.0.1:49168"))
        if t % 600 == 0:
            out.append((t + 2, "[INFO] agent: Synced node info"))
            out.append((t + 9, f"[DEBUG] http: Request GET /v1/kv/shopfront/config?recurse= ({_dur(seed, 35, t)}) "
                               "from=127.0.0.1:49170"))
    out = [(t, line) for t, line in out if t0 <= t < t1]
    out.sort(key=lambda x: x[0])
    return out


def discovery_log_lines(app: App, inventory: Inventory, start: datetime, end: datetime, seed: int = 0) -> list[str]:
    """Lines as a Consul server log file: ``YYYY/MM/DD HH:MM:SS [LEVEL] component: message``."""
    return [f"{_stamp(t)} {line}" for t, line in discovery_events(app, inventory, start, end, seed)]
