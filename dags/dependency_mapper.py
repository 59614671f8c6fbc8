"""
### dependency_mapper

Hourly, per primary region (mapped): read the application's configuration (local folder or S3 prefix), the
EC2 inventory (private IPs tagged `shadowing:service`, valid from launch time), VPC flow logs and discovery
logs from CloudWatch Logs for the data interval; build the dependency graph (evidence from the last valid graph
decays into it), validate it (Great Expectations edge suite + graph checks), store it in the warehouse table
`dependency_graphs` (an invalid graph is stored for inspection but never becomes current) and publish the
`DEPENDENCY_GRAPHS` asset for each region whose graph is valid.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task, task_group

from shadowing.orchestration.assets import DEPENDENCY_GRAPHS
from shadowing.orchestration.defaults import DEFAULT_ARGS
from shadowing.settings import app_configs_location, primary_regions


@dag(
    dag_id="dependency_mapper",
    schedule=timedelta(hours=1),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=["shadowing", "dependencies"],
    params={
        "configs_location": Param(app_configs_location(), type="string",
                                  description="folder or s3://bucket/prefix of the application configs"),
        "half_life_hours": Param(24.0, type="number", description="evidence half-life across runs"),
        "min_windows": Param(2, type="integer", minimum=1, description="flow windows an edge needs"),
    },
)
def dependency_mapper() -> None:
    @task_group(group_id="region")
    def per_region(region: str) -> None:
        @task
        def build_graph(region: str) -> dict:
            from shadowing.orchestration.dependencies import build_region_graph, window

            context = get_current_context()
            start, end = window(context)
            params = context["params"]
            return build_region_graph(region, params["configs_location"], start, end,
                                      float(params["half_life_hours"]), int(params["min_windows"]))

        @task(retries=0)
        def validate_and_store(graph: dict) -> dict:
            from shadowing.orchestration.dependencies import validate_and_store as store

            return store(graph, get_current_context()["run_id"])

        @task(outlets=[DEPENDENCY_GRAPHS])
        def publish(stored: dict) -> dict:
            context = get_current_context()
            context["outlet_events"][DEPENDENCY_GRAPHS].extra = {
                "region": stored["region"], "graph_id": stored["graph_id"]}
            return stored

        publish(validate_and_store(build_graph(region)))

    per_region.expand(region=primary_regions())


dependency_mapper()
