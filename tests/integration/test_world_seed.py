"""The emulated world against the real moto server (fixture `aws`): seed, read back, re-seed, chaos, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shadowing.aws import tags as T
from shadowing.aws.clients import client
from shadowing.cli import main
from shadowing.world.app import SHOPFRONT
from shadowing.world.live import chaos, export_world, publish_once
from shadowing.world.seeding import (
    DISCOVERY_LOG_GROUP,
    FLOW_LOG_GROUP,
    Seeder,
    SeedReport,
    alarm_name,
    seed_world,
)
from shadowing.world.state import WorldClients, load_state
from shadowing.world.traffic import V5_FIELDS, V5_LOG_FORMAT

# a short history keeps the test fast; the default (7 days) is measured by bench/, not here
FAST = dict(seed=1, history_days=0.05, secondary_history_days=0.02, flow_minutes=6)


def _instances(ec2, states=("pending", "running")) -> list[dict]:
    out = []
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": list(states)}]):
        out += [i for r in page["Reservations"] for i in r["Instances"]]
    return out


def _counts(c: WorldClients) -> dict[str, int]:
    return {
        "vpcs": len(c.ec2.describe_vpcs()["Vpcs"]),
        "subnets": len(c.ec2.describe_subnets(Filters=[{"Name": "tag-key", "Values": [T.WORLD]}])["Subnets"]),
        "sgs": len(c.ec2.describe_security_groups(Filters=[{"Name": "tag-key", "Values": [T.WORLD]}])["SecurityGroups"]),
        "images": len(c.ec2.describe_images(Owners=["self"])["Images"]),
        "templates": len(c.ec2.describe_launch_templates()["LaunchTemplates"]),
        "instances": len(_instances(c.ec2, ("pending", "running", "stopped", "terminated"))),
        "lbs": len(c.elbv2.describe_load_balancers()["LoadBalancers"]),
        "tgs": len(c.elbv2.describe_target_groups()["TargetGroups"]),
        "zones": len(c.route53.list_hosted_zones()["HostedZones"]),
        "health_checks": len(c.route53.list_health_checks()["HealthChecks"]),
        "alarms": len(c.cloudwatch.describe_alarms()["MetricAlarms"]),
        "dbs": len(c.rds.describe_db_instances()["DBInstances"]),
        "buckets": len(c.s3.list_buckets()["Buckets"]),
        "flow_logs": len(c.ec2.describe_flow_logs()["FlowLogs"]),
        "enis": len(c.ec2.describe_network_interfaces()["NetworkInterfaces"]),
    }


@pytest.fixture
def seeded(aws: str) -> tuple[WorldClients, SeedReport]:
    """A freshly seeded world for tests that change it."""
    c = WorldClients.connect(aws)
    return c, seed_world(c, **FAST)


@pytest.fixture(scope="module")
def world(moto_endpoint: str) -> tuple[WorldClients, SeedReport]:
    """One seeded world shared by the read-only tests below (they run before any test that resets moto)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"),
                           timeout=30).close()
    c = WorldClients.connect(moto_endpoint)
    return c, seed_world(c, **FAST)


def test_seed_creates_the_primary_region(world) -> None:
    c, report = world
    running = _instances(c.ec2)
    per_service = Counter(T.from_aws(i["Tags"])[T.SERVICE] for i in running)
    expected = {s.name: s.instances for s in SHOPFRONT.compute_services()}
    expected["recommendation"] = 2  # one replaced (terminated) + its replacement
    reuser = [s for s, n in per_service.items() if n == expected[s] + 1]
    assert len(reuser) == 1  # the service whose extra instance got the replaced instance's IP
    expected[reuser[0]] += 1
    assert dict(per_service) == expected
    for i in running:
        tags = T.from_aws(i["Tags"])
        assert tags[T.WORLD] == report.world_id and tags[T.ROLE] == "primary"
    images = c.ec2.describe_images(Owners=["self"])["Images"]
    assert {T.from_aws(i["Tags"])[T.SERVICE] for i in images} == {s.name for s in SHOPFRONT.compute_services()}
    # the replaced instance's IP now belongs to an instance of another service
    terminated = _instances(c.ec2, ("terminated",))
    assert len(terminated) == 1
    old_ip = T.from_aws(terminated[0]["Tags"])["shadowing:private-ip"]
    assert [i for i in running if i.get("PrivateIpAddress") == old_ip and
            T.from_aws(i["Tags"])[T.SERVICE] == reuser[0]]

    lb = c.elbv2.describe_load_balancers()["LoadBalancers"][0]
    tgs = c.elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
    assert len(tgs) == 2
    targets = c.elbv2.describe_target_health(TargetGroupArn=tgs[0]["TargetGroupArn"])["TargetHealthDescriptions"]
    assert len(targets) == 3

    zone = c.route53.list_hosted_zones()["HostedZones"][0]
    records = [r for r in c.route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
               if r.get("Failover")]
    assert {r["Failover"] for r in records} == {"PRIMARY", "SECONDARY"}
    primary = next(r for r in records if r["Failover"] == "PRIMARY")
    assert primary["AliasTarget"]["DNSName"].rstrip(".").lower() == lb["DNSName"].lower()

    alarm = c.cloudwatch.describe_alarms(AlarmNames=[alarm_name()])["MetricAlarms"][0]
    assert alarm["StateValue"] == "OK"
    db = c.rds.describe_db_instances()["DBInstances"][0]
    assert db["Engine"] == "postgres"
    assert T.from_aws(c.rds.list_tags_for_resource(ResourceName=db["DBInstanceArn"])["TagList"])[T.SERVICE] == "db"
    assert len(c.s3.list_buckets()["Buckets"]) == 2
    sgs = {g["GroupName"]: g for g in c.ec2.describe_security_groups()["SecurityGroups"]}
    catalog = sgs[f"{report.world_id}-catalog"]
    callers = {p["GroupId"] for perm in catalog["IpPermissions"] for p in perm["UserIdGroupPairs"]}
    assert sgs[f"{report.world_id}-search"]["GroupId"] in callers
    assert all(perm["FromPort"] == 8080 for perm in catalog["IpPermissions"])
    flow_log = c.ec2.describe_flow_logs()["FlowLogs"][0]
    assert flow_log["LogFormat"] == V5_LOG_FORMAT and flow_log["LogGroupName"] == FLOW_LOG_GROUP
    state = load_state(c.ssm)
    assert state is not None and state.world_id == report.world_id and state.history_seeded_until


