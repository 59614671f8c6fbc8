"""Airflow-aware steps of the shadow_blueprints DAG: connections → clients and warehouse, then the core."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)


def region_pairs_for_run() -> list[dict[str, str]]:
    from shadowing.settings import region_pairs

    return [{"primary_region": p, "shadow_region": s} for p, s in region_pairs().items()]


def _clients(conn_id: str | None = None) -> Any:
    from shadowing.orchestration.clients import AWS_CONN_ID, aws_client

    @lru_cache(maxsize=64)
    def factory(service: str, region: str) -> Any:
        return aws_client(service, region, conn_id or AWS_CONN_ID)

    return factory


# The DAG's Param bounds; checked here too, since a run's params are only validated when the run is created.
MAX_AGE_HOURS_RANGE = (0.1, 24.0 * 366)


def max_age(hours: Any) -> timedelta:
    """The freshness limit of a run's ``max_age_hours`` Param; InputError naming it when out of range (1e12 h
    used to end the build task in an OverflowError traceback)."""
    from shadowing.errors import InputError

    low, high = MAX_AGE_HOURS_RANGE
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not math.isfinite(hours) \
            or not low <= hours <= high:
        raise InputError(f"expected hours between {low:g} and {high:g}, got {hours!r}", field="max_age_hours")
    return timedelta(hours=hours)


def build(pair: dict[str, str], run_id: str, max_age_hours: float) -> dict[str, Any]:
    from shadowing.blueprint.refresh import build_plan
    from shadowing.orchestration.clients import warehouse_engine

    limit = max_age(max_age_hours)
    plan = build_plan(warehouse_engine(), _clients(), pair["primary_region"], pair["shadow_region"], run_id=run_id,
                      max_age=limit)
    failed = [i for i in plan["issues"] if not i["passed"]]
    log.info("%s → %s: %d services, %d build issues, %s", pair["primary_region"], pair["shadow_region"],
             len((plan.get("payload") or {}).get("services") or {}), len(failed), plan.get("seconds"))
    for issue in failed[:50]:
        log.warning("%s %s: %s", issue["check"], issue["subject"], issue["detail"])
    return plan


def validate(plan: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Fails the task without retries (the failure is recorded as a readiness failure first) so nothing
    downstream runs for this region. The same plan fails the same way: a retry would only record the failure
    a second time under the same run (readiness_over_time then counted every check twice)."""
    from shadowing.blueprint.refresh import validate_plan
    from shadowing.errors import ValidationFailed
    from shadowing.orchestration.clients import warehouse_engine
    from shadowing.orchestration.defaults import fail_without_retry

    with fail_without_retry(ValidationFailed):
        validate_plan(warehouse_engine(), plan, run_id=run_id)
    return plan


def prestage(plan: dict[str, Any], enabled: bool) -> dict[str, Any]:
    from shadowing.blueprint.refresh import prestage_plan

    if not enabled:
        log.info("%s: pre-staging disabled by the run's params", plan["primary_region"])
        return plan
    from shadowing.orchestration.clients import prestage_conn_id, warehouse_engine
    from shadowing.warehouse.blueprints import prestage_lock

    conn_id = prestage_conn_id()  # its own role: the only writer of the refresh pipeline
    log.info("%s: pre-staging through connection %s", plan["primary_region"], conn_id)
    plan = prestage_plan(_clients(conn_id), plan, lock=prestage_lock(warehouse_engine(), plan["primary_region"]))
    report = plan["prestage"]
    log.info("%s: pre-staged %d created, %d updated, %d skipped", plan["primary_region"], len(report["created"]),
             len(report["updated"]), len(report["skipped"]))
    for line in report["created"] + report["updated"] + report["skipped"]:
        log.info("  %s", line)
    return plan


def upsert(plan: dict[str, Any], run_id: str) -> dict[str, Any]:
    from shadowing.blueprint.refresh import store_plan
    from shadowing.orchestration.clients import warehouse_engine

    stored = store_plan(warehouse_engine(), plan, run_id=run_id)
    log.info("%s: blueprint version %s (%s)", plan["primary_region"], stored["version"],
             "new" if stored["created"] else "unchanged")
    return {**plan, "stored": stored}


def readiness(plan: dict[str, Any], run_id: str) -> dict[str, Any]:
    from shadowing.blueprint.refresh import readiness_for_plan
    from shadowing.orchestration.clients import warehouse_engine

    summary = readiness_for_plan(warehouse_engine(), _clients(), plan, run_id=run_id,
                                 version=(plan.get("stored") or {}).get("version"))
    log.log(logging.INFO if summary["ready"] else logging.WARNING, "%s ready=%s (%d checks, %d failed)",
            summary["primary_region"], summary["ready"], summary["checks"], summary["failures"])
    for line in summary["failed"]:
        log.warning("  %s", line)
    return summary
