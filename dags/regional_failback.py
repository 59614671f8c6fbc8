"""
### Regional failback

The reverse of `regional_failover`, once the primary region's health has **held** for `hold_seconds`
(health observations written by `primary_health_monitor`): traffic back to the primary (Route 53 PRIMARY
records on the primary's targets again), replication direction reversed (planned and triggered: the promoted
shadow database feeds a new replica in the primary), the shadow's **launched** capacity removed (instances
tagged `shadowing:role=launched` of that failover; pre-staged parts are kept). The failback is logged as its
own row in `failover_events` (id `fb-…`, plan `{kind: failback, failback_of: <failover id>}`, its own timeline,
outcome and time until traffic is home); the failover's row gets a `failback` step naming it. Manual only;
type the primary region in *confirm_region*.

Only health observed **since the failover's outage** (its `detected_at`, else its start) counts towards the hold.
A dry run, a drill or a failover already failed back is refused (nothing to fail back). PRIMARY records go back
exactly as the failover found them (an alias keeps the primary load balancer's hosted zone). The failback holds
the region's lock under its own `fb-…` id; bad Params fail at once (no retries) and any failed step fails the run.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, dag, task

from shadowing.orchestration import failover as fo
from shadowing.orchestration.assets import FAILOVER_EVENTS
from shadowing.orchestration.defaults import FAILOVER_DEFAULT_ARGS


@dag(
    dag_id="regional_failback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=FAILOVER_DEFAULT_ARGS,
    params=fo.failback_params(),
    tags=["shadowing", "failover"],
    doc_md=__doc__,
)
def regional_failback() -> None:
    @task
    def select_failover(**context) -> dict:  # type: ignore[no-untyped-def]
        return fo.failback_select(context)

    @task
    def check_primary_health(state: dict) -> dict:
        return fo.failback_step("health", state)

    @task
    def restore_traffic(state: dict) -> dict:
        return fo.failback_step("traffic", state)

    @task
    def reverse_replication(state: dict) -> dict:
        return fo.failback_step("replication", state)

    @task
    def remove_launched_capacity(state: dict) -> dict:
        return fo.failback_step("capacity", state)

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[FAILOVER_EVENTS])
    def finalize(**context) -> dict:  # type: ignore[no-untyped-def]
        """Close the failback's event (outcome, time until traffic is home) and release the lock."""
        return fo.failback_release(context)

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        raise RuntimeError("a failback step failed (see the failback event and the failed task's log)")

    state = select_failover()
    health = check_primary_health(state)
    traffic = restore_traffic(state)
    replication = reverse_replication(state)
    capacity = remove_launched_capacity(state)
    health >> traffic >> replication >> capacity
    closed = finalize()
    capacity >> closed
    # finalize (ALL_DONE) is a leaf that succeeds after a failed step: without a failing leaf the run would be
    # marked successful although the failback failed. ONE_FAILED also fires on upstream_failed.
    [health, traffic, replication, capacity, closed] >> watcher()


regional_failback()
