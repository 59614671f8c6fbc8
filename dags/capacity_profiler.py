"""Capacity profiler: every few minutes, per primary region, fold CloudWatch metrics into the fingerprint.

Each mapped task reads only its data interval, folds it into the region's last valid fingerprint, validates
it with Great Expectations and stores it in the warehouse table `capacity_fingerprints`. The Asset
CAPACITY_FINGERPRINTS is published only when the fingerprint is valid; a failed validation is stored for
audit and the previous valid fingerprint stays current. Schedule: env SHADOWING_CAPACITY_SCHEDULE
(default every 5 minutes).
"""

from __future__ import annotations

import os

from airflow.sdk import dag, get_current_context, task

from shadowing.orchestration.assets import CAPACITY_FINGERPRINTS
from shadowing.orchestration.defaults import DEFAULT_ARGS
from shadowing.settings import primary_regions


@dag(schedule=os.environ.get("SHADOWING_CAPACITY_SCHEDULE", "*/5 * * * *"), catchup=False,
     default_args=DEFAULT_ARGS, doc_md=__doc__, tags=["shadowing", "capacity"], max_active_runs=1)
def capacity_profiler() -> None:
    @task
    def regions() -> list[str]:
        return primary_regions()

    @task(outlets=[CAPACITY_FINGERPRINTS])
    def profile_region(region: str) -> dict:
        from shadowing.orchestration.capacity import refresh_region

        ctx = get_current_context()
        return refresh_region(region, start=ctx["data_interval_start"], end=ctx["data_interval_end"],
                              run_id=ctx["run_id"])

    profile_region.expand(region=regions())


capacity_profiler()
