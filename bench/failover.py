"""Failover benchmark: trigger → traffic redirected, under the real Airflow scheduler vs. the direct path.

World: 50 services / 400 instances (8 per service) in the emulated primary, blueprint refreshed through the
package. The stack is ``python -m shadowing.devstack up`` (airflow standalone, LocalExecutor, + moto server) on
free loopback ports in a temporary state folder.

1. Lower bound: the same steps called directly in one process without Airflow (``runner.run_failover``), with
   every AWS call timed through botocore's ``before-call``/``after-call`` event hooks (where the time goes).
2. The emulator is reset and the world re-seeded (so both runs start from the same state: moto keeps terminated
   instances and their tags, which slows later calls), the blueprint refreshed, and the same live failover is
   triggered through Airflow's REST API (``POST /auth/token`` → bearer; ``POST /api/v2/dags/regional_failover/
   dagRuns``). Trigger → traffic redirected is measured from the POST to the end of the ``traffic`` step.

Prints a table per step (direct, scheduled step duration, scheduled time since the previous step ended = incl.
scheduling and task start-up), the ratio, the per-call profile of the direct path, then one JSON line.

    .venv/bin/python bench/failover.py [--services 50] [--instances-per-service 8] [--keep]
Targets (DESIGN §6): trigger → traffic redirected ≤ 30 s under the scheduler; orchestration overhead ≤ 3×.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRIMARY, SHADOW = "us-east-1", "us-west-2"
TO_TRAFFIC = ("prepare", "preflight", "launch", "network", "traffic")
OTHER_DAGS = ("primary_health_monitor", "capacity_profiler", "dependency_mapper", "shadow_blueprints")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"{}")


class CallProfile:
    """Per-operation count / total / max seconds of every AWS call, via botocore event hooks."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        self._local = threading.local()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call", self._before)
        client.meta.events.register("after-call", self._after)
        return client

    def _before(self, **_kwargs: Any) -> None:
        self._local.t = time.perf_counter()

    def _after(self, event_name: str, **_kwargs: Any) -> None:
        seconds = time.perf_counter() - getattr(self._local, "t", time.perf_counter())
        with self._lock:
            entry = self.stats[event_name.removeprefix("after-call.")]
            entry[0] += 1
            entry[1] += seconds
            entry[2] = max(entry[2], seconds)

    def table(self, top: int = 12) -> str:
        rows = sorted(self.stats.items(), key=lambda kv: -kv[1][1])[:top]
        lines = [f"  {'AWS call':48} {'calls':>6} {'total s':>8} {'max s':>7}"]
        lines += [f"  {name:48} {int(n):6d} {total:8.2f} {peak:7.2f}" for name, (n, total, peak) in rows]
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--instances-per-service", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "include"))
    state = Path(tempfile.mkdtemp(prefix="shadowing-bench-failover-"))
    af_port, aws_port = free_port(), free_port()
    devstack = [sys.executable, "-m", "shadowing.devstack", "--state-dir", str(state)]
    # airflow standalone starts its components as `airflow …` from PATH: the venv's bin must be on it.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    os.environ["PATH"] = env["PATH"]
    t = time.perf_counter()
    up = subprocess.run([*devstack, "up", "--airflow-port", str(af_port), "--aws-port", str(aws_port)],
                        cwd=ROOT, capture_output=True, text=True, env=env)
    if up.returncode != 0:
        print(up.stdout[-2000:], up.stderr[-2000:], file=sys.stderr)
        subprocess.run([*devstack, "down"], cwd=ROOT, capture_output=True)
        return 1
    print(f"stack up in {time.perf_counter() - t:.0f}s (state {state}, load {load()})", flush=True)
    try:
        return run(state, af_port, f"http://127.0.0.1:{aws_port}", args)
    finally:
        if not args.keep:
            subprocess.run([*devstack, "down"], cwd=ROOT, capture_output=True)


