"""Tag keys shared by the world, the blueprint pre-staging and the failover (so each recognises the others)."""

from __future__ import annotations

from collections.abc import Mapping

SERVICE = "shadowing:service"  # the application service a resource belongs to
WORLD = "shadowing:world"  # id of the emulated world that seeded it (demo/test only)
ROLE = "shadowing:role"  # primary | prestaged | launched
PRESTAGED_FOR = "shadowing:prestaged-for"  # primary region whose shadow this pre-staged resource is
FAILOVER_ID = "shadowing:failover-id"  # the failover run that launched it
MODE = "shadowing:mode"  # dry_run | drill | live
TIER = "shadowing:tier"  # launch tier index
BLUEPRINT_VERSION = "shadowing:blueprint-version"


def to_aws(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """{'k': 'v'} → [{'Key': 'k', 'Value': 'v'}] (EC2/ELB/RDS style)."""
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


def from_aws(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}
