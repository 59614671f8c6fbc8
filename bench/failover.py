"""Failover benchmark: trigger → traffic redirected, under the real Airflow scheduler vs. the direct path.

World: 50 services / 400 instances (8 per service) in the emulated primary, blueprint refreshed through the
package. Lower bound: the same steps called in one process without Airflow (``runner.run_failover``). Then the
shadow is failed back (launched capacity removed, traffic home) and the same failover is triggered through
Airflow's REST API (``POST /auth/token`` → bearer; ``POST /api/v2/dags/regional_failover/dagRuns``) on
``python -m shadowing.devstack up`` (airflow standalone + moto). Prints both, per step, and the ratio.

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
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRIMARY, SHADOW = "us-east-1", "us-west-2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        return 1
    print(f"stack up in {time.perf_counter() - t:.0f}s", flush=True)
    try:
        return run(state, af_port, f"http://127.0.0.1:{aws_port}", args)
    finally:
        if not args.keep:
            subprocess.run([*devstack, "down"], cwd=ROOT, capture_output=True)


def run(state: Path, af_port: int, endpoint: str, args: argparse.Namespace) -> int:
    env_keys = {"AWS_ACCESS_KEY_ID": "AKIASHADOWINGDEMO", "AWS_SECRET_ACCESS_KEY": "shadowing-demo-secret"}
    for k, v in env_keys.items():
        os.environ.setdefault(k, v)
    from shadowing.aws.clients import client
    from shadowing.blueprint.refresh import refresh_region
    from shadowing.failover import failback
    from shadowing.failover.clients import FailoverClients
    from shadowing.failover.runner import run_failover
    from shadowing.failover.steps import FailoverEnv, FailoverRequest, FailoverState
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.operations import get_failover_event, list_failover_events

    # A 50-service world instead of the demo app: reset the emulator and seed it.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=60).close()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shadowing", "world", "seed", "--endpoint-url", endpoint, "--services",
                    str(args.services), "--instances-per-service", str(args.instances_per_service)],
                   check=True, cwd=ROOT, capture_output=True)
    engine = open_warehouse(f"sqlite:///{state / 'warehouse.db'}")
    refreshed = refresh_region(engine, lambda s, r: client(s, r, endpoint), PRIMARY, SHADOW,
                               run_id=f"bench-{time.time_ns()}")
    print(f"world seeded + blueprint v{refreshed['version']} in {time.perf_counter() - t:.0f}s", flush=True)

    # Lower bound: direct, one process.
    env = FailoverEnv(clients=FailoverClients.for_endpoint(endpoint), engine=engine)
    t0 = time.perf_counter()
    direct = run_failover(env, FailoverRequest(primary_region=PRIMARY, mode="live", trigger="sensor",
                                               detected_at=datetime.now(UTC).isoformat()),
                          run_id=f"bench-direct-{time.time_ns()}", allowed_primaries=[PRIMARY])
    direct_event = get_failover_event(engine, direct["failover_id"])
    wall = direct["wall"]
    direct_to_traffic = sum(wall[s] for s in ("prepare", "preflight", "launch", "network", "traffic"))
    print(f"direct: {time.perf_counter() - t0:.1f}s total", flush=True)
    # Fail back (remove launched capacity, traffic home) so the scheduled run starts from the same state.
    fstate = FailoverState.from_dict(direct["state"])
    failback.restore_traffic(env, fstate)
    failback.remove_launched_capacity(env, fstate)

    # Under the real scheduler, through the REST API.
    base = f"http://localhost:{af_port}"
    password = json.loads((state / "passwords.json").read_text())["admin"]
    token = http("POST", f"{base}/auth/token", {"username": "admin", "password": password})["access_token"]
    deadline = time.monotonic() + 180
    while True:
        try:
            http("GET", f"{base}/api/v2/dags/regional_failover", token=token)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    http("PATCH", f"{base}/api/v2/dags/regional_failover", {"is_paused": False}, token=token)
    time.sleep(2)
    triggered = datetime.now(UTC)
    t1 = time.perf_counter()
    run = http("POST", f"{base}/api/v2/dags/regional_failover/dagRuns", {"logical_date": None, "conf": {
        "primary_region": PRIMARY, "mode": "live", "trigger": "sensor", "detected_at": triggered.isoformat()}},
        token=token)
    traffic_at = None
    event = None
    while time.perf_counter() - t1 < 600:
        events = [e for e in list_failover_events(engine, PRIMARY) if e.dag_run_id == run["dag_run_id"]]
        if events:
            event = events[0]
            step = next((s for s in event.steps if s["step"] == "traffic" and s.get("finished_at")), None)
            if step:
                traffic_at = datetime.fromisoformat(step["finished_at"])
                break
            if any(s.get("outcome") == "failed" for s in event.steps):
                break
        time.sleep(0.25)
    scheduled = (traffic_at - triggered).total_seconds() if traffic_at else None

    def step_times(ev) -> dict[str, float]:  # type: ignore[no-untyped-def]
        return {s["step"]: (s.get("detail") or {}).get("seconds") for s in ev.steps}

    def gaps(ev) -> dict[str, float]:  # type: ignore[no-untyped-def]
        """Per step: from the previous step's end (or the trigger) to this step's end, i.e. incl. scheduling."""
        out, prev = {}, triggered
        for s in ev.steps:
            if s.get("finished_at"):
                end = datetime.fromisoformat(s["finished_at"])
                out[s["step"]] = round((end - prev).total_seconds(), 2)
                prev = end
        return out

    result = {
        "world": {"services": args.services, "instances": refreshed.get("instances")},
        "instances_expected": (direct_event.plan or {}).get("instances_expected"),
        "direct": {"trigger_to_traffic_s": round(direct_to_traffic, 2),
                   "steps_s": {k: round(v, 2) for k, v in wall.items()}},
        "scheduled": {"trigger_to_traffic_s": None if scheduled is None else round(scheduled, 2),
                      "steps_s": step_times(event) if event else None,
                      "trigger_relative_s": gaps(event) if event else None,
                      "failed": None if traffic_at else [s for s in (event.steps if event else [])
                                                          if s.get("outcome") == "failed"]},
    }
    if scheduled:
        result["overhead_ratio"] = round(scheduled / direct_to_traffic, 2)
        result["targets"] = {"trigger_to_traffic_le_30s": scheduled <= 30,
                             "overhead_le_3x": scheduled / direct_to_traffic <= 3}
    print(json.dumps(result, indent=1, default=str))
    return 0 if traffic_at else 1


if __name__ == "__main__":
    raise SystemExit(main())
