"""Airflow glue of the failover DAGs: Params for the trigger form, connections → FailoverEnv, task bodies.

Task bodies stay a few lines: they turn the Airflow context into a :class:`FailoverRequest` /
:class:`FailoverState` and call :mod:`shadowing.failover.steps` (the same functions the CLI runs directly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param

from shadowing import settings
from shadowing.orchestration.defaults import AWS_CONN_ID, FAILBACK_DAG_ID, FAILOVER_DAG_ID, fail_without_retry

if TYPE_CHECKING:
    from shadowing.failover.steps import FailoverEnv

log = logging.getLogger(__name__)
FAILBACK_HOLD_SECONDS = 900


def bad_input_fails_fast() -> AbstractContextManager[None]:
    """Bad Params (or a blueprint version that is gone) fail the task at once: a retry fails the same way and
    only makes the SRE wait through the retry delays."""
    from shadowing.errors import InputError

    return fail_without_retry(InputError)


def _primaries() -> list[str]:
    try:
        return settings.primary_regions()
    except ValueError:  # a bad SHADOWING_REGION_PAIRS must not break DAG parsing; prepare reports it
        return ["us-east-1"]


def failover_params() -> dict[str, Param]:
    primaries = _primaries()
    return {
        "primary_region": Param(primaries[0], type="string", enum=primaries, title="Primary region",
                                description="The region that failed (or that this dry run / drill is about)."),
        "shadow_region": Param(None, type=["null", "string"], title="Shadow region",
                               description="Leave empty to use the blueprint's shadow region."),
        "mode": Param("dry_run", type="string", enum=["dry_run", "drill", "live"], title="Mode",
                      values_display={"dry_run": "Dry run: plan only, no change",
                                      "drill": "Drill: launch under drill tags, verify, tear down",
                                      "live": "LIVE: launch, move production traffic, replicate"},
                      description="dry_run changes nothing; drill never touches production traffic; "
                                  "live does everything."),
        "capacity_percent": Param(100, type="integer", minimum=1, maximum=200, title="Capacity (%)",
                                  description="Share of the blueprint's instance counts to launch."),
        "blueprint_version": Param(None, type=["null", "integer"], minimum=1, title="Blueprint version",
                                   description="Leave empty for the current version (pinned at the start)."),
        "reason": Param("", type="string", title="Reason", description="Why (recorded with the event)."),
        "confirm_region": Param("", type="string", title="Confirm region (live only)",
                                description="A manual LIVE failover requires typing the primary region's "
                                            "name here."),
        "trigger": Param("manual", type="string", enum=["manual", "sensor"], title="Trigger",
                         description="manual (UI/API) or sensor (the health monitor)."),
        "detected_at": Param(None, type=["null", "string"], title="Detected at",
                             description="ISO-8601 time the outage was detected (recovery time is measured "
                                         "from it; else from the trigger)."),
    }


def failback_params() -> dict[str, Param]:
    primaries = _primaries()
    return {
        "primary_region": Param(primaries[0], type="string", enum=primaries, title="Primary region",
                                description="The recovered primary region traffic returns to."),
        "failover_id": Param(None, type=["null", "string"], title="Failover id",
                             description="The failover to undo; empty = the latest succeeded live one."),
        "hold_seconds": Param(FAILBACK_HOLD_SECONDS, type="integer", minimum=0, title="Health hold (s)",
                              description="How long the primary must have been healthy (health observations)."),
        "confirm_region": Param("", type="string", title="Confirm region",
                                description="Type the primary region's name to confirm the failback."),
    }


def env() -> FailoverEnv:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from shadowing.failover.clients import FailoverClients
    from shadowing.failover.steps import FailoverEnv
    from shadowing.orchestration.clients import warehouse_engine

    # One hook (one connection lookup) and one boto3 session per region for the whole task: a hook per client
    # re-reads the connection and a session per client reloads every service model (seconds per task).
    hook = AwsBaseHook(aws_conn_id=AWS_CONN_ID)
    sessions: dict[str, Any] = {}

    def make(service: str, region: str, config: Any) -> Any:
        if region not in sessions:
            sessions[region] = hook.get_session(region_name=region)
        return sessions[region].client(service, region_name=region, config=config, verify=hook.verify,
                                       endpoint_url=hook.conn_config.get_service_endpoint_url(service_name=service))

    return FailoverEnv(clients=FailoverClients(make), engine=warehouse_engine())


def _run_id(context: Any) -> str:
    return str(context["dag_run"].run_id)


def prepare(context: Any) -> dict[str, Any]:
    with bad_input_fails_fast():
        return _prepare(context)


def _prepare(context: Any) -> dict[str, Any]:
    from shadowing.failover.identity import failover_id
    from shadowing.failover.steps import FailoverRequest, prepare

    params = context["params"]
    run_id = _run_id(context)
    request = FailoverRequest(
        primary_region=params["primary_region"], mode=params["mode"], shadow_region=params.get("shadow_region"),
        capacity_percent=int(params.get("capacity_percent") or 100),
        blueprint_version=params.get("blueprint_version"), reason=params.get("reason") or "",
        confirm_region=params.get("confirm_region") or "", trigger=params.get("trigger") or "manual",
        detected_at=params.get("detected_at") or _trigger_time(context),
        triggered_by=triggered_by(context))
    state = prepare(env(), request, failover_id=failover_id(context["dag"].dag_id, run_id), dag_run_id=run_id,
                    allowed_primaries=_primaries(), run_ended=run_ended(context))
    return state.to_dict()


TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def run_ended(context: Any) -> Callable[[Any], str | None]:
    """For stale-lock detection: the terminal state of the DAG run that recorded a lock holder's event (asked
    from Airflow through the task's API), or None while it runs or when Airflow does not know the run (a
    failover run by the CLI)."""
    ti = context["ti"]

    def ended(event: Any) -> str | None:
        from shadowing.failover.failback import is_failback

        dag_id = FAILBACK_DAG_ID if is_failback(event) else FAILOVER_DAG_ID
        try:
            state = str(ti.get_dagrun_state(dag_id=dag_id, run_id=event.dag_run_id))
        except Exception as exc:  # unknown run (CLI), or the API unreachable: not provably over
            log.info("state of %s run %s unknown (%s): lock not reclaimed", dag_id, event.dag_run_id, exc)
            return None
        state = state.rsplit(".", 1)[-1].lower()
        return state if state in TERMINAL_RUN_STATES else None

    return ended


def triggered_by(context: Any) -> str:
    """Who started this run, for the failover event: the health monitor (and its run) for a sensor trigger,
    else the user Airflow authenticated (UI/API/CLI); a monitor run started by hand names that user too."""
    run = context["dag_run"]
    user = getattr(run, "triggering_user_name", None)
    if (context["params"].get("trigger") or "manual") == "sensor":
        monitor_run = (getattr(run, "conf", None) or {}).get("monitor_run_id")
        who = f"primary_health_monitor run {monitor_run}" if monitor_run else "primary_health_monitor"
        return f"{who} (started by {user})" if user else who
    return user or f"unknown ({getattr(run, 'run_type', None) or 'unknown'} run {run.run_id})"


def _trigger_time(context: Any) -> str | None:
    """Without a detection time, recovery is measured from when the run was triggered (queued)."""
    run = context["dag_run"]
    stamp = getattr(run, "queued_at", None) or getattr(run, "run_after", None) or getattr(run, "start_date", None)
    return stamp.isoformat() if stamp is not None else None


def run_step(step: str, state: dict[str, Any], launched: dict[str, Any] | None = None) -> dict[str, Any]:
    with bad_input_fails_fast():
        return _run_step(step, state, launched)


def _run_step(step: str, state: dict[str, Any], launched: dict[str, Any] | None = None) -> dict[str, Any]:
    from shadowing.failover import steps
    from shadowing.failover.steps import FailoverState

    if step == "network":
        return steps.configure_network(env(), FailoverState.from_dict(state), launched)
    functions = {"preflight": steps.run_preflight, "launch": steps.launch, "network": steps.configure_network,
                 "traffic": steps.redirect_traffic, "replication": steps.trigger_replication,
                 "verify": steps.verify_failover, "teardown": steps.teardown_drill, "finalize": steps.finalize}
    return functions[step](env(), FailoverState.from_dict(state))


def finalize(context: Any) -> dict[str, Any]:
    state = context["ti"].xcom_pull(task_ids="prepare")
    if not state:
        # prepare may have taken the lock and died before returning: release what this run holds, if anything.
        from shadowing.failover.identity import failover_id
        from shadowing.warehouse import operations as ops

        primary = context["params"]["primary_region"]
        own = failover_id(context["dag"].dag_id, _run_id(context))
        if ops.release_failover_lock(env().engine, primary, own):
            log.warning("released %s's lock held by %s (prepare did not complete)", primary, own)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("prepare did not complete: no failover event to close")  # a retry cannot help
    return run_step("finalize", state)


# ─────────────────────────────────────────── failback ───────────────────────────────────────────

def failback_select(context: Any) -> dict[str, Any]:
    with bad_input_fails_fast():
        return _failback_select(context)


def _failback_select(context: Any) -> dict[str, Any]:
    from shadowing.errors import InputError
    from shadowing.failover.failback import is_failback, open_failback, select_failover, state_of
    from shadowing.failover.identity import failback_id
    from shadowing.failover.steps import take_lock

    params = context["params"]
    primary = params["primary_region"]
    if (params.get("confirm_region") or "").strip() != primary:
        raise InputError(f"type the primary region ({primary}) to confirm the failback", field="confirm_region")
    environment = env()
    event = select_failover(environment, primary, params.get("failover_id"))
    if is_failback(event):  # refused before the lock is taken: nothing to release afterwards
        raise InputError(f"{event.failover_id} is a failback, not a failover", field="failover_id")
    state = state_of(event)
    run_id = _run_id(context)
    event_id = failback_id(context["dag"].dag_id, run_id)
    # The lock is held under the failback's own event id, so a lock left by a crashed failback is recognised
    # as stale like a failover's (its event closed, or its DAG run over).
    take_lock(environment, primary, event_id, mode="live", run_ended=run_ended(context))
    try:
        state.extra = {"lock_id": event_id, "hold_seconds": int(params.get("hold_seconds") or 0)}
        state = open_failback(environment, state, event_id=event_id, dag_run_id=run_id,
                              triggered_by=getattr(context["dag_run"], "triggering_user_name", None))
    except BaseException:
        from shadowing.warehouse import operations as ops

        ops.release_failover_lock(environment.engine, primary, event_id)
        raise
    return state.to_dict()


def failback_step(step: str, data: dict[str, Any]) -> dict[str, Any]:
    with bad_input_fails_fast():
        return _failback_step(step, data)


def _failback_step(step: str, data: dict[str, Any]) -> dict[str, Any]:
    from shadowing.failover import failback
    from shadowing.failover.steps import FailoverState

    state = FailoverState.from_dict(data)
    environment = env()
    if step == "health":
        return failback.check_primary_health(environment, state, float(state.extra.get("hold_seconds", 0)))
    functions = {"traffic": failback.restore_traffic, "replication": failback.reverse_replication,
                 "capacity": failback.remove_launched_capacity}
    return functions[step](environment, state)


def failback_release(context: Any) -> dict[str, Any]:
    from shadowing.failover.failback import finish_failback
    from shadowing.failover.steps import FailoverState
    from shadowing.warehouse import operations as ops

    data = context["ti"].xcom_pull(task_ids="select_failover")
    environment = env()
    if not data:  # select_failover failed (or died after taking the lock): release what this run may hold
        from shadowing.failover.identity import failback_id

        own = failback_id(context["dag"].dag_id, _run_id(context))
        return {"released": ops.release_failover_lock(environment.engine, context["params"]["primary_region"], own)}
    try:
        summary = finish_failback(environment, FailoverState.from_dict(data))
    finally:
        released = ops.release_failover_lock(environment.engine, data["primary_region"], data["extra"]["lock_id"])
    return {**summary, "released": released, "failover_id": data["failover_id"]}