def test_metrics_readable_through_get_metric_data(world) -> None:
    c, report = world
    assert report.metric_datums > 0
    inst = next(i for i in _instances(c.ec2) if T.from_aws(i["Tags"])[T.SERVICE] == "catalog")
    end = datetime.now(UTC) + timedelta(minutes=1)
    queries = [{"Id": f"m{k}", "MetricStat": {"Metric": {"Namespace": ns, "MetricName": name, "Dimensions": [
        {"Name": "InstanceId", "Value": inst["InstanceId"]}]}, "Period": 300, "Stat": "Average"}}
        for k, (ns, name) in enumerate([("AWS/EC2", "CPUUtilization"), ("CWAgent", "mem_used_percent"),
                                        ("Shadowing/App", "RequestLatency")])]
    res = c.cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=end - timedelta(hours=2), EndTime=end)
    by_id = {r["Id"]: r for r in res["MetricDataResults"]}
    assert len(by_id["m0"]["Values"]) >= 10 and all(0 <= v <= 100 for v in by_id["m0"]["Values"])
    assert by_id["m1"]["Values"] and by_id["m2"]["Values"]
    # a live publication adds 1-minute points and health, and moves the checkpoint
    result = publish_once(c, now=datetime.now(UTC) + timedelta(minutes=3))
    assert result.metric_datums > 0 and result.flow_events > 0


def test_metrics_run_on_at_one_minute_from_the_last_history_hour_to_the_seed_time(aws: str) -> None:
    """History is hourly (as in the demo) and live publishing starts where seeding stopped: the minutes since the
    last whole hour are seeded at one minute, so a fold reading the hour so far finds data up to the seed time.
    (That hole failed the demo's first capacity_profiler fold as stale when the stack came up late in an hour.)"""
    c = WorldClients.connect(aws)
    seeded_at = datetime.now(UTC).replace(minute=37, second=0, microsecond=0) - timedelta(hours=1)
    seed_world(c, seed=1, history_days=0.2, secondary_history_days=0.02, flow_minutes=6, history_step=3600,
               now=seeded_at)
    assert load_state(c.ssm).live_published_until == seeded_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    inst = next(i for i in _instances(c.ec2) if T.from_aws(i["Tags"])[T.SERVICE] == "catalog")
    hour = seeded_at.replace(minute=0)
    res = c.cloudwatch.get_metric_data(MetricDataQueries=[{"Id": "cpu", "MetricStat": {"Metric": {
        "Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
        "Dimensions": [{"Name": "InstanceId", "Value": inst["InstanceId"]}]}, "Period": 60, "Stat": "Average"}}],
        StartTime=hour - timedelta(hours=1), EndTime=seeded_at + timedelta(minutes=5), ScanBy="TimestampAscending")
    minutes = [t.astimezone(UTC) for t in res["MetricDataResults"][0]["Timestamps"]]
    assert minutes == [hour - timedelta(hours=1), *(hour + timedelta(minutes=k) for k in range(37))]


def test_flow_and_discovery_lines_in_cloudwatch_logs_parse(world) -> None:
    c, _ = world
    streams = c.logs.describe_log_streams(logGroupName=FLOW_LOG_GROUP)["logStreams"]
    assert len(streams) >= 20 and all(s["logStreamName"].startswith("eni-") for s in streams)
    fmt = c.ec2.describe_flow_logs()["FlowLogs"][0]["LogFormat"]
    fields = [f.strip("${}") for f in fmt.split()]
    assert fields == list(V5_FIELDS)
    events = c.logs.get_log_events(logGroupName=FLOW_LOG_GROUP, logStreamName=streams[0]["logStreamName"])["events"]
    assert events
    for e in events:
        parts = e["message"].split(" ")
        assert len(parts) == len(fields)
        rec = dict(zip(fields, parts, strict=True))
        assert rec["interface-id"] == streams[0]["logStreamName"] and rec["log-status"] in ("OK", "NODATA", "SKIPDATA")
    disc = c.logs.get_log_events(logGroupName=DISCOVERY_LOG_GROUP, logStreamName="consul-server")["events"]
    assert any("/v1/health/service/" in e["message"] for e in disc)


