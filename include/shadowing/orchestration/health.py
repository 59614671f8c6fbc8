"""Airflow-aware steps of the primary_health_monitor DAG: Variables/Params → policy, clients, trigger kwargs."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from shadowing.health.policy import CHECK_INTERVAL
from shadowing.orchestration.defaults import FAILOVER_DAG_ID, MONITOR_DAG_ID

log = logging.getLogger(__name__)
AUTO_FAILOVER_VARIABLE = "shadowing_auto_failover"  # {"us-east-1": true}; off when missing
POLICY_VARIABLE = "shadowing_health_policy"  # {"failures_required": 3, "window": 5, "cooldown_minutes": 30}
PROBES_VARIABLE = "shadowing_health_probes"  # {"us-east-1": ["https://…/healthz"]}


def _variable(name: str, *, required_json: bool = False) -> Any:
    """The Variable, JSON-decoded; None when unset. Not JSON: None (loudly), or an InputError naming it when
    ``required_json`` (a setting whose safe reading is not "unset")."""
    from airflow.sdk import Variable

    from shadowing.errors import InputError

    # Read raw and decode here: Airflow's own deserialize_json swallows a JSON error per secrets backend and
    # answers "not found" (→ default), so a malformed Variable would be indistinguishable from an unset one.
    raw = Variable.get(name, default=None)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, TypeError) as exc:
        if required_json:
            raise InputError(f"not valid JSON ({exc})", source=f"Variable {name}") from exc
        log.error("Variable %s is not valid JSON (%s): ignored", name, exc)
        return None


def policy_from(params: dict[str, Any]) -> Any:
    """Params (when set) override the Variable, which overrides the defaults.

    A malformed Variable fails the run naming the Variable and the field; it never silently falls back to the
    defaults, which may be more eager to fail over than what was configured."""
    from shadowing.health.policy import HealthPolicy

    stored = _variable(POLICY_VARIABLE, required_json=True)
    HealthPolicy.from_mapping(stored, source=f"Variable {POLICY_VARIABLE}")  # the Variable alone must be valid
    overrides = {k: params[k] for k in ("failures_required", "window", "cooldown_minutes")
                 if params.get(k) is not None}
    source = f"Variable {POLICY_VARIABLE} with Params {sorted(overrides)}" if overrides else \
        f"Variable {POLICY_VARIABLE}"
    return HealthPolicy.from_mapping({**(stored or {}), **overrides}, source=source)


def auto_failover_setting(region: str, primaries: Any = None) -> bool:
    """Whether auto-failover is on for ``region``. Unreadable, null, not an object → off, logged at ERROR;
    keys that are not primary regions (a typo leaves the intended region off) → logged at ERROR."""
    from shadowing.health.policy import auto_failover_enabled

    setting = _variable(AUTO_FAILOVER_VARIABLE)
    if setting is not None and not isinstance(setting, dict):
        log.error("Variable %s must be a JSON object {\"<region>\": true}, got %r: auto-failover is OFF",
                  AUTO_FAILOVER_VARIABLE, setting)
    elif isinstance(setting, dict) and primaries is not None:
        strangers = sorted(str(k) for k in setting if k not in set(primaries))
        if strangers:
            log.error("Variable %s names regions that are not primaries: %s (primaries: %s); ignored",
                      AUTO_FAILOVER_VARIABLE, strangers, sorted(primaries))
    return auto_failover_enabled(setting, region)


def probes_from_variable(region: str) -> list[str]:
    from shadowing.health.checks import probe_urls

    return probe_urls(_variable(PROBES_VARIABLE, required_json=True), region, source=PROBES_VARIABLE)


def switch_edits(after: datetime | None, before: datetime) -> list[Any]:
    """Edits of the auto-failover Variable in Airflow's event log (REST API, connection ``airflow_api``)."""
    from shadowing.errors import ShadowingError
    from shadowing.health.switch import variable_edits
    from shadowing.orchestration.clients import AIRFLOW_API_CONN_ID, airflow_api

    api = airflow_api()
    if api is None:
        raise ShadowingError(f"no Airflow connection {AIRFLOW_API_CONN_ID!r} to read the event log with")
    entries = api.get("/api/v2/eventLogs", switch_edit_query(after, before)).get("event_logs") or []
    return variable_edits(entries, AUTO_FAILOVER_VARIABLE)


