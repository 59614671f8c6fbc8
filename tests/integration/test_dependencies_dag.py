"""dependency_mapper end to end: dag.test() against the moto server with seeded instances and log lines."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
FORMAT = ("${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} "
          "${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${tcp-flags} ${flow-direction}")


def seed(endpoint: str, now: datetime) -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    logs = boto3.client("logs", region_name=REGION, endpoint_url=endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ips = {"web": "10.0.1.10", "api": "10.0.1.20", "db": "10.0.1.30"}
    for service, ip in ips.items():
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet,
                          PrivateIpAddress=ip, TagSpecifications=[{"ResourceType": "instance", "Tags": [
                              {"Key": "shadowing:service", "Value": service}]}])
    for group in ("/shadowing/vpc-flow-logs", "/shadowing/discovery"):
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
    ec2.create_flow_logs(ResourceIds=[vpc], ResourceType="VPC", TrafficType="ALL",
                         LogDestinationType="cloud-watch-logs", LogGroupName="/shadowing/vpc-flow-logs",
                         DeliverLogsPermissionArn="arn:aws:iam::123456789012:role/flow-logs", LogFormat=FORMAT)
    events = []
    base = int((now + timedelta(minutes=1)).timestamp())  # after the instances launched
    for minute in range(5):
        t = base + 60 * minute
        for caller, callee, port in (("web", "api", 8080), ("api", "db", 5432)):
            sport = 40000 + minute
            events.append(f"5 123456789012 eni-1 {ips[caller]} {ips[callee]} {sport} {port} 6 5 900 {t} {t + 60} "
                          f"ACCEPT OK {2 if minute == 0 else 0} egress")
            events.append(f"5 123456789012 eni-2 {ips[callee]} {ips[caller]} {port} {sport} 6 5 4000 {t} {t + 60} "
                          f"ACCEPT OK {18 if minute == 0 else 0} ingress")
        events.append(f"5 123456789012 eni-1 198.51.100.7 {ips['web']} 41000 22 6 1 44 {t} {t + 60} REJECT OK 2 "
                      "ingress")
    logs.put_log_events(logGroupName="/shadowing/vpc-flow-logs", logStreamName="s", logEvents=[
        {"timestamp": (base + i) * 1000, "message": m} for i, m in enumerate(events)])
    stamp = (now + timedelta(minutes=8)).strftime("%Y/%m/%d %H:%M:%S")
    logs.put_log_events(logGroupName="/shadowing/discovery", logStreamName="s", logEvents=[
        {"timestamp": (base + 100) * 1000, "message": f'{stamp} [INFO] agent: Synced service "srv-api"'},
        {"timestamp": (base + 101) * 1000,
         "message": f"{stamp} [DEBUG] http: Request GET /v1/health/service/srv-api?passing=1 (1ms) "
                    f"from={ips['web']}:50000"}])
    return ips


@pytest.mark.slow
def test_dag_stores_a_valid_graph(aws_conn_env: str, warehouse_conn_env: str, airflow_db: str,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "docker-compose.yml").write_text(
        "services:\n  web:\n    image: web\n    environment:\n      API_URL: http://api:8080\n"
        "  api:\n    image: api\n    environment:\n      DATABASE_URL: postgres://db:5432/app\n"
        "  db:\n    image: postgres\n")
    monkeypatch.setenv("SHADOWING_APP_CONFIGS", str(configs))
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", f"{REGION}=us-west-2")
    now = datetime.now(UTC).replace(microsecond=0)
    seed(aws_conn_env, now)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "dependency_mapper.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("dependency_mapper")
    started = time.monotonic()
    run = dag.test(logical_date=now + timedelta(minutes=15))  # interval: the hour before
    assert run.state == "success", run.state
    assert time.monotonic() - started < 120

    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.store import latest_valid_graph

    stored = latest_valid_graph(open_warehouse(warehouse_conn_env), REGION)
    assert stored is not None
    graph = stored.payload
    edges = {(e["source"], e["target"]): {x["kind"] for x in e["evidence"]} for e in graph["edges"]}
    assert edges[("web", "api")] >= {"config", "flow", "discovery"}, (graph["graph"]["window"], graph["graph"]["stats"])
    assert edges[("api", "db")] >= {"config", "flow"}
    assert graph["graph"]["launch_tiers"] == [["db"], ["api"], ["web"]]
    assert graph["graph"]["stats"]["flow_rejected"] == 0  # the scan came from outside the inventory
    assert graph["graph"]["stats"]["flow_outside_inventory"] == 5
