"""Envoy/Istio access logs: the caller's sidecar names the callee (`outbound|port|subset|fqdn`); the callee's
sidecar (`inbound|port||`) names it through REQUESTED_SERVER_NAME and the caller by its pod address.
The same request seen by both sidecars (same x-request-id) counts once."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from shadowing.dependencies.gzipped import log_text
from shadowing.dependencies.inventory import Inventory
from shadowing.dependencies.model import Reference
from shadowing.errors import InputError

TOKEN = re.compile(r'"[^"]*"|\[[^\]]*\]|\S+')
OUTBOUND = re.compile(r"^outbound\|(\d+)\|[^|]*\|([\w.-]+)$")
INBOUND = re.compile(r"^inbound\|(\d+)\|")
SNI = re.compile(r"^outbound_\.(\d+)_\.[^_]*_\.([\w.-]+)$")
ADDRESS = re.compile(r"^\[?([0-9a-fA-F.:]+?)\]?:(\d+)$")
REQUEST_ID = re.compile(r'^"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"$')


@dataclass
class AccessLogResult:
    references: list[Reference] = field(default_factory=list)
    nodes: dict[str, dict[str, object]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"access_lines": 0, "access_unattributed": 0})


def _stamp(token: str) -> float | None:
    try:
        return datetime.fromisoformat(token.strip("[]").replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_access_lines(lines: Iterable[str], inventory: Inventory | None, source: str = "access-log",
                       ) -> AccessLogResult:
    result = AccessLogResult()
    edges: dict[tuple[str, str], Reference] = {}
    seen_requests: set[tuple[str, str, str]] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens = TOKEN.findall(line.strip())
        if not tokens or not tokens[0].startswith("["):
            raise InputError("not an Envoy access-log line (expected [START_TIME] first)", source=source,
                             line=number)
        result.stats["access_lines"] += 1
        stamp = _stamp(tokens[0])
        request_id = next((t.strip('"') for t in tokens if REQUEST_ID.match(t)), "")
        cluster_at = next((i for i, t in enumerate(tokens) if OUTBOUND.match(t) or INBOUND.match(t)), None)
        if cluster_at is None:
            result.stats["access_unattributed"] += 1
            continue
        after = tokens[cluster_at + 1:]
        addresses = [ADDRESS.match(t) for t in after[:3]]
        outbound = OUTBOUND.match(tokens[cluster_at])
        if outbound:
            port, fqdn = outbound.groups()
            caller_ip = next((m.group(1) for m in (addresses[2], addresses[0]) if m), None) \
                if len(addresses) == 3 else None
        else:
            sni = SNI.match(after[3]) if len(after) > 3 else None
            if sni is None:
                result.stats["access_unattributed"] += 1
                continue
            port, fqdn = sni.groups()
            caller_ip = addresses[2].group(1) if len(addresses) == 3 and addresses[2] else None
        callee = fqdn.split(".")[0]
        caller = inventory.lookup_one(caller_ip, stamp or 0) if caller_ip and inventory is not None \
            and len(inventory) else None
        if caller is None:
            result.stats["access_unattributed"] += 1
            continue
        result.nodes.setdefault(callee, {"source": f"access log ({source}:{number})", "aliases": [fqdn]})
        if request_id:
            key = (request_id, caller, callee)
            if key in seen_requests:
                continue
            seen_requests.add(key)
        ref = edges.get((caller, callee))
        if ref is None:
            edges[(caller, callee)] = Reference(caller, fqdn, int(port), "access_log",
                                                f"sidecar access log to {fqdn}:{port}", kind="access_log",
                                                first_seen=stamp, last_seen=stamp)
        else:
            ref.count += 1
            if stamp is not None:
                ref.first_seen = min(ref.first_seen or stamp, stamp)
                ref.last_seen = max(ref.last_seen or stamp, stamp)
    result.references = list(edges.values())
    return result


def parse_access_file(path: str | Path, inventory: Inventory | None) -> AccessLogResult:
    """An access log, plain or gzip (logs shipped to S3); a cut-off gzip file gives its complete lines and a
    warning saying where it was cut."""
    with log_text(path, "access log") as (lines, cut_off):
        result = parse_access_lines(lines, inventory, str(path))
    if cut_off:
        result.warnings.append(cut_off)
    return result