def fresh_world(endpoint: str, engine: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Reset the emulator, seed a world of the requested size, refresh its blueprint (through the package)."""
    from shadowing.aws.clients import client
    from shadowing.blueprint.refresh import refresh_region

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=60).close()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shadowing", "world", "seed", "--endpoint-url", endpoint, "--services",
                    str(args.services), "--instances-per-service", str(args.instances_per_service)],
                   check=True, cwd=ROOT, capture_output=True)
    refreshed = refresh_region(engine, lambda s, r: client(s, r, endpoint), PRIMARY, SHADOW,
                               run_id=f"bench-{time.time_ns()}")
    if refreshed.get("version") is None:
        raise RuntimeError(f"blueprint refresh failed: {refreshed.get('error')}")
    print(f"world seeded + blueprint v{refreshed['version']} in {time.perf_counter() - t:.0f}s", flush=True)
    return refreshed


def direct_run(endpoint: str, engine: Any) -> tuple[dict[str, Any], CallProfile]:
    from shadowing.aws.clients import AwsTarget
    from shadowing.failover.clients import FailoverClients
    from shadowing.failover.runner import run_failover
    from shadowing.failover.steps import FailoverEnv, FailoverRequest

    profile = CallProfile()
    target = AwsTarget(endpoint_url=endpoint)
    clients = FailoverClients(lambda service, region, config: profile.attach(target.client(service, region, config)))
    env = FailoverEnv(clients=clients, engine=engine)
    result = run_failover(env, FailoverRequest(primary_region=PRIMARY, mode="live", trigger="sensor",
                                               detected_at=datetime.now(UTC).isoformat()),
                          run_id=f"bench-direct-{time.time_ns()}", allowed_primaries=[PRIMARY])
    return result, profile


def quiet_airflow(base: str, password: str) -> str:
    """A bearer token; the other shadowing DAGs paused for the measurement (the monitor must not start a
    failover of its own, the refresh DAGs must not compete for the two cores)."""
    token = http("POST", f"{base}/auth/token", {"username": "admin", "password": password})["access_token"]
    deadline = time.monotonic() + 300
    while True:
        try:
            http("GET", f"{base}/api/v2/dags/regional_failover", token=token)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    for dag_id in OTHER_DAGS:
        try:
            http("PATCH", f"{base}/api/v2/dags/{dag_id}", {"is_paused": True}, token=token)
        except Exception as exc:
            print(f"could not pause {dag_id}: {exc}", file=sys.stderr)
    http("PATCH", f"{base}/api/v2/dags/regional_failover", {"is_paused": False}, token=token)
    return token


def scheduled_run(base: str, token: str, engine: Any) -> dict[str, Any]:
    from shadowing.warehouse.operations import get_failover_event, list_failover_events

    print(f"triggering through the REST API (load {load()})", flush=True)
    triggered = datetime.now(UTC)
    run = http("POST", f"{base}/api/v2/dags/regional_failover/dagRuns", {"logical_date": None, "conf": {
        "primary_region": PRIMARY, "mode": "live", "trigger": "sensor", "detected_at": triggered.isoformat()}},
        token=token)
    run_id = run["dag_run_id"]
    traffic_at = None
    event = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        events = [e for e in list_failover_events(engine, PRIMARY) if e.dag_run_id == run_id]
        event = events[0] if events else None
        if event is not None:
            step = next((s for s in event.steps if s["step"] == "traffic" and s.get("finished_at")), None)
            if step and traffic_at is None:
                traffic_at = datetime.fromisoformat(step["finished_at"])
            if any(s.get("outcome") == "failed" for s in event.steps):
                break
        state = http("GET", f"{base}/api/v2/dags/regional_failover/dagRuns/{run_id}", token=token)["state"]
        if state in ("success", "failed"):
            break
        time.sleep(0.5)
    finished = datetime.now(UTC)
    event = get_failover_event(engine, event.failover_id) if event else None
    return {"run_id": run_id, "state": state, "triggered": triggered, "traffic_at": traffic_at, "event": event,
            "run_seconds": (finished - triggered).total_seconds()}


def run(state: Path, af_port: int, endpoint: str, args: argparse.Namespace) -> int:
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIASHADOWINGDEMO",
                       "AWS_SECRET_ACCESS_KEY": "shadowing-demo-secret"}.items():
        os.environ.setdefault(key, value)
    from shadowing.warehouse import open_warehouse

    engine = open_warehouse(f"sqlite:///{state / 'warehouse.db'}")
    base = f"http://localhost:{af_port}"
    token = quiet_airflow(base, json.loads((state / "passwords.json").read_text())["admin"])
    refreshed = fresh_world(endpoint, engine, args)

    load_direct = load()
    direct, profile = direct_run(endpoint, engine)
    wall = direct["wall"]
    direct_to_traffic = sum(wall[s] for s in TO_TRAFFIC)
    finalize = direct["results"]["finalize"]
    print(f"direct: {direct['total_seconds']:.1f}s total, outcome {finalize['outcome']} (load before {load_direct},"
          f" after {load()})", flush=True)

    refreshed = fresh_world(endpoint, engine, args)  # the scheduled run's world and blueprint
    time.sleep(3)
    load_scheduled = load()
    sched = scheduled_run(base, token, engine)
    event = sched["event"]
    triggered = sched["triggered"]
    scheduled = (sched["traffic_at"] - triggered).total_seconds() if sched["traffic_at"] else None

    step_seconds: dict[str, float] = {}
    since_previous: dict[str, float] = {}
    if event is not None:
        previous = triggered
        for entry in event.steps:
            step_seconds[entry["step"]] = float((entry.get("detail") or {}).get("seconds") or 0.0)
            if entry.get("finished_at"):
                end = datetime.fromisoformat(entry["finished_at"])
                since_previous[entry["step"]] = (end - previous).total_seconds()
                previous = end

    print(f"\nFailover benchmark: {args.services} services × {args.instances_per_service} instances in the primary "
          f"(scheduled run on blueprint v{refreshed.get('version')}); {(event.plan or {}).get('instances_expected') if event else '?'}"
          f" launched in the shadow (the blueprint's sizing)")
    print(f"  {'step':12} {'direct s':>9} {'airflow step s':>15} {'airflow since prev. end s':>26}")
    for step in ("prepare", "preflight", "launch", "network", "traffic", "replication", "verify"):
        d = wall.get(step)
        print(f"  {step:12} {'' if d is None else f'{d:9.2f}':>9} "
              f"{'' if step not in step_seconds else f'{step_seconds[step]:15.2f}':>15} "
              f"{'' if step not in since_previous else f'{since_previous[step]:26.2f}':>26}")
    ratio = scheduled / direct_to_traffic if scheduled else None
    print(f"  {'TRIGGER→TRAFFIC':12} {direct_to_traffic:9.2f} {'':>15} "
          f"{'' if scheduled is None else f'{scheduled:26.2f}':>26}")
    print(f"  ratio airflow/direct: {'n/a' if ratio is None else f'{ratio:.2f}×'}   "
          f"(targets: ≤ 30 s → {scheduled is not None and scheduled <= 30}; ≤ 3× → {ratio is not None and ratio <= 3})")
    print(f"  airflow run {sched['state']} after {sched['run_seconds']:.1f}s; load before direct {load_direct}, "
          f"before scheduled {load_scheduled}, now {load()}")
    print("\nWhere the direct path's time goes (botocore before-/after-call hooks):")
    print(profile.table())
    result = {
        "services": args.services, "instances_expected": (event.plan or {}).get("instances_expected") if event else None,
        "direct": {"trigger_to_traffic_s": round(direct_to_traffic, 2), "outcome": finalize["outcome"],
                   "steps_s": {k: round(v, 2) for k, v in wall.items()}},
        "scheduled": {"trigger_to_traffic_s": None if scheduled is None else round(scheduled, 2),
                      "dag_run_state": sched["state"], "outcome": event.outcome if event else None,
                      "steps_s": {k: round(v, 2) for k, v in step_seconds.items()},
                      "since_previous_end_s": {k: round(v, 2) for k, v in since_previous.items()}},
        "overhead_ratio": None if ratio is None else round(ratio, 2),
        "targets": {"trigger_to_traffic_le_30s": scheduled is not None and scheduled <= 30,
                    "overhead_le_3x": ratio is not None and ratio <= 3},
        "load": {"before_direct": load_direct, "before_scheduled": load_scheduled, "end": load()},
    }
    print(json.dumps(result, default=str))
    return 0 if sched["traffic_at"] and sched["state"] == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
