"""Moving production traffic with Route 53 (live failovers and failbacks only — never in a drill).

Strategy ``failover``: one change batch UPSERTs every failover record set of each name to the shadow's target
(the SECONDARY and the PRIMARY: changing the records does not depend on Route 53's health checks noticing the
outage, and moto's health-check status is static anyway). Strategy ``weighted``: the shadow's weighted record
is raised through ``weighted_steps`` (e.g. 10 → 50 → 100 %) and every step waits for INSYNC and passes a
health gate (shadow targets healthy) before the next. The original record sets are returned so the event keeps
what was replaced, and failback restores those PRIMARY sets (else the blueprint's primary targets).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from shadowing.blueprint.model import Blueprint, DnsRecord
from shadowing.failover.network import load_balancer, wait_insync

log = logging.getLogger(__name__)
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")

HealthGate = Callable[[int], bool]


def record_sets(route53: Any, zone_id: str, name: str, rtype: str) -> list[dict[str, Any]]:
    """All record sets (every set identifier) of ``name``/``rtype``."""
    found: list[dict[str, Any]] = []
    paginator = route53.get_paginator("list_resource_record_sets")
    for page in paginator.paginate(HostedZoneId=zone_id, StartRecordName=name, StartRecordType=rtype):
        for record in page["ResourceRecordSets"]:
            if record["Name"].rstrip(".") != name.rstrip(".") or record["Type"] != rtype:
                return found
            found.append(record)
    return found


def _pointing(record: dict[str, Any], target: str, alias_zone: str | None) -> dict[str, Any]:
    """``record`` re-pointed at ``target``, keeping its routing policy (set id, failover/weight, health check)."""
    new = {k: v for k, v in record.items() if k not in ("ResourceRecords", "AliasTarget", "TTL")}
    if record.get("AliasTarget") or (record["Type"] in ("A", "AAAA") and not _IPV4.match(target)):
        previous = record.get("AliasTarget") or {}
        new["AliasTarget"] = {"HostedZoneId": alias_zone or previous.get("HostedZoneId", ""), "DNSName": target,
                              "EvaluateTargetHealth": bool(previous.get("EvaluateTargetHealth", False))}
    else:
        new["TTL"] = record.get("TTL", 60)
        new["ResourceRecords"] = [{"Value": target}]
    return new


def points_to(record: dict[str, Any], target: str) -> bool:
    alias = (record.get("AliasTarget") or {}).get("DNSName", "")
    values = [r["Value"] for r in record.get("ResourceRecords") or []]
    return alias.rstrip(".").lower() == target.rstrip(".").lower() or values == [target]


def shadow_target(record: DnsRecord, shadow_lb: dict[str, Any] | None) -> tuple[str, str | None]:
    """(target, alias zone id) the record must resolve to in the shadow."""
    if shadow_lb is not None and (record.shadow_target is None
                                  or record.shadow_target.rstrip(".") == shadow_lb["DNSName"].rstrip(".")):
        return shadow_lb["DNSName"], shadow_lb.get("CanonicalHostedZoneId")
    if record.shadow_target is None:
        raise RuntimeError(f"record {record.name}: no shadow target (load balancer not pre-staged)")
    return record.shadow_target, None


def _new_record(record: DnsRecord, target: str, alias_zone: str | None, **policy: Any) -> dict[str, Any]:
    base = {"Name": record.name, "Type": record.type, "SetIdentifier": record.set_identifier, **policy}
    return _pointing({**base, "TTL": record.ttl}, target, alias_zone)


def failover_changes(route53: Any, zone_id: str, record: DnsRecord, target: str,
                     alias_zone: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(UPSERTs that put every failover record set of ``record`` on ``target``, the sets they replace)."""
    current = [r for r in record_sets(route53, zone_id, record.name, record.type) if "Failover" in r]
    if not current:  # nothing to flip yet: create the record the blueprint names, on the shadow
        return [_new_record(record, target, alias_zone, Failover=record.failover)], []
    if not any(r.get("Failover") == "SECONDARY" for r in current):
        current.append({"Name": record.name, "Type": record.type, "SetIdentifier": f"{record.set_identifier}-shadow",
                        "Failover": "SECONDARY", "TTL": record.ttl, "ResourceRecords": [{"Value": target}]})
    upserts = [_pointing(r, target, alias_zone) for r in current if not points_to(r, target)]
    # Replaced = what the upserts overwrite: a set already on the shadow (a retried step) is no original.
    return upserts, [r for r in current if ("ResourceRecords" in r or "AliasTarget" in r)
                     and not points_to(r, target)]


def _apply(route53: Any, zone_id: str, upserts: list[dict[str, Any]], comment: str) -> str | None:
    if not upserts:
        return None
    change = route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Comment": comment, "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in upserts]})
    wait_insync(route53, change["ChangeInfo"]["Id"])
    return str(change["ChangeInfo"]["Id"])


