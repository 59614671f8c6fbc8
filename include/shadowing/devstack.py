"""The embedded deployment behind `make demo` / `make stop`: moto server + emulated world + airflow standalone.

Everything it starts is recorded by PID (process group) under one state folder (default ``.shadowing/``), so
``down`` ends exactly what ``up`` started and a second ``up`` reuses what is still running instead of
duplicating it. It drives Airflow only through its CLI, so this module does not import Airflow.

    python -m shadowing.devstack up [--airflow-port 8080] [--aws-port 5000]
    python -m shadowing.devstack down
    python -m shadowing.devstack status
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shadowing import PRIMARY_REGION, SHADOW_REGION
from shadowing.errors import ShadowingError
from shadowing.settings import PROJECT_ROOT, state_dir

#: Airflow's metadata DB in the demo is SQLite: its writers queue on one lock. Python's default 5 s busy timeout
#: turns a burst (scheduler + task XComs + a UI trigger) into "database is locked" 500s; wait longer instead.
#: Airflow imports this dict through ``[database] sql_alchemy_connect_args``.
SQLITE_CONNECT_ARGS = {"timeout": 60}
SQLITE_CONNECT_ARGS_ASYNC = {"timeout": 60}  # a separate dict: Airflow adds check_same_thread to the sync one

BIN = Path(sys.executable).parent
ADMIN_USER = "admin"
# Read-only user of the `airflow_api` connection: the health monitor reads Airflow's event log with it to audit
# who flipped the auto-failover switch (a viewer may read, never change, anything).
AUDITOR_USER = "shadowing_auditor"


@dataclass(frozen=True)
class Stack:
    state: Path
    airflow_port: int
    aws_port: int

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://localhost:{self.airflow_port}"

    @property
    def airflow_home(self) -> Path:
        return self.state / "airflow"

    @property
    def warehouse_path(self) -> Path:
        return self.state / "warehouse.db"

    def pid_file(self, name: str) -> Path:
        return self.state / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def _read_pid(stack: Stack, name: str) -> int | None:
    path = stack.pid_file(name)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 200 <= resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _wait(predicate, what: str, timeout: float, stack: Stack, log: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if _read_pid(stack, log) is None and stack.pid_file(log).exists():
            raise ShadowingError(f"{what} exited during start-up; see {stack.log_file(log)}")
        if time.monotonic() > deadline:
            raise ShadowingError(f"{what} did not come up within {timeout:.0f}s; see {stack.log_file(log)}")
        time.sleep(0.5)


def _spawn(stack: Stack, name: str, argv: list[str], env: dict[str, str]) -> int:
    """Start a process in its own session (so down can end its whole group) and record its PID."""
    stack.pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    stack.log_file(name).parent.mkdir(parents=True, exist_ok=True)
    with open(stack.log_file(name), "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=PROJECT_ROOT, start_new_session=True)
    stack.pid_file(name).write_text(str(proc.pid))
    return proc.pid


def airflow_env(stack: Stack) -> dict[str, str]:
    env = dict(os.environ)
    # Every task runs in a fresh interpreter: let them reuse compiled bytecode.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({
        "AIRFLOW_HOME": str(stack.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AUDITOR_USER}:viewer,{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(stack.state / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{stack.airflow_home / 'airflow.db'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "shadowing.devstack.SQLITE_CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "shadowing.devstack.SQLITE_CONNECT_ARGS_ASYNC",
        "AIRFLOW__API__PORT": str(stack.airflow_port),
        "AIRFLOW__API__BASE_URL": stack.airflow_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{stack.airflow_port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # airflow standalone starts its components as `airflow …` from PATH: make it this venv's.
        "PATH": os.pathsep.join([str(BIN), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT / "include"), env.get("PYTHONPATH")])),
        "SHADOWING_STATE_DIR": str(stack.state),
        "SHADOWING_REGION_PAIRS": f"{PRIMARY_REGION}={SHADOW_REGION}",
        # The emulator accepts any credentials; these are recognisably fake.
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "AKIASHADOWINGDEMO"),
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "shadowing-demo-secret"),
        "AWS_DEFAULT_REGION": PRIMARY_REGION,
    })
    return env


def _airflow(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "airflow"), *args], env=airflow_env(stack), capture_output=True, text=True,
                          cwd=PROJECT_ROOT)


def _passwords(stack: Stack) -> dict[str, str]:
    """Every demo user's password, generated once per stack (kept in the auth manager's passwords file)."""
    path = stack.state / "passwords.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    missing = [user for user in (ADMIN_USER, AUDITOR_USER) if user not in known]
    if missing:
        known.update({user: secrets.token_urlsafe(12) for user in missing})
        path.write_text(json.dumps(known))
        path.chmod(0o600)
    return {str(k): str(v) for k, v in known.items()}


def _admin_password(stack: Stack) -> str:
    return _passwords(stack)[ADMIN_USER]


def start_emulator(stack: Stack) -> None:
    if _read_pid(stack, "moto"):
        return
    if _port_in_use(stack.aws_port):
        raise ShadowingError(f"port {stack.aws_port} is in use by another program; pass --aws-port")
    _spawn(stack, "moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(stack.aws_port)], dict(os.environ))
    _wait(lambda: _http_ok(f"{stack.aws_url}/moto-api/data.json"), "the AWS emulator", 60, stack, "moto")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn_emulator(log_path: Path | None = None, timeout: float = 30.0) -> tuple[str, subprocess.Popen[bytes]]:
    """A throwaway moto server on a free loopback port (benchmarks): its URL and process, once it answers."""
    url = f"http://127.0.0.1:{(port := free_port())}"
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 — lives as long as the server
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=log)
    deadline = time.monotonic() + timeout
    while not _http_ok(f"{url}/moto-api/data.json"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            raise ShadowingError(f"the AWS emulator did not start on {url}")
        time.sleep(0.2)
    return url, proc


def seed_world(stack: Stack) -> None:
    log = stack.log_file("seed")
    with open(log, "ab") as out:
        rc = subprocess.run([sys.executable, "-m", "shadowing", "world", "seed", "--endpoint-url", stack.aws_url],
                            stdout=out, stderr=subprocess.STDOUT, env=airflow_env(stack), cwd=PROJECT_ROOT).returncode
    if rc != 0:
        raise ShadowingError(f"seeding the emulated world failed (exit {rc}); see {log}")
    if not _read_pid(stack, "publisher"):
        _spawn(stack, "publisher", [sys.executable, "-m", "shadowing", "world", "publish", "--endpoint-url",
                                    stack.aws_url, "--interval", "60"], airflow_env(stack))


def configure_airflow(stack: Stack) -> None:
    stack.airflow_home.mkdir(parents=True, exist_ok=True)
    _admin_password(stack)
    result = _airflow(stack, "db", "migrate")
    if result.returncode != 0:
        raise ShadowingError(f"airflow db migrate failed: {result.stderr.strip().splitlines()[-1:]}")
    emulator = {"conn_type": "aws", "login": "AKIASHADOWINGDEMO", "password": "shadowing-demo-secret",
                "extra": {"endpoint_url": stack.aws_url, "region_name": PRIMARY_REGION}}
    connections = {
        "aws_default": {**emulator, "description": "The emulated AWS (moto server) on loopback"},
        # In production the shadowing-prestage role; the emulator accepts any credentials.
        "aws_prestage": {**emulator, "description": "Pre-staging in the shadow region (emulator)"},
        "airflow_api": {"conn_type": "http", "description": "Airflow's REST API, read-only (switch audit)",
                        "host": "127.0.0.1", "port": stack.airflow_port, "schema": "http",
                        "login": AUDITOR_USER, "password": _passwords(stack)[AUDITOR_USER]},
        "shadowing_warehouse": {"conn_type": "sqlite", "description": "Shadowing warehouse (embedded SQLite)",
                                "host": str(stack.warehouse_path)},
    }
    for conn_id, spec in connections.items():
        _airflow(stack, "connections", "delete", conn_id)
        result = _airflow(stack, "connections", "add", conn_id, "--conn-json", json.dumps(spec))
        if result.returncode != 0:
            raise ShadowingError(f"could not create connection {conn_id}: {result.stderr.strip()[-300:]}")
    variables = {"shadowing_auto_failover": json.dumps({PRIMARY_REGION: True})}
    for key, value in variables.items():
        _airflow(stack, "variables", "set", key, value)


def start_airflow(stack: Stack) -> None:
    if _read_pid(stack, "airflow"):
        return
    if _port_in_use(stack.airflow_port):
        raise ShadowingError(f"port {stack.airflow_port} is in use by another program; pass --airflow-port")
    _spawn(stack, "airflow", [str(BIN / "airflow"), "standalone"], airflow_env(stack))
    _wait(lambda: _http_ok(f"{stack.airflow_url}/api/v2/monitor/health"), "Airflow's API server", 300, stack,
          "airflow")


def up(stack: Stack) -> None:
    stack.state.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"• AWS emulator on {stack.aws_url}", flush=True)
    start_emulator(stack)
    print("• seeding the emulated primary region (idempotent)", flush=True)
    seed_world(stack)
    print("• configuring Airflow (metadata DB, connections, variables)", flush=True)
    configure_airflow(stack)
    print("• starting airflow standalone", flush=True)
    start_airflow(stack)
    password = _admin_password(stack)
    (stack.state / "stack.json").write_text(json.dumps({
        "airflow_url": stack.airflow_url, "aws_url": stack.aws_url, "user": ADMIN_USER,
        "airflow_port": stack.airflow_port, "aws_port": stack.aws_port}))
    print(f"\nShadowing is up in {time.monotonic() - t0:.0f}s.\n"
          f"  Airflow UI   {stack.airflow_url}   login: {ADMIN_USER} / {password}\n"
          f"  AWS emulator {stack.aws_url}\n"
          f"  warehouse    {stack.warehouse_path}\n"
          f"  logs         {stack.state / 'logs'}\n"
          f"Stop everything with `make stop`.", flush=True)


def down(stack: Stack) -> None:
    for name in ("airflow", "publisher", "moto"):
        pid = _read_pid(stack, name)
        if pid is None:
            stack.pid_file(name).unlink(missing_ok=True)
            continue
        # SIGINT first: airflow standalone shuts its components down on KeyboardInterrupt.
        for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _alive(pid):
                break
        # The group may outlive its leader (workers): end what is left of it.
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stack.pid_file(name).unlink(missing_ok=True)
        print(f"stopped {name} (pid {pid})")


def status(stack: Stack) -> int:
    running = {name: _read_pid(stack, name) for name in ("moto", "publisher", "airflow")}
    for name, pid in running.items():
        print(f"{name:10} {f'running (pid {pid})' if pid else 'stopped'}")
    return 0 if all(running.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shadowing.devstack", description="embedded demo stack")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--airflow-port", type=int, default=int(os.environ.get("SHADOWING_AIRFLOW_PORT", 8080)))
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("SHADOWING_AWS_PORT", 5000)))
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    stack = Stack(state=(args.state_dir or state_dir()).resolve(), airflow_port=args.airflow_port,
                  aws_port=args.aws_port)
    try:
        if args.action == "up":
            up(stack)
        elif args.action == "down":
            down(stack)
        else:
            return status(stack)
    except ShadowingError as exc:
        print(f"shadowing demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
