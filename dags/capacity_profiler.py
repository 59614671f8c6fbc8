"""
### capacity_profiler

Every few minutes, per primary region (mapped): read the CloudWatch metrics of the region's instances (tagged
`shadowing:service`) since the region's last valid fingerprint, fold them into it (the first run reads
`bootstrap_hours` of history at `bootstrap_period_seconds`, hourly by default; later runs fold at
`period_seconds`), validate the result with Great Expectations and store it in the warehouse table
`capacity_fingerprints`. The Asset `CAPACITY_FINGERPRINTS` is published only for a fingerprint this run stored:
a run with nothing new to read (a re-run, a run of an older interval) is *skipped* and publishes nothing; a
failed validation (e.g. a service whose utilisation reads above 100 %) is stored for audit, fails the task
naming the service and metric, and the previous valid fingerprint stays current.
A run reads only up to `settle_seconds` before the wall clock: CloudWatch takes a minute or two to ingest a
datapoint, and one that lands after its interval was read would be dropped as late (EC2 basic monitoring, at a
5-minute period, needs at least 600). A pause longer than `max_gap_hours` restarts like a bootstrap: the last
`max_gap_hours` at `bootstrap_period_seconds`, folded into the old fingerprint. A service without a sample for
`retire_after_days` (7) before the region's newest is retired from the fingerprint, and so no longer sized.
Freshness is validated against the wall clock: a window ending more than `max_window_age_seconds` (2 h) before
validation is an old interval, and a region whose newest sample is more than `max_data_lag_seconds` (30 min)
older than the window end has a CloudWatch that delivered nothing new: either fails the task naming the region
and the age, the fingerprint is stored as invalid and the last valid one stays current (so readiness sees its
true age). A change of `period_seconds` between runs first reads up to the new period's grid at a period on both
grids, so no CloudWatch period straddles two folds. Two workers storing overlapping windows (a zombie and its
retry) never make the older window current: it is stored as superseded, for audit.
Each GetMetricData call covers at most `window_periods` periods: small windows keep the emulator fast; on real
AWS, where GetMetricData is billed per metric per call, a larger value (fewer calls) is cheaper.
Schedule: env `SHADOWING_CAPACITY_SCHEDULE` (cron or preset; default every 5 minutes).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from shadowing.orchestration.assets import CAPACITY_FINGERPRINTS
from shadowing.orchestration.capacity import DEFAULT_MAX_DATA_LAG, DEFAULT_MAX_WINDOW_AGE, capacity_schedule
from shadowing.orchestration.defaults import DEFAULT_ARGS
from shadowing.settings import primary_regions

# CloudWatch accepts these periods (sub-minute ones for high-resolution metrics of the last 3 hours only).
_CLOUDWATCH_PERIOD = [{"enum": [1, 5, 10, 20, 30]}, {"multipleOf": 60}]


@dag(schedule=capacity_schedule(), start_date=datetime(2025, 1, 1), catchup=False, default_args=DEFAULT_ARGS,
     doc_md=__doc__, tags=["shadowing", "capacity"], max_active_runs=1,
     params={
         "period_seconds": Param(60, type="integer", minimum=1, anyOf=_CLOUDWATCH_PERIOD,
                                 description="CloudWatch period of the samples: 1, 5, 10, 20, 30 or a multiple "
                                             "of 60"),
         "bootstrap_hours": Param(168.0, type="number", exclusiveMinimum=0,
                                  description="history read by the first run of a region"),
         "bootstrap_period_seconds": Param(3600, type="integer", minimum=60, multipleOf=60,
                                           description="CloudWatch period of the first run's history (a multiple "
                                                       "of 60: CloudWatch returns nothing finer beyond 3 hours)"),
         "window_periods": Param(6, type="integer", minimum=1,
                                 description="periods per GetMetricData call (emulator: small; real AWS, "
                                             "billed per metric per call: larger is cheaper)"),
         "max_gap_hours": Param(168.0, type="number", exclusiveMinimum=0,
                                description="longest gap since the last valid fingerprint that is caught up"),
         "retire_after_days": Param(7.0, type="number", exclusiveMinimum=0,
                                    description="a service without a sample this long before the region's newest "
                                                "is retired from the fingerprint (no longer sized)"),
         "settle_seconds": Param(180, type="integer", minimum=0,
                                 description="read only up to this long before now: CloudWatch's ingestion delay"),
         "max_window_age_seconds": Param(int(DEFAULT_MAX_WINDOW_AGE.total_seconds()), type="integer", minimum=1,
                                         description="fail a fingerprint whose window ends longer than this before "
                                                     "the wall clock (at least settle_seconds + 2 periods)"),
         "max_data_lag_seconds": Param(int(DEFAULT_MAX_DATA_LAG.total_seconds()), type="integer", minimum=0,
                                       description="fail a fingerprint whose newest sample period ends longer than "
                                                   "this before its window end (CloudWatch delivered nothing new)"),
     })
def capacity_profiler() -> None:
    @task(outlets=[CAPACITY_FINGERPRINTS])
    def profile_region(region: str) -> dict:
        from datetime import UTC, timedelta

        from airflow.sdk.exceptions import AirflowSkipException

        from shadowing.orchestration.capacity import refresh_region

        ctx = get_current_context()
        params = ctx["params"]
        end = ctx.get("data_interval_end") or ctx.get("logical_date") or datetime.now(UTC)
        result = refresh_region(region, end=end, run_id=ctx["run_id"], period=int(params["period_seconds"]),
                                bootstrap=timedelta(hours=float(params["bootstrap_hours"])),
                                max_gap=timedelta(hours=float(params["max_gap_hours"])),
                                bootstrap_period=int(params["bootstrap_period_seconds"]),
                                window_periods=int(params["window_periods"]),
                                settle=timedelta(seconds=int(params["settle_seconds"])),
                                retire_after=timedelta(days=float(params["retire_after_days"])),
                                max_window_age=timedelta(seconds=int(params["max_window_age_seconds"])),
                                max_data_lag=timedelta(seconds=int(params["max_data_lag_seconds"])))
        if not result["landed"]:  # nothing stored: a success would publish the Asset for nothing
            raise AirflowSkipException(f"{region}: {result['note']} (fingerprint {result['id']} stays current)")
        ctx["outlet_events"][CAPACITY_FINGERPRINTS].extra = {"region": region, "fingerprint_id": result["id"]}
        return result

    profile_region.expand(region=primary_regions())


capacity_profiler()