def test_export_and_truth_from_the_seeded_world(world, moto_endpoint: str, tmp_path: Path) -> None:
    c, report = world
    aws = moto_endpoint
    paths = export_world(c, tmp_path / "bundle", start=datetime.now(UTC) - timedelta(minutes=10))
    lines = Path(paths["flow_logs_v5"]).read_text().splitlines()
    assert lines[0].split() == list(V5_FIELDS) and len(lines) > 100
    truth = json.loads(Path(paths["truth"]).read_text())
    assert truth["world_id"] == report.world_id and truth["traffic_only_edges"]
    inv = Path(paths["inventory"]).read_text().splitlines()
    assert inv[0] == "ip,service,valid_from,valid_to" and len(inv) > 25
    assert main(["world", "truth", "--endpoint-url", aws, "--out", str(tmp_path / "t.json")]) == 0
    running = Counter(T.from_aws(i["Tags"])[T.SERVICE] for i in _instances(c.ec2))
    services = json.loads((tmp_path / "t.json").read_text())["services"]
    assert {n: s["instances"] for n, s in services.items() if not s["managed"]} == dict(running)


def test_publish_loop_exits_cleanly_on_sigterm(world, moto_endpoint: str) -> None:
    c, _ = world
    before = load_state(c.ssm).live_published_until
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "include")}
    proc = subprocess.Popen([sys.executable, "-m", "shadowing", "world", "publish", "--endpoint-url", moto_endpoint,
                             "--interval", "0.5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if b"published" in (proc.stderr.peek() if hasattr(proc.stderr, "peek") else b""):
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"published" in proc.stderr.read()
    assert load_state(c.ssm).live_published_until >= before


def test_reseed_is_idempotent_and_repairs_a_half_seeded_world(seeded) -> None:
    c, first = seeded
    before = _counts(c)
    again = seed_world(c, **FAST)
    assert dict(again.created) == {} and again.metric_datums == 0
    assert _counts(c) == before
    # simulate a run killed midway: an instance and a target group vanish, the alarm too
    victim = next(i for i in _instances(c.ec2) if T.from_aws(i["Tags"])[T.SERVICE] == "cart")
    c.ec2.terminate_instances(InstanceIds=[victim["InstanceId"]])
    c.ec2.delete_tags(Resources=[victim["InstanceId"]], Tags=[{"Key": T.WORLD}])
    c.cloudwatch.delete_alarms(AlarmNames=[alarm_name()])
    repaired = seed_world(c, **FAST)
    assert repaired.created["instance"] == 1 and repaired.created["alarm"] == 1
    running = Counter(T.from_aws(i["Tags"])[T.SERVICE] for i in _instances(c.ec2))
    assert running["cart"] >= SHOPFRONT.service("cart").instances
    # the step functions are individually idempotent too
    s = Seeder(c, SHOPFRONT, load_state(c.ssm), SeedReport(first.world_id))
    assert s.vpc() == load_state(c.ssm).vpc_id and s.report.created == {}


def test_chaos_fail_and_heal(seeded, aws: str) -> None:
    c, _ = seeded
    assert main(["world", "chaos", "--endpoint-url", aws, "--fail-primary"]) == 0
    alarm = c.cloudwatch.describe_alarms(AlarmNames=[alarm_name()])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    assert not _instances(c.ec2) and load_state(c.ssm).failed
    quiet = publish_once(c, now=datetime.now(UTC) + timedelta(minutes=2))
    assert not quiet.healthy and quiet.metric_datums == 0
    # re-seeding a failed world must not heal it behind chaos' back
    seed_world(c, **FAST)
    assert c.cloudwatch.describe_alarms(AlarmNames=[alarm_name()])["MetricAlarms"][0]["StateValue"] == "ALARM"
    healed = chaos(c, fail=False)
    assert healed["alarm_state"] == "OK" and healed["instances"] > 0
    assert c.cloudwatch.describe_alarms(AlarmNames=[alarm_name()])["MetricAlarms"][0]["StateValue"] == "OK"
    assert len(_instances(c.ec2)) == healed["instances"] and not load_state(c.ssm).failed


def test_dead_endpoint_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for argv in (["world", "seed", "--endpoint-url", url], ["world", "publish", "--endpoint-url", url, "--once"],
                 ["world", "chaos", "--endpoint-url", url, "--heal-primary"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "unreachable" in err[0]


def test_publish_and_chaos_need_a_seeded_world(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["world", "publish", "--endpoint-url", aws, "--once"]) == 2
    assert "run `python -m shadowing world seed` first" in capsys.readouterr().err
    assert client("ssm", "us-east-1", aws).describe_parameters()["Parameters"] == []
