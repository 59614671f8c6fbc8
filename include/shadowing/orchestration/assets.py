"""Airflow Assets, defined once. Producers publish them; `shadow_blueprints` is scheduled on them."""

from __future__ import annotations

from airflow.sdk import Asset

CAPACITY_FINGERPRINTS = Asset("shadowing://warehouse/capacity_fingerprints", group="shadowing")
DEPENDENCY_GRAPHS = Asset("shadowing://warehouse/dependency_graphs", group="shadowing")
BLUEPRINT_VERSIONS = Asset("shadowing://warehouse/blueprint_versions", group="shadowing")
FAILOVER_EVENTS = Asset("shadowing://warehouse/failover_events", group="shadowing")
