"""Fault tolerance against the moto server behind the fault-injection proxy: throttling, dropped responses,
a worker killed mid-launch. Each ends with exactly the blueprint: 0 duplicates, 0 missing, one event row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shadowing.aws import tags as T
from shadowing.aws.clients import client
from shadowing.failover.clients import FailoverClients
from shadowing.failover.identity import failover_id
from shadowing.failover.runner import run_failover
from shadowing.failover.steps import FailoverEnv, FailoverRequest
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.operations import failover_lock_holder, list_failover_events
from tests.support.fault_proxy import FaultProxy
from tests.support.shadow_world import PRIMARY, SHADOW, build_shadow_world, store_blueprint

ROOT = Path(__file__).resolve().parents[2]


def _census(endpoint: str, fid: str) -> dict[str, int]:
    pages = client("ec2", SHADOW, endpoint).get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{T.FAILOVER_ID}", "Values": [fid]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    counts: dict[str, int] = {}
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                name = T.from_aws(instance["Tags"])[T.SERVICE]
                counts[name] = counts.get(name, 0) + 1
    return counts


def _expected(world) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {n: s["count"] for n, s in world.blueprint["services"].items() if s["kind"] == "compute"}


@pytest.fixture
def setup(aws: str, sqlite_url: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    size = getattr(request, "param", (8, 3))
    world = build_shadow_world(aws, services=size[0], instances_per_service=size[1])
    engine = open_warehouse(sqlite_url)
    store_blueprint(engine, world)
    return world, engine


@pytest.mark.parametrize("setup", [(6, 2)], indirect=True)
def test_live_failover_converges_with_30_percent_throttling(setup) -> None:  # type: ignore[no-untyped-def]
    world, engine = setup
    with FaultProxy(world.endpoint, throttle_rate=0.3, seed=7) as proxy:
        env = FailoverEnv(clients=FailoverClients.for_endpoint(proxy.url), engine=engine)
        result = run_failover(env, FailoverRequest(primary_region=PRIMARY, mode="live", confirm_region=PRIMARY),
                              run_id="throttled", allowed_primaries=[PRIMARY])
    assert proxy.stats["throttled"] > 20, proxy.stats
    assert any(op == "RunInstances" for (kind, _svc, op) in proxy.by_operation if kind == "throttled")
    assert _census(world.endpoint, result["failover_id"]) == _expected(world)
    events = list_failover_events(engine, PRIMARY)
    assert len(events) == 1 and events[0].outcome == "succeeded"
    assert failover_lock_holder(engine, PRIMARY) is None


def test_dropped_run_instances_responses_create_no_duplicates(setup) -> None:  # type: ignore[no-untyped-def]
    world, engine = setup
    with FaultProxy(world.endpoint, drop_rate=0.5, drop_operations={"RunInstances"}, throttle_rate=0.1,
                    seed=3) as proxy:
        env = FailoverEnv(clients=FailoverClients.for_endpoint(proxy.url), engine=engine)
        result = run_failover(env, FailoverRequest(primary_region=PRIMARY, mode="drill"), run_id="dropped",
                              allowed_primaries=[PRIMARY], teardown=False)
    assert proxy.by_operation[("dropped", "ec2", "RunInstances")] >= 3, proxy.by_operation
    assert _census(world.endpoint, result["failover_id"]) == _expected(world)
    (event,) = list_failover_events(engine, PRIMARY)
    assert event.outcome == "succeeded"
    launch = next(s for s in event.steps if s["step"] == "launch")
    # Every dropped create really happened: fewer instances created in responses than exist.
    assert launch["detail"]["created"] < sum(_expected(world).values())


def test_killed_launch_resumes_to_exactly_the_blueprint(setup, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    world, engine = setup
    expected = _expected(world)
    run_id = "killed-worker"
    fid = failover_id("regional_failover", run_id)
    argv = [sys.executable, "-m", "shadowing", "failover", "run", "--endpoint-url", world.endpoint,
            "--warehouse-url", sqlite_url, "--mode", "drill", "--run-id", run_id, "--steps", "launch",
            "--no-teardown"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    # Slow the launch down (throttling) so the kill lands mid-launch, after some instances exist.
    with FaultProxy(world.endpoint, throttle_rate=0.5, throttle_services={"ec2"}, seed=11) as proxy:
        argv[argv.index(world.endpoint)] = proxy.url
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while sum(_census(world.endpoint, fid).values()) < 4:
            assert proc.poll() is None, "the launch finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    partial = sum(_census(world.endpoint, fid).values())
    assert 4 <= partial < sum(expected.values())
    argv[argv.index(proxy.url)] = world.endpoint
    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _census(world.endpoint, fid) == expected
    (event,) = list_failover_events(engine, PRIMARY)
    assert event.failover_id == fid
    assert next(s for s in event.steps if s["step"] == "launch")["outcome"] == "succeeded"
