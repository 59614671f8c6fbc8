"""
### primary_health_monitor

Every minute, per primary region (mapped): read the region-health CloudWatch alarm(s)
(`shadowing-region-health-<region>`) and the optional HTTP probes (Variable `shadowing_health_probes`,
`{region: [url, …]}`), store the observation, and judge the region over the stored history: **failed after
N of the last M checks failed** (Params `failures_required` / `window`, else Variable `shadowing_health_policy`,
else 3 of 5), with a **cooldown** (`cooldown_minutes`, default 30) so nothing flaps.

When a region is judged failed and auto-failover is on for it (Variable `shadowing_auto_failover`,
`{"us-east-1": true}`; off by default), `regional_failover` is triggered with conf
`{primary_region, mode: "live", trigger: "sensor", detected_at}` — never while a failover of that region is
running (failover lock table or any queued/running `regional_failover` run), never while the region is already
failed over (a live failover moved its traffic to the shadow and no failback of it succeeded: decision
`suppressed_failed_over`, naming that failover, however long ago it was) and never within the cooldown. The
cooldown starts from a trigger that created its `regional_failover` run (or from any live failover): a trigger
task that failed (API down, the failover DAG broken) leaves no cooldown behind, the next failing check triggers
again and its decision names the trigger that created no run.
With auto-failover off the decision is recorded and the `alert` task fails (its `on_failure_callback` is
where paging goes), unless the region is already failed over (the outage is handled). Every decision is audited in `auto_failover_audit`, and so is every flip of the switch
(`switch_enabled` / `switch_disabled`, seen by the first run after it) with who made it: the user Airflow's
event log names for the Variable's edit (read through the `airflow_api` connection, a viewer suffices), else
`unknown (observed by primary_health_monitor run …)`. A failover it triggers names this run as its trigger.

**What counts.** An alarm in ALARM, or the CloudWatch API unreachable or answering 5xx, is a failing check; a
missing alarm, INSUFFICIENT_DATA, a throttled or refused (4xx: access denied, expired credentials) API call is
*unknown*: never a failure on its own (the check counts as not failing, its state is stored). A retried or
re-run `assess` replays its first attempt (one check never counts twice; a recorded trigger is re-issued under
the same run id). Checks are samples in wall-clock time: of runs closer than half a minute (manual runs
bunched together) only the newest counts, so three runs in 20 s are one check, not 3 of 5. Stored checks older
than 2 × window minutes, or newer than now (a clock stepped back), are not counted. Never two failovers for one
outage: any queued or running `regional_failover` run suppresses a trigger, a region whose shadow already
serves is never failed over again, and a live failover started by anyone (a person, the CLI) starts the
cooldown like a trigger does.

**Malformed Variables** fail `assess` naming the Variable and the field (`shadowing_health_policy`: unknown
keys, N > M, non-integers, NaN; `shadowing_health_probes`: not `{region: [http(s) URLs]}`); the policy never
silently falls back to the defaults. `shadowing_auto_failover` unreadable, not an object, or naming regions
that are not primaries → auto-failover stays OFF for them, logged at ERROR.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from shadowing.orchestration.defaults import DEFAULT_ARGS
from shadowing.orchestration.health import CHECK_INTERVAL
from shadowing.settings import primary_regions


@dag(
    dag_id="primary_health_monitor",
    schedule=CHECK_INTERVAL,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(seconds=5)},
    tags=["shadowing", "health"],
    params={
        "failures_required": Param(None, type=["null", "integer"], minimum=1,
                                   description="N: failing checks that fail a region (empty: Variable/3)"),
        "window": Param(None, type=["null", "integer"], minimum=1,
                        description="M: checks considered (empty: Variable/5)"),
        "cooldown_minutes": Param(None, type=["null", "number"], minimum=0,
                                  description="no new trigger/alert within this time (empty: Variable/30)"),
    },
)
def primary_health_monitor() -> None:
    @task
    def assess(region: str) -> dict:
        from shadowing.orchestration.health import assess as assess_region

        return assess_region(region, get_current_context())

    @task
    def failover_requests(assessments: list[dict]) -> list[dict]:
        from shadowing.orchestration.health import trigger_kwargs

        return trigger_kwargs(list(assessments))

    def _on_alert_failure(context) -> None:  # type: ignore[no-untyped-def]
        from shadowing.orchestration.health import on_alert_failure

        on_alert_failure(context)

    @task(on_failure_callback=_on_alert_failure)
    def alert(assessments: list[dict]) -> list[str]:
        from airflow.exceptions import AirflowFailException

        from shadowing.orchestration.health import alert_summary

        failed = alert_summary(list(assessments))
        if failed:
            raise AirflowFailException("; ".join(failed))
        return failed

    assessments = assess.expand(region=primary_regions())
    TriggerDagRunOperator.partial(
        task_id="trigger_failover", trigger_dag_id="regional_failover", wait_for_completion=False,
        skip_when_already_exists=True,
    ).expand_kwargs(failover_requests(assessments))
    alert(assessments)


primary_health_monitor()
