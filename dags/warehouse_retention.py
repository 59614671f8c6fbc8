"""
### warehouse_retention

Daily: prune the artefact tables `capacity_fingerprints` and `dependency_graphs`. The capacity profiler stores
a fingerprint every 5 minutes per region (a 500-instance region's is ~3.7 MB), so keeping every row costs about
a gigabyte a day per region. Rows younger than `keep_days` are kept; older ones are deleted unless they are a
region's latest or latest valid row (what the refresh DAGs fold into and build from), a row a blueprint
version names as its source (blueprint history stays auditable), or, with `keep_daily`, a region's last valid
row of its UTC day. `dry_run` counts without deleting. The task returns what it deleted and kept, per table.
Schedule: env `SHADOWING_RETENTION_SCHEDULE` (default `@daily`); CLI: `python -m shadowing warehouse prune`.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from shadowing.orchestration.defaults import DEFAULT_ARGS


@dag(schedule=os.environ.get("SHADOWING_RETENTION_SCHEDULE", "@daily"), start_date=datetime(2025, 1, 1),
     catchup=False, default_args=DEFAULT_ARGS, doc_md=__doc__, tags=["shadowing", "warehouse"], max_active_runs=1,
     params={
         "keep_days": Param(7.0, type="number", exclusiveMinimum=0, title="Keep days",
                            description="every fingerprint and graph younger than this is kept"),
         "keep_daily": Param(True, type="boolean", title="Keep one a day",
                             description="of older rows, keep each region's last valid one of every UTC day"),
         "dry_run": Param(False, type="boolean", title="Dry run", description="count, delete nothing"),
     })
def warehouse_retention() -> None:
    @task
    def prune_artifacts() -> list[dict]:
        from shadowing.orchestration.clients import warehouse_engine
        from shadowing.warehouse.retention import RetentionPolicy, prune_artifacts

        params = get_current_context()["params"]
        policy = RetentionPolicy(keep_days=float(params["keep_days"]), keep_daily=bool(params["keep_daily"]))
        return [r.as_dict() for r in prune_artifacts(warehouse_engine(), policy, dry_run=bool(params["dry_run"]))]

    prune_artifacts()


warehouse_retention()
