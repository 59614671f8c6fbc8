"""Pure failover logic: plan building, tier ordering with cycle groups, idempotent counting, backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from shadowing.blueprint.model import Blueprint
from shadowing.errors import InputError
from shadowing.failover import backoff
from shadowing.failover.failback import health_hold
from shadowing.failover.identity import client_token, failover_id
from shadowing.failover.launcher import count_by_placement, missing_per_subnet, surplus
from shadowing.failover.plan import build_plan, scaled_count, spread
from shadowing.failover.steps import FailoverRequest, outcome_of, validate_request
from shadowing.warehouse.operations import FailoverEvent, HealthObservation


def _blueprint(counts: dict[str, int] | None = None) -> Blueprint:
    counts = counts or {}
    tiers = [["cache", "db"], ["api", "worker"], ["web"]]
    services = {}
    for i, tier in enumerate(tiers):
        for name in tier:
            services[name] = {
                "tier": i, "group": "c1" if name in ("api", "worker") else None,
                "kind": "managed" if name == "db" else "compute",
                "ami": {"primary": "ami-1", "shadow": "ami-2"}, "instance_type": "t3.micro",
                "count": counts.get(name, 3), "subnets": ["subnet-b", "subnet-a"], "security_groups": ["sg-1"],
                "ports": [80], "launch_template": {"name": f"lt-{name}"}, "env_overrides": {},
                "target_group": {"name": "tg-web", "port": 80, "health_check_path": "/"} if name == "web" else None,
                "tags": {}}
    return Blueprint.from_dict({
        "schema_version": 1, "primary_region": "us-east-1", "shadow_region": "us-west-2", "services": services,
        "launch_tiers": tiers,
        "networking": {"vpc": {"cidr": "10.0.0.0/16"}, "subnets": [], "security_groups": {},
                       "load_balancer": {"name": "lb", "scheme": "internet-facing", "listeners": [],
                                         "target_groups": [{"name": "tg-web", "port": 80, "protocol": "HTTP",
                                                            "health_check_path": "/", "service": "web"}]}},
        "traffic": {"hosted_zone_id": "Z1", "zone_name": "example.com.", "records": [
            {"name": "shop.example.com.", "type": "CNAME", "set_identifier": "p", "failover": "PRIMARY",
             "primary_target": "p.example", "shadow_target": "s.example"}]},
        "replication": [], "provenance": {}})


def test_tiers_in_dependency_order_with_the_cycle_as_one_group() -> None:
    plan = build_plan(_blueprint(), failover_id="fo-x", mode="live")
    assert [[s.service for s in t.services] for t in plan.tiers] == [["cache"], ["api", "worker"], ["web"]]
    (cycle,) = plan.tiers[1].groups
    assert cycle.is_cycle and cycle.name == "c1"
    assert plan.managed_services == ["db"]
    assert plan.instances_expected == 12
    assert plan.traffic_changes[0]["to"] == "s.example"


def test_capacity_scaling_and_spread() -> None:
    assert scaled_count(3, 50) == 2 and scaled_count(1, 10) == 1 and scaled_count(0, 100) == 0
    assert spread(5, ["a", "b"]) == {"a": 3, "b": 2}
    plan = build_plan(_blueprint(), failover_id="fo-x", mode="drill", capacity_percent=50)
    assert plan.service("web").per_subnet == {"subnet-a": 1, "subnet-b": 1}
    assert plan.traffic_changes == [] and plan.replication == []  # a drill never touches production
    assert "production records untouched (drill)" in plan.render()


@pytest.mark.parametrize(("field", "kwargs"), [("mode", {"mode": "yolo"}),
                                               ("capacity_percent", {"mode": "live", "capacity_percent": 0})])
def test_bad_plan_inputs_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(InputError, match=field):
        build_plan(_blueprint(), failover_id="fo-x", **kwargs)


def test_manual_live_needs_the_region_typed() -> None:
    with pytest.raises(InputError, match="confirm_region"):
        validate_request(FailoverRequest(primary_region="us-east-1", mode="live"), ["us-east-1"])
    validate_request(FailoverRequest(primary_region="us-east-1", mode="live", confirm_region="us-east-1"),
                     ["us-east-1"])
    validate_request(FailoverRequest(primary_region="us-east-1", mode="live", trigger="sensor"), ["us-east-1"])
    with pytest.raises(InputError, match="primary_region"):
        validate_request(FailoverRequest(primary_region="eu-west-9"), ["us-east-1"])


def test_identities_are_deterministic() -> None:
    assert failover_id("d", "run1") == failover_id("d", "run1") != failover_id("d", "run2")
    assert client_token("fo", "web", "subnet-a", 0) != client_token("fo", "web", "subnet-a", 1)
    assert len(client_token("x" * 500)) <= 64


def test_counting_what_exists_decides_what_to_create() -> None:
    instances = [{"InstanceId": "i-3", "SubnetId": "subnet-a"}, {"InstanceId": "i-1", "SubnetId": "subnet-a"},
                 {"InstanceId": "i-2", "SubnetId": "subnet-b"},
                 {"InstanceId": "i-9", "Placement": {"AvailabilityZone": "us-west-2c"}}]
    existing = count_by_placement(instances, ["subnet-a", "subnet-b"])
    assert existing["subnet-a"] == ["i-1", "i-3"]
    plan = {"subnet-a": 1, "subnet-b": 2}
    assert missing_per_subnet(plan, existing) == {"subnet-a": 0, "subnet-b": 1}
    assert surplus(plan, existing) == ["i-3", "i-9"]  # beyond plan, and in an unplanned place


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_retryable_classification() -> None:
    assert backoff.is_retryable(_client_error("RequestLimitExceeded", 503))
    assert backoff.is_retryable(_client_error("Throttling"))
    assert backoff.is_retryable(_client_error("Whatever", 500))
    assert backoff.is_retryable(ConnectionClosedError(endpoint_url="http://x"))
    assert not backoff.is_retryable(_client_error("InvalidAMIID.NotFound"))


def test_backoff_is_jittered_capped_and_retries_then_gives_up() -> None:
    policy = backoff.Backoff(attempts=4, base=0.1, cap=0.3)
    rng = random.Random(1)
    delays = [policy.delay(a, rng) for a in range(1, 8) for _ in range(20)]
    assert all(0 <= d <= 0.3 for d in delays) and len(set(delays)) > 50
    calls, slept = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _client_error("Throttling")
        return "ok"

    assert backoff.retry_call(flaky, what="t", policy=policy, sleep=slept.append) == "ok"
    assert len(calls) == 3 and len(slept) == 2
    with pytest.raises(ClientError):
        backoff.retry_call(lambda: (_ for _ in ()).throw(_client_error("Throttling")), what="t", policy=policy,
                           sleep=lambda _: None)
    with pytest.raises(ClientError):  # not retryable: raised at once
        backoff.retry_call(lambda: (_ for _ in ()).throw(_client_error("AccessDenied")), what="t",
                           policy=policy, sleep=lambda _: pytest.fail("slept"))


def test_poll_until_times_out() -> None:
    clock = iter(range(100))
    with pytest.raises(TimeoutError):
        backoff.poll_until(lambda: None, what="never", timeout=5, sleep=lambda _: None, clock=lambda: next(clock))


def _obs(minutes_ago: int, healthy: bool, now: datetime) -> HealthObservation:
    return HealthObservation(0, "us-east-1", now - timedelta(minutes=minutes_ago), healthy, [], "", "", "", None)


def test_failback_health_hold() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    hold = timedelta(minutes=15)
    assert not health_hold([], hold, now).held
    assert not health_hold([_obs(0, False, now)], hold, now).held
    assert not health_hold([_obs(0, True, now), _obs(10, True, now), _obs(11, False, now)], hold, now).held
    assert health_hold([_obs(0, True, now), _obs(10, True, now), _obs(20, True, now), _obs(21, False, now)],
                       hold, now).held


def test_outcome_needs_every_step_of_the_mode() -> None:
    def event(steps: list[dict]) -> FailoverEvent:
        return FailoverEvent(1, "fo", None, "us-east-1", "us-west-2", "drill", "manual", None, 1, 1, steps,
                             "running", None, None, datetime.now(UTC), None, None, None)

    done = [{"step": s, "finished_at": "t", "outcome": "succeeded"}
            for s in ("prepare", "preflight", "launch", "network", "verify")]
    assert outcome_of(event(done), "drill") == ("succeeded", None)
    assert outcome_of(event(done[:-1]), "drill")[0] == "failed"
    broken = done[:-1] + [{"step": "verify", "finished_at": "t", "outcome": "failed", "detail": {"error": "x"}}]
    assert outcome_of(event(broken), "drill") == ("failed", "step verify failed: x")


class _Meta:
    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url


class _StatusClient:
    """DescribeInstanceStatus as EC2 answers it: NotFound for the whole call when one id is unknown."""

    def __init__(self, states: dict[str, str], endpoint_url: str = "http://127.0.0.1:5000") -> None:
        self.states = states
        self.meta = _Meta(endpoint_url)
        self.calls: list[list[str]] = []

    def describe_instance_status(self, InstanceIds: list[str], IncludeAllInstances: bool) -> dict:  # noqa: N803
        self.calls.append(list(InstanceIds))
        unknown = [i for i in InstanceIds if i not in self.states]
        if unknown:
            raise ClientError({"Error": {"Code": "InvalidInstanceID.NotFound",
                                         "Message": f"The instance IDs {unknown} do not exist"}},
                              "DescribeInstanceStatus")
        return {"InstanceStatuses": [{"InstanceId": i, "InstanceState": {"Name": self.states[i]}}
                                     for i in InstanceIds]}


def test_creates_are_serialised_only_against_an_emulator() -> None:
    from shadowing.failover.launcher import serial_creates

    assert serial_creates(_StatusClient({}, "http://127.0.0.1:5000"))
    assert not serial_creates(_StatusClient({}, "https://ec2.us-west-2.amazonaws.com"))
    assert not serial_creates(_StatusClient({}, "https://ec2.cn-north-1.amazonaws.com.cn"))


def test_instance_states_in_chunks_leave_out_ids_ec2_does_not_know_yet() -> None:
    from shadowing.failover.launcher import STATUS_CHUNK, instance_states

    known = {f"i-{n:08x}": "running" if n % 3 else "pending" for n in range(250)}
    client = _StatusClient(known)
    states = instance_states(client, [*known, "i-0000ffff"])
    assert states == known
    assert all(len(call) <= STATUS_CHUNK for call in client.calls)
    # the chunk holding the unknown id was asked again without it; the others once each
    assert len(client.calls) == 4
