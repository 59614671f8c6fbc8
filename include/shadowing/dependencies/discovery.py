"""Service-discovery logs: Consul (registrations → nodes; per-service lookups → edges), Eureka (nodes and
IP→app only: clients fetch the whole registry, so no edges), AWS Cloud Map (CloudTrail JSON events:
RegisterInstance → nodes, DiscoverInstances by a known address → edges)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shadowing.dependencies.gzipped import log_text
from shadowing.dependencies.inventory import Inventory
from shadowing.dependencies.model import Reference
from shadowing.errors import InputError

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
TIME_PATTERNS = (
    (re.compile(r"(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})"), "slash"),
    (re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})"), "iso"),
)
CONSUL_SYNC = re.compile(r"Synced service[:\s]+(?:service=)?\"?'?([^\"'\s]+)")
CONSUL_REGISTER = re.compile(r"(?:PUT|POST)\s+/v1/(?:agent/service/register|catalog/register)\S*+.*?(?:service=|name=)"
                             r"\"?([\w.-]+)")
# Possessive quantifiers: the name and the rest of the URL never give characters back, so a long line without
# "from=" fails in linear time (the backtracking form was cubic: a 2 KB URL took over a minute).
CONSUL_LOOKUP = re.compile(r"(?:GET\s+|url=)/v1/(?:health|catalog)/(?:service|connect)/([\w.-]++)\S*+.*?from=\[?"
                           r"([0-9a-fA-F.:]+?)\]?:(\d+)")
CONSUL_DNS = re.compile(r"dns: request.*?question=\"?\{?([\w.-]+)\.service\.consul.*?client=\[?([0-9a-fA-F.:]+?)\]?:\d+")
EUREKA_REGISTER = re.compile(r"Registered instance ([A-Za-z0-9_.-]+)/(\S+) with status (\w+)")
EUREKA_LEASE = re.compile(r"registering resource: ([A-Za-z0-9_.-]+) - (\S+)")


@dataclass
class DiscoveryResult:
    references: list[Reference] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"lines": 0, "registrations": 0, "lookups": 0,
                                                            "lookups_unattributed": 0})


def _timestamp(line: str) -> float | None:
    for pattern, _ in TIME_PATTERNS:
        match = pattern.search(line)
        if match:
            try:
                return datetime(*(int(g) for g in match.groups()), tzinfo=UTC).timestamp()  # type: ignore[misc]
            except ValueError:
                return None
    return None


def _service_name(raw: str) -> str | None:
    name = raw.strip().strip("\"'")
    if ":" in name:  # "<name>:<instance-id>" (consul-esm style) or "service:<id>"
        head, tail = name.split(":", 1)
        name = tail if head == "service" else head
    if not name or UUID.match(name):
        return None
    return name.lower()


def parse_discovery_lines(lines: Iterable[str], inventory: Inventory | None, source: str = "discovery-log",
                          ) -> DiscoveryResult:
    result = DiscoveryResult()
    lookups: dict[tuple[str, str], Reference] = {}
    anonymous = 0
    undated: list[int] = []  # lookup lines whose time cannot be read
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        result.stats["lines"] += 1
        stamp = _timestamp(text)
        if text.lstrip().startswith("{"):
            if _cloud_map(text, number, source, inventory, result, lookups):
                undated.append(number)
            continue
        match = CONSUL_SYNC.search(text) or CONSUL_REGISTER.search(text)
        if match:
            name = _service_name(match.group(1))
            if name is None:
                anonymous += 1
            else:
                result.nodes.setdefault(name, {"source": f"consul ({source}:{number})", "aliases": []})
                result.stats["registrations"] += 1
            continue
        match = EUREKA_REGISTER.search(text) or EUREKA_LEASE.search(text)
        if match:
            app = match.group(1).lower()
            result.nodes.setdefault(app, {"source": f"eureka ({source}:{number})", "aliases": []})
            result.stats["registrations"] += 1
            continue
        match = CONSUL_LOOKUP.search(text) or CONSUL_DNS.search(text)
        if match:
            callee, ip = match.group(1), match.group(2)
            if stamp is None:
                undated.append(number)
            _lookup(callee, ip, stamp, "consul lookup", result, lookups, inventory)
    if result.stats["lines"] and not (result.stats["registrations"] or result.stats["lookups"] or result.nodes
                                      or anonymous):
        result.warnings.append(f"{source}: none of its {result.stats['lines']} line(s) is a Consul, Eureka or Cloud "
                               "Map event this program reads; nothing taken from it")
    if undated:
        result.warnings.append(f"{source}: {len(undated)} lookup line(s) without a readable time (first: line "
                               f"{undated[0]}): their caller is taken from inventory rows open since 1970 only")
    if anonymous:
        result.warnings.append(f"{source}: {anonymous} Consul registration(s) without a service name (bare IDs)")
    result.references = list(lookups.values())
    return result


def _lookup(callee: str, ip: str, stamp: float | None, how: str, result: DiscoveryResult,
            lookups: dict[tuple[str, str], Reference], inventory: Inventory | None) -> None:
    result.stats["lookups"] += 1
    caller = inventory.lookup_one(ip, stamp or 0) if inventory is not None and len(inventory) else None
    if caller is None:  # the local agent (127.0.0.1) or an address outside the inventory
        result.stats["lookups_unattributed"] += 1
        return
    key = (caller, callee)
    ref = lookups.get(key)
    if ref is None:
        lookups[key] = Reference(caller, callee, None, "discovery", f"{how} of {callee}", kind="discovery",
                                 first_seen=stamp, last_seen=stamp)
    else:
        ref.count += 1
        if stamp is not None:
            ref.first_seen = min(ref.first_seen or stamp, stamp)
            ref.last_seen = max(ref.last_seen or stamp, stamp)


def _cloud_map(text: str, number: int, source: str, inventory: Inventory | None, result: DiscoveryResult,
               lookups: dict[tuple[str, str], Reference]) -> bool:
    """Read one CloudTrail event; True when it was a lookup whose time could not be read."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not a JSON event: {exc.msg}", source=source, line=number) from exc
    except RecursionError as exc:
        raise InputError("not a JSON event: nested too deeply", source=source, line=number) from exc
    if not isinstance(event, dict):
        raise InputError(f"not a JSON event: {type(event).__name__}, not an object", source=source, line=number)
    name = event.get("eventName")
    params = event.get("requestParameters") or {}
    if not isinstance(params, dict):
        result.warnings.append(f"{source}:{number}: requestParameters is {type(params).__name__}, not an object; "
                               "event skipped")
        return False
    stamp = None
    if isinstance(event.get("eventTime"), str):
        try:
            moment = datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
            stamp = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # CloudTrail is UTC
        except ValueError:
            stamp = None
    service = params.get("serviceName") or params.get("serviceId")
    if service is not None and not isinstance(service, str):
        result.warnings.append(f"{source}:{number}: serviceName is {type(service).__name__}, not text; event skipped")
        return False
    if name == "RegisterInstance" and service:
        result.nodes.setdefault(str(service).lower(), {"source": f"cloudmap ({source}:{number})", "aliases": []})
        result.stats["registrations"] += 1
    elif name == "DiscoverInstances" and service and event.get("sourceIPAddress"):
        _lookup(str(service), str(event["sourceIPAddress"]), stamp, "cloud map DiscoverInstances", result,
                lookups, inventory)
        return stamp is None
    return False


def parse_discovery_file(path: str | Path, inventory: Inventory | None) -> DiscoveryResult:
    """A discovery log, plain or gzip (logs shipped to S3); a cut-off gzip file gives its complete lines and a
    warning saying where it was cut."""
    with log_text(path, "discovery log") as (lines, cut_off):
        result = parse_discovery_lines(lines, inventory, str(path))
    if cut_off:
        result.warnings.insert(0, cut_off)
    return result