def redirect_traffic(route53: Any, elbv2: Any, blueprint: Blueprint, *, failover_id: str,
                     health_gate: HealthGate | None = None) -> dict[str, Any]:
    """Move every record of the blueprint to the shadow; returns the change detail (incl. replaced sets)."""
    traffic = blueprint.traffic
    if not traffic.records:
        return {"records": 0, "note": "the blueprint names no records"}
    if not traffic.hosted_zone_id:
        raise RuntimeError("traffic.hosted_zone_id is not set in the blueprint (readiness failure)")
    lb = load_balancer(elbv2, blueprint.networking.load_balancer.name) if blueprint.networking.load_balancer \
        else None
    comment = f"shadowing failover {failover_id}"
    replaced: list[dict[str, Any]] = []
    changes: list[str] = []
    if traffic.strategy == "failover":
        upserts: list[dict[str, Any]] = []
        for record in traffic.records:
            target, alias_zone = shadow_target(record, lb)
            ups, old = failover_changes(route53, traffic.hosted_zone_id, record, target, alias_zone)
            upserts.extend(ups)
            replaced.extend(old)
        change = _apply(route53, traffic.hosted_zone_id, upserts, comment)
        changes.extend([change] if change else [])
        return {"strategy": "failover", "records": len(traffic.records), "upserts": len(upserts),
                "changes": changes, "replaced": replaced}
    for percent in traffic.weighted_steps:
        upserts = []
        for record in traffic.records:
            target, alias_zone = shadow_target(record, lb)
            primary = _new_record(record, record.primary_target, None, Weight=100 - percent)
            shadow = _new_record(record, target, alias_zone, Weight=percent)
            shadow["SetIdentifier"] = f"{record.set_identifier}-shadow"
            upserts.extend([primary, shadow])
        change = _apply(route53, traffic.hosted_zone_id, upserts, f"{comment}: {percent}% on the shadow")
        changes.extend([change] if change else [])
        if health_gate is not None and not health_gate(percent):
            raise RuntimeError(f"health gate failed at {percent}% on the shadow; traffic left at that step")
    return {"strategy": "weighted", "records": len(traffic.records), "steps": list(traffic.weighted_steps),
            "changes": changes}


def traffic_on_shadow(route53: Any, elbv2: Any, blueprint: Blueprint) -> list[str]:
    """Problems with the redirect (empty when every record resolves to the shadow)."""
    traffic = blueprint.traffic
    problems: list[str] = []
    if not traffic.records or not traffic.hosted_zone_id:
        return problems
    lb = load_balancer(elbv2, blueprint.networking.load_balancer.name) if blueprint.networking.load_balancer \
        else None
    for record in traffic.records:
        target, _ = shadow_target(record, lb)
        sets = record_sets(route53, traffic.hosted_zone_id, record.name, record.type)
        if traffic.strategy == "failover":
            wrong = [r.get("SetIdentifier") for r in sets if "Failover" in r and not points_to(r, target)]
            if wrong or not sets:
                problems.append(f"{record.name}: {wrong or 'no record'} not on the shadow {target}")
        else:
            shadow = [r for r in sets if points_to(r, target)]
            if not shadow or shadow[0].get("Weight") != 100:
                problems.append(f"{record.name}: shadow weight is not 100")
    return problems


def _set_key(record: dict[str, Any]) -> tuple[str, str, str | None]:
    return record["Name"].rstrip(".").lower(), record["Type"], record.get("SetIdentifier")


def _original_sets(replaced: list[dict[str, Any]] | None, blueprint: Blueprint) -> dict[tuple[str, str, str | None],
                                                                                         dict[str, Any]]:
    """The record sets the failover replaced that still show the primary (a retried traffic step records the
    sets it found already on the shadow: those are no original)."""
    originals: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    targets = {(r.name.rstrip(".").lower(), r.type): r.primary_target for r in blueprint.traffic.records}
    for record in replaced or []:
        target = targets.get(_set_key(record)[:2])
        if target is not None and points_to(record, target):
            originals.setdefault(_set_key(record), record)
    return originals


def restore_primary(route53: Any, blueprint: Blueprint, *, failover_id: str,
                    replaced: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Failback: PRIMARY record sets back on the primary's target; the SECONDARY stays on the shadow (standby);
    weighted: primary 100, shadow 0.

    ``replaced``: the record sets the failover's traffic step replaced (its event detail). A PRIMARY set goes
    back exactly as it was there (an alias keeps the primary load balancer's hosted zone and its
    EvaluateTargetHealth; re-pointing the shadow's alias would keep the shadow ALB's zone, which Route 53
    rejects for the primary's DNS name); without it, it is re-pointed at the blueprint's primary target."""
    traffic = blueprint.traffic
    if not traffic.records or not traffic.hosted_zone_id:
        return {"records": 0}
    originals = _original_sets(replaced, blueprint)
    upserts: list[dict[str, Any]] = []
    for record in traffic.records:
        sets = record_sets(route53, traffic.hosted_zone_id, record.name, record.type)
        for current in sets:
            if current.get("Failover") == "PRIMARY":
                original = originals.get(_set_key(current))
                if original is not None:
                    if current != original:
                        upserts.append(original)
                elif not points_to(current, record.primary_target):
                    upserts.append(_pointing(current, record.primary_target, None))
            elif "Weight" in current:
                back_home = points_to(current, record.primary_target)
                weight = 100 if back_home else 0
                if current["Weight"] != weight:
                    upserts.append({**current, "Weight": weight})
    change = _apply(route53, traffic.hosted_zone_id, upserts, f"shadowing failback of {failover_id}")
    return {"records": len(traffic.records), "upserts": len(upserts), "from_recorded": len(originals),
            "changes": [change] if change else []}