def switch_edit_query(after: datetime | None, before: datetime) -> dict[str, Any]:
    """``GET /api/v2/eventLogs`` parameters: Variable edits in (after, before), newest first."""
    from shadowing.health.switch import VARIABLE_EVENTS

    params: dict[str, Any] = {"included_events": list(VARIABLE_EVENTS), "before": before.isoformat(),
                              "order_by": "-when", "limit": 100}
    if after is not None:
        params["after"] = after.isoformat()
    return params


def assess(region: str, context: dict[str, Any]) -> dict[str, Any]:
    from shadowing.health.monitor import assess_region
    from shadowing.health.switch import audit_switch
    from shadowing.orchestration.clients import aws_client, warehouse_engine
    from shadowing.settings import primary_regions

    engine = warehouse_engine()
    policy = policy_from(context["params"])
    auto = auto_failover_setting(region, primary_regions())
    now = utcnow()  # when the alarm is read: checks are spaced in wall-clock time (see assess_region)
    # Who flipped the switch is audited before the switch is acted on.
    audit_switch(engine, region, auto, run_id=context["run_id"], now=now, find_edits=switch_edits)
    probes = probes_from_variable(region)
    # Any queued or running regional_failover run counts, not only the ones this monitor triggered: a person's
    # manual run queued for this region has not taken the lock yet, and a trigger now would queue a second
    # failover behind it (regional_failover runs one at a time, so for another region's run this only waits
    # as the triggered run would have waited anyway).
    ti = context["ti"]
    running = ti.get_dr_count(dag_id=FAILOVER_DAG_ID, states=["queued", "running"]) > 0
    result = assess_region(engine, aws_client("cloudwatch", region), region, policy=policy, auto_failover=auto,
                           probes=probes, failover_dagrun_running=running, run_id=context["run_id"], now=now,
                           trigger_run_id=f"sensor__{region}__{now:%Y%m%dT%H%M%S}",
                           max_check_age=max_check_age(policy), check_interval=CHECK_INTERVAL,
                           trigger_took_effect=lambda decision: trigger_took_effect(ti, decision))
    return {**result, "monitor_run_id": context["run_id"]}


def utcnow() -> datetime:
    """The monitor's clock (one place, so a test can step it a check interval per run)."""
    return datetime.now(UTC)


def trigger_took_effect(ti: Any, decision: Any) -> bool:
    """Did a recorded trigger decision create its regional_failover run? Also True while it still may: its
    monitor run has not finished (the trigger task runs after ``assess``, and may be retrying). False only
    when the run is over and no failover run has the decided id: the trigger task failed (API down, the
    failover DAG broken or paused-and-deleted), so no cooldown may start from it."""
    failover_run_id = decision.detail.get("trigger_run_id")
    if failover_run_id and ti.get_dr_count(dag_id=FAILOVER_DAG_ID, run_ids=[failover_run_id]) > 0:
        return True
    return bool(decision.run_id) and ti.get_dr_count(dag_id=MONITOR_DAG_ID, run_ids=[decision.run_id],
                                                     states=["queued", "running"]) > 0


def max_check_age(policy: Any) -> timedelta:
    """Stored checks older than twice the window's span do not count: after a pause (or a monitor outage)
    a region is judged on fresh checks only."""
    return 2 * policy.window * CHECK_INTERVAL


def trigger_kwargs(assessments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TriggerDagRunOperator kwargs for every region whose decision is ``trigger``."""
    from shadowing.health.monitor import failover_conf

    out = [{"conf": failover_conf(a), "trigger_run_id": a["trigger_run_id"]}
           for a in assessments if a["action"] == "trigger"]
    for item in out:
        log.warning("triggering %s for %s (run %s)", FAILOVER_DAG_ID, item["conf"]["primary_region"],
                    item["trigger_run_id"])
    return out


def alert_summary(assessments: list[dict[str, Any]]) -> list[str]:
    return [f"{a['region']}: judged FAILED ({a['reason']})" for a in assessments if a["action"] == "alert"]


def on_alert_failure(context: dict[str, Any]) -> None:
    """on_failure_callback of the alert task: the hook where paging goes (log at ERROR here)."""
    exc = context.get("exception")
    log.error("SHADOWING ALERT: primary region failure without auto-failover: %s", exc)
