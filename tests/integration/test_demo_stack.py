"""Smoke test of `make demo`: the embedded stack comes up, Airflow answers, our DAGs load, `down` ends it all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


def _api(base: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_demo_comes_up_and_stops(tmp_path: Path) -> None:
    state = tmp_path / "state"
    airflow_port, aws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    cmd = [sys.executable, "-m", "shadowing.devstack", "--state-dir", str(state),
           "--airflow-port", str(airflow_port), "--aws-port", str(aws_port)]
    pids: dict[str, str] = {}
    try:
        up = subprocess.run([*cmd, "up"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://localhost:{airflow_port}" in up.stdout
        password = json.loads((state / "passwords.json").read_text())["admin"]
        base = f"http://localhost:{airflow_port}"
        token = _api(base, "/auth/token", body={"username": "admin", "password": password})["access_token"]

        # The dag-processor parses our files shortly after start.
        deadline = time.monotonic() + 180
        dag_ids: set[str] = set()
        expected = {p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_")}
        while time.monotonic() < deadline and not expected <= dag_ids:
            dag_ids = {d["dag_id"] for d in _api(base, "/api/v2/dags?limit=100", token)["dags"]}
            time.sleep(2)
        assert expected <= dag_ids, f"missing DAGs: {expected - dag_ids}"
        errors = _api(base, "/api/v2/importErrors", token)
        assert errors["total_entries"] == 0, errors
        paused = [d["dag_id"] for d in _api(base, "/api/v2/dags?limit=100", token)["dags"] if d["is_paused"]]
        assert not paused, f"paused: {paused}"

        # A second `up` reuses what runs: no duplicate processes, no duplicated world.
        pids = {p.name: p.read_text() for p in (state / "pids").glob("*.pid")}
        again = subprocess.run([*cmd, "up"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        assert {p.name: p.read_text() for p in (state / "pids").glob("*.pid")} == pids
    finally:
        down = subprocess.run([*cmd, "down"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    for pid_text in pids.values():
        pid = int(pid_text)
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_port_in_use_gives_a_one_line_reason(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "shadowing.devstack", "--state-dir", str(tmp_path),
                              "--aws-port", str(port), "--airflow-port", str(free_port()), "up"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"port {port} is in use" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
