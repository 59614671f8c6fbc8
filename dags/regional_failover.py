"""
### Regional failover

Brings the **shadow region** up from the pinned blueprint version and (in `live` mode) moves traffic to it.
Triggered from the trigger form, by `primary_health_monitor` (conf `{primary_region, mode: "live",
trigger: "sensor", detected_at}`) or through the REST API.

| mode | what happens |
|---|---|
| `dry_run` (default) | no mutating call: the full plan (what launches where, in which order, with which capacity) goes to the task log and the failover event; preflight probes with `DryRun=True` |
| `drill` | launches under `shadowing:mode=drill` tags, wires the network, verifies, never touches production DNS, and **always tears down** |
| `live` | launch → network → Route 53 redirect → replication trigger → verify |

Steps: **prepare** (resolve shadow region, pin blueprint version, take the per-primary lock, open the event)
→ **preflight** → **launch** (tier by tier, parallel inside a tier; running + healthy behind the load balancer)
→ **network** → **traffic** → **replication** (triggered, not awaited) → **verify** → **finalize** (event
outcome, recovery time from `detected_at` or trigger time; lock released). Every task is idempotent: a retry,
a cleared task or a killed worker converges to exactly the blueprint (resources are counted by failover-id tags
before anything is created). A manual `live` failover requires typing the primary region in *confirm_region*.

The per-primary lock is re-checked by every mutating step (a task cleared after its run finished cannot act
beside a newer failover) and a lock left by a crashed run is reclaimed once its event is closed or Airflow
reports its run finished. A manual `live` failover of a region that is already failed over (traffic moved, not
failed back) is refused (the monitor suppresses its own triggers then). Bad Params fail at once, without
retries; a drill whose teardown failed is a failed drill.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, dag, task

from shadowing.orchestration import failover as fo
from shadowing.orchestration.assets import FAILOVER_EVENTS
from shadowing.orchestration.defaults import FAILOVER_DEFAULT_ARGS


@dag(
    dag_id="regional_failover",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=FAILOVER_DEFAULT_ARGS,
    params=fo.failover_params(),
    tags=["shadowing", "failover"],
    doc_md=__doc__,
)
def regional_failover() -> None:
    @task
    def prepare(**context) -> dict:  # type: ignore[no-untyped-def]
        return fo.prepare(context)

    @task
    def preflight(state: dict) -> dict:
        return fo.run_step("preflight", state)

    @task
    def launch(state: dict) -> dict:
        return fo.run_step("launch", state)

    @task
    def configure_network(state: dict, launched: dict) -> dict:
        return fo.run_step("network", state, launched)

    @task
    def redirect_traffic(state: dict) -> dict:
        return fo.run_step("traffic", state)

    @task
    def trigger_replication(state: dict) -> dict:
        return fo.run_step("replication", state)

    @task
    def verify(state: dict) -> dict:
        return fo.run_step("verify", state)

    @task
    def teardown_drill(state: dict) -> dict:
        return fo.run_step("teardown", state)

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[FAILOVER_EVENTS])
    def finalize(**context) -> dict:  # type: ignore[no-untyped-def]
        return fo.finalize(context)

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)  # it always raises: a retry only delays the verdict
    def watcher() -> None:
        raise RuntimeError("a failover step failed (see the failover event and the failed task's log)")

    state = prepare()
    launched = launch(state)
    network = configure_network(state, launched)
    traffic = redirect_traffic(state)
    replication = trigger_replication(state)
    verified = verify(state)
    preflight_done = preflight(state)
    preflight_done >> launched >> network >> traffic >> replication >> verified
    teardown = teardown_drill(state).as_teardown(setups=[state, launched])
    verified >> teardown
    closed = finalize()
    teardown >> closed
    # Not directly downstream of the setups (Airflow requires ALL_SUCCESS there); ONE_FAILED also fires on
    # upstream_failed, so a failed prepare/launch still reaches it through the next step.
    # The teardown too: a failed drill teardown leaves drill capacity running (teardowns do not fail a run).
    [preflight_done, network, traffic, replication, verified, teardown, closed] >> watcher()


regional_failover()
