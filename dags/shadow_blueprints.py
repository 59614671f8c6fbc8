"""
### shadow_blueprints

Keeps every primary region's **blueprint** current. Scheduled on the assets `CAPACITY_FINGERPRINTS` or
`DEPENDENCY_GRAPHS` (whichever is updated), mapped over the configured primary → shadow region pairs:

**build** (latest *valid* fingerprint and graph + live inventory of the primary + what is pre-staged in the
shadow → blueprint plan) → **validate** (contract and cross-field rules; a failure is recorded as a readiness
failure and the current version stays) → **prestage** (data-free shadow resources: VPC, subnets, security
groups, launch templates, AMI copies, RDS read replicas — found by tags first, so a re-run creates nothing;
real ids are resolved into the blueprint) → **upsert** (a new SCD2 version only when the content hash changed;
publishes `BLUEPRINT_VERSIONS`) → **readiness** (freshness, AMIs, quotas, drift, completeness, pre-staging;
the region is ready only when all pass).

Pre-staging runs before the upsert so the stored blueprint carries the shadow's real ids (see
`shadowing.blueprint.refresh`).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from shadowing.orchestration.assets import BLUEPRINT_VERSIONS, CAPACITY_FINGERPRINTS, DEPENDENCY_GRAPHS
from shadowing.orchestration.blueprints import MAX_AGE_HOURS_RANGE
from shadowing.orchestration.defaults import DEFAULT_ARGS


@dag(
    dag_id="shadow_blueprints",
    schedule=(CAPACITY_FINGERPRINTS | DEPENDENCY_GRAPHS),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=["shadowing", "blueprint"],
    params={
        "max_age_hours": Param(24.0, type="number", minimum=MAX_AGE_HOURS_RANGE[0], maximum=MAX_AGE_HOURS_RANGE[1],
                               description="fingerprint/graph older than this fail the freshness check"),
        "prestage": Param(True, type="boolean", description="create/sync the data-free shadow resources"),
    },
)
def shadow_blueprints() -> None:
    @task
    def region_pairs() -> list[dict]:
        from shadowing.orchestration.blueprints import region_pairs_for_run

        return region_pairs_for_run()

    @task
    def build(pair: dict) -> dict:
        from shadowing.orchestration.blueprints import build as build_plan

        context = get_current_context()
        return build_plan(pair, context["run_id"], context["params"]["max_age_hours"])

    @task(retries=1)  # a validation failure is deterministic; the retry only covers a warehouse hiccup
    def validate(plan: dict) -> dict:
        from shadowing.orchestration.blueprints import validate as validate_plan

        return validate_plan(plan, get_current_context()["run_id"])

    @task
    def prestage(plan: dict) -> dict:
        from shadowing.orchestration.blueprints import prestage as prestage_plan

        return prestage_plan(plan, bool(get_current_context()["params"]["prestage"]))

    @task(outlets=[BLUEPRINT_VERSIONS])
    def upsert(plan: dict) -> dict:
        from shadowing.orchestration.blueprints import upsert as store

        context = get_current_context()
        stored = store(plan, context["run_id"])
        context["outlet_events"][BLUEPRINT_VERSIONS].extra = {
            "region": plan["primary_region"], "version": stored["stored"]["version"],
            "created": stored["stored"]["created"]}
        return stored

    @task
    def readiness(plan: dict) -> dict:
        from shadowing.orchestration.blueprints import readiness as check

        return check(plan, get_current_context()["run_id"])

    plans = build.expand(pair=region_pairs())
    readiness.expand(plan=upsert.expand(plan=prestage.expand(plan=validate.expand(plan=plans))))


shadow_blueprints()
