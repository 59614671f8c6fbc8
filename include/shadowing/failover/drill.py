"""``make drill``: a drill failover on a fresh emulated world, summarised from the emulator's own state.

Starts a moto server on a free loopback port unless given one, seeds the world (the world's CLI), runs the
blueprint refresh (inventory → blueprint → pre-staging → version) through the package, then a drill with
teardown disabled until the instances have been counted by tags, then tears down.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shadowing.errors import EmulatorUnavailable, ShadowingError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def emulator(endpoint_url: str | None) -> Iterator[str]:
    # The emulator accepts any credentials; recognisably fake ones when none are configured.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIASHADOWINGDRILL")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "shadowing-drill-secret")
    if endpoint_url:
        yield endpoint_url
        return
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).close()
                break
            except OSError as exc:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise EmulatorUnavailable(f"moto server on port {port} did not start") from exc
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def seed(endpoint: str, services: int | None, instances_per_service: int | None) -> None:
    argv = [sys.executable, "-m", "shadowing", "world", "seed", "--endpoint-url", endpoint]
    if services:
        argv += ["--services", str(services)]
    if instances_per_service:
        argv += ["--instances-per-service", str(instances_per_service)]
    done = subprocess.run(argv, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise ShadowingError(f"world seed failed: {(done.stderr or done.stdout).strip()[-400:]}")


def refresh(engine: Any, endpoint: str, primary: str, shadow: str) -> dict[str, Any]:
    from shadowing.aws.clients import client
    from shadowing.blueprint.refresh import refresh_region

    result = refresh_region(engine, lambda service, region: client(service, region, endpoint), primary, shadow,
                            run_id=f"drill-refresh-{time.time_ns()}")
    if result.get("version") is None:
        raise ShadowingError(f"blueprint refresh failed: {result.get('error')}")
    return result


def drill_summary(*, endpoint_url: str | None = None, warehouse_url: str | None = None,
                  primary_region: str | None = None, services: int | None = None,
                  instances_per_service: int | None = None) -> dict[str, Any]:
    from shadowing.aws import tags as T
    from shadowing.failover.clients import FailoverClients
    from shadowing.failover.launcher import describe_tagged
    from shadowing.failover.runner import run_failover
    from shadowing.failover.steps import FailoverEnv, FailoverRequest, teardown_drill
    from shadowing.settings import region_pairs
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.operations import get_failover_event

    pairs = region_pairs()
    primary = primary_region or next(iter(pairs))
    shadow = pairs[primary]
    with tempfile.TemporaryDirectory(prefix="shadowing-drill-") as tmp, emulator(endpoint_url) as endpoint:
        engine = open_warehouse(warehouse_url or f"sqlite:///{tmp}/warehouse.db")
        seed(endpoint, services, instances_per_service)
        refresh(engine, endpoint, primary, shadow)
        env = FailoverEnv(clients=FailoverClients.for_endpoint(endpoint), engine=engine)
        result = run_failover(env, FailoverRequest(primary_region=primary, mode="drill", triggered_by="make drill"),
                              run_id=f"drill__{time.time_ns()}", allowed_primaries=list(pairs), teardown=False)
        from shadowing.failover.steps import FailoverState, load_blueprint, plan_for

        state = FailoverState.from_dict(result["state"])
        plan = plan_for(state, load_blueprint(env, state))
        present = Counter(T.from_aws(i.get("Tags")).get(T.SERVICE, "?")
                          for i in describe_tagged(env.ec2(shadow), state.failover_id))
        expected = {s.service: s.count for s in plan.services}
        duplicates = sum(max(0, present.get(k, 0) - v) for k, v in expected.items()) + \
            sum(v for k, v in present.items() if k not in expected)
        teardown_drill(env, state)
        event = get_failover_event(engine, state.failover_id)
        assert event is not None
        return {
            "services": len(expected), "instances_expected": sum(expected.values()),
            "instances_launched": sum(present.values()), "duplicates": duplicates,
            "missing": sum(max(0, v - present.get(k, 0)) for k, v in expected.items()),
            "steps": {s["step"]: (s.get("detail") or {}).get("seconds") for s in event.steps
                      if s.get("outcome") not in (None, "skipped")},
            "recovery_seconds": event.recovery_seconds, "outcome": event.outcome,
        }
