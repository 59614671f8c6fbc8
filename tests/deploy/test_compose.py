"""docker-compose.yaml and the Dockerfile, checked as far as possible without a Docker engine.

The compose file is validated against the Compose Specification schema (what `docker compose config` checks),
then against this project: the Airflow services and their health checks, the versions of the lock, the
mounts the image's paths expect, the connections and environment variables the code reads, the `local`
profile's emulator, and the warehouse init script (run for real when a PostgreSQL server is available).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
AIRFLOW_HOME = "/opt/airflow"  # the official apache/airflow image's AIRFLOW_HOME
AIRFLOW_SERVICES = {  # service → its command
    "airflow-apiserver": "api-server", "airflow-scheduler": "scheduler", "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer", "airflow-worker": "celery worker",
}
EXECUTOR_PROVIDERS = {"CeleryExecutor": "apache-airflow-providers-celery",
                      "KubernetesExecutor": "apache-airflow-providers-cncf-kubernetes"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Connections the code reads only when they exist (a missing one switches a feature off, with a note).
OPTIONAL_CONNECTIONS = {"airflow_api": "REST API read of the Variable edit log; the audit notes its absence"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _default(value: str, env: dict[str, str] | None = None) -> str:
    """``value`` interpolated as Compose does with ``env`` (default: nothing set), nested defaults included."""
    env = env or {}
    pattern = re.compile(r"\$\{([A-Za-z0-9_]+)(?::-((?:[^${}]|\$\{[^{}]*\})*))?\}")
    while (interpolated := pattern.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)) != value:
        value = interpolated
    return value


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\],]+?)(?:\[[^\]]*\])?==([^\s;]+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _direct_requirements() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower())
    return names


def _dockerfile_base() -> tuple[str, str]:
    match = re.search(r"^FROM apache/airflow:([0-9.]+)-python([0-9.]+)\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile builds FROM apache/airflow:<airflow>-python<python>"
    return match.group(1), match.group(2)


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    validator = Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema is strict enough to catch the mistakes that matter (a misspelt key, a bad condition).
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    broken["services"]["airflow-init"]["depends_on"]["redis"]["condition"] = "service_ready"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_production_services_run_with_health_checks(services: dict[str, Any]) -> None:
    for name in [*AIRFLOW_SERVICES, "redis", "postgres"]:
        assert name in services, f"missing service {name}"
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert "profiles" not in services[name], f"{name} must run without a profile"
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command
        assert services[name].get("build") == "." and services[name]["image"] == services["airflow-init"]["image"]
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2  # the README promises two Celery workers

    env = _env(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert re.match(r"redis://[^@]*@redis:6379/", env["AIRFLOW__CELERY__BROKER_URL"])
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"  # its health check curls :8974/health
    api_port = services["airflow-apiserver"]["ports"][0].split(":")[-1]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://airflow-apiserver:{api_port}/execution/"
    assert f"localhost:{api_port}" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])


def test_depends_on_targets_exist_with_valid_conditions(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in CONDITIONS, f"{name} → {target}: bad condition {condition}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target} to be healthy: no check"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") in (None, "no"), f"{target} never completes (restart)"
            if not service.get("profiles"):
                assert not services[target].get("profiles"), f"{name} (always on) depends on profiled {target}"


def test_image_versions_match_the_lock(services: dict[str, Any]) -> None:
    airflow, python = _dockerfile_base()
    pins = _pins(ROOT / "requirements.txt")
    assert pins["apache-airflow"] == airflow, "Dockerfile FROM and requirements.txt pin different Airflows"
    assert f"apache-airflow=={airflow}" in (ROOT / "requirements.in").read_text()
    compiled_for = re.search(r"--python-version ([0-9.]+)", (ROOT / "requirements.txt").read_text())
    assert compiled_for and compiled_for.group(1) == python, "the image's Python is not the lock's"
    assert pins["apache-airflow-core"] == airflow and "apache-airflow-providers-amazon" in pins
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install [^\n]*-r /opt/shadowing/requirements\.txt", dockerfile)
    executor = _env(services["airflow-scheduler"])["AIRFLOW__CORE__EXECUTOR"]
    provider = EXECUTOR_PROVIDERS[executor]
    assert provider in _direct_requirements(), f"{executor} needs {provider} in requirements.in"


def test_the_lock_pins_every_direct_requirement() -> None:
    """requirements.txt is compiled from requirements.in (`make lock`): nothing in one is missing in the other."""
    pins = _pins(ROOT / "requirements.txt")
    missing = sorted(name for name in _direct_requirements() if name not in pins)
    assert missing == [], f"requirements.txt is stale, run `make lock`: {missing} not pinned"


def test_mounts_are_where_the_image_and_settings_look(services: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        service = services[name]
        mounts = dict(v.split(":")[:2] for v in service["volumes"] if v.startswith("./"))
        env = _env(service)
        home = env.get("AIRFLOW_HOME", AIRFLOW_HOME)
        assert mounts["./dags"] == env.get("AIRFLOW__CORE__DAGS_FOLDER", f"{home}/dags")
        assert mounts["./plugins"] == env.get("AIRFLOW__CORE__PLUGINS_FOLDER", f"{home}/plugins")
        include = mounts["./include"]
        assert include in env["PYTHONPATH"].split(":")  # `import shadowing` resolves to the mounted package
        assert f"COPY --chown=airflow:0 include {include}" in dockerfile  # … and to the image's copy without it
        project = include.rsplit("/", 1)[0]
        assert f"chown airflow:0 {project}" in dockerfile and f"pip install --no-cache-dir --no-deps -e {project}" \
            in dockerfile
        apps = _default(env["SHADOWING_APP_CONFIGS"])
        assert apps.startswith(include + "/") and (ROOT / "include" / apps.removeprefix(include + "/")).is_dir()
        state = env["SHADOWING_STATE_DIR"]
        assert state.startswith(home + "/"), "the state folder must be writable by the airflow user"
    for source in {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if v.startswith("./")}:
        assert (ROOT / source).exists(), f"mount source {source} does not exist"


def _connection_ids() -> set[str]:
    ids = set()
    for path in [*(ROOT / "include" / "shadowing" / "orchestration").glob("*.py"), *(ROOT / "dags").glob("*.py")]:
        text = path.read_text()
        ids |= set(re.findall(r"(?:conn_id\s*[:=]\s*(?:str\s*=\s*)?|_CONN_ID\s*=\s*)[\"']([a-z0-9_]+)[\"']", text))
    return ids


def test_every_connection_the_code_uses_comes_from_the_environment(services: dict[str, Any]) -> None:
    ids = _connection_ids()
    assert {"aws_default", "shadowing_warehouse"} <= ids  # the scan sees the ones we know of
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        env = _env(services[name])
        missing = sorted(i for i in ids - set(OPTIONAL_CONNECTIONS) if f"AIRFLOW_CONN_{i.upper()}" not in env)
        assert missing == [], f"{name}: no AIRFLOW_CONN_* for {missing}"
    env = _env(services["airflow-worker"])
    # Unset, the pre-staging connection is aws_default's target (never real AWS beside an emulator).
    moto = '{"conn_type": "aws", "extra": {"endpoint_url": "http://moto:5000"}}'
    assert _default(env["AIRFLOW_CONN_AWS_PRESTAGE"], {"AIRFLOW_CONN_AWS_DEFAULT": moto}) == moto
    assert _default(env["AIRFLOW_CONN_AWS_PRESTAGE"]) == _default(env["AIRFLOW_CONN_AWS_DEFAULT"]) == "aws://"
    warehouse = env["AIRFLOW_CONN_SHADOWING_WAREHOUSE"]
    postgres_env = _env(services["postgres"])
    assert _default(warehouse) == f"postgres://shadowing:{_default(postgres_env['WAREHOUSE_PASSWORD'])}@postgres:5432/shadowing"


def _variables_read_by_the_code() -> set[str]:
    names = set()
    for path in [*(ROOT / "include" / "shadowing").rglob("*.py"), *(ROOT / "dags").glob("*.py"),
                 *(ROOT / "plugins").glob("*.py")]:
        text = path.read_text()
        names |= set(re.findall(r"(?:environ\.get|environ\[|getenv)\(?\s*[\"'](SHADOWING_[A-Z0-9_]+)[\"']", text))
        # also through a module constant: SCHEDULE_ENV = "SHADOWING_…" … os.environ.get(SCHEDULE_ENV, …)
        for constant, name in re.findall(r"^([A-Z][A-Z0-9_]*)\s*=\s*[\"'](SHADOWING_[A-Z0-9_]+)[\"']", text, re.M):
            if re.search(rf"(?:environ\.get|environ\[|getenv)\(?\s*{constant}\b", text):
                names.add(name)
    return names


def test_shadowing_variables_in_compose_are_the_ones_the_code_reads(services: dict[str, Any]) -> None:
    read = _variables_read_by_the_code()
    assert {"SHADOWING_REGION_PAIRS", "SHADOWING_APP_CONFIGS", "SHADOWING_STATE_DIR"} <= read
    env = _env(services["airflow-worker"])
    set_here = {k for k in env if k.startswith("SHADOWING_")}
    assert set_here - read == set(), f"compose sets variables nothing reads: {sorted(set_here - read)}"
    assert {"SHADOWING_REGION_PAIRS", "SHADOWING_APP_CONFIGS"} <= set_here
    from shadowing.settings import region_pairs

    os_env = dict(os.environ)
    try:
        os.environ["SHADOWING_REGION_PAIRS"] = _default(env["SHADOWING_REGION_PAIRS"])
        assert region_pairs()  # the compose default parses
    finally:
        os.environ.clear()
        os.environ.update(os_env)


def test_local_profile_runs_the_pinned_moto_and_the_seeder(services: dict[str, Any]) -> None:
    moto, seeder = services["moto"], services["world-seeder"]
    assert moto["profiles"] == ["local"] and seeder["profiles"] == ["local"]
    moto_pin = _pins(ROOT / "requirements.txt")["moto"]
    if "build" in moto:  # the project image: moto[server] from requirements.txt
        assert moto["build"] == "." and moto["image"] == services["airflow-init"]["image"]
        assert moto["entrypoint"][0] == "moto_server"
    else:
        assert moto["image"].split(":")[-1] == moto_pin, "moto image tag differs from requirements.txt"
    port = moto["ports"][0].split(":")[-1]
    assert f"localhost:{port}" in " ".join(moto["healthcheck"]["test"])
    command = " ".join(seeder["command"]) if isinstance(seeder["command"], list) else seeder["command"]
    assert command.count(f"--endpoint-url http://moto:{port}") == 2  # seed, then publish live metrics
    assert _depends_on(seeder) == {"moto": "service_healthy"}
    # Airflow must talk to that emulator: the README's local command points aws_default at it.
    readme = (ROOT / "README.md").read_text()
    assert f'"endpoint_url": "http://moto:{port}"' in readme and "--profile local up" in readme


def test_warehouse_init_script_is_valid_shell_and_quotes_the_password(tmp_path: Path) -> None:
    script = ROOT / "include" / "sql" / "docker-init-warehouse.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    fake = tmp_path / "psql"  # records how the script calls psql
    fake.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$0.args"\ncat > "$0.stdin"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "POSTGRES_USER": "airflow", "POSTGRES_DB": "airflow",
           "WAREHOUSE_PASSWORD": "it's $ecret"}
    subprocess.run(["bash", str(script)], check=True, env=env)
    args = (tmp_path / "psql.args").read_text().splitlines()
    sql = (tmp_path / "psql.stdin").read_text()
    assert "warehouse_password=it's $ecret" in args and "ON_ERROR_STOP=1" in args
    assert "CREATE USER shadowing WITH PASSWORD :'warehouse_password';" in sql
    assert "CREATE DATABASE shadowing OWNER shadowing;" in sql


def test_warehouse_init_script_creates_the_warehouse_on_postgresql(postgres_url: str) -> None:
    """On the real server (CI): the role and database the compose warehouse connection uses."""
    import sqlalchemy as sa

    if not shutil.which("psql"):
        pytest.skip("no psql client")
    url = sa.make_url(postgres_url)
    admin = sa.create_engine(url.set(drivername="postgresql+psycopg2"), isolation_level="AUTOCOMMIT")
    env = {"PATH": os.environ["PATH"], "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "PGPASSWORD": url.password or "", "POSTGRES_USER": url.username or "postgres",
           "POSTGRES_DB": url.database or "postgres", "WAREHOUSE_PASSWORD": "it's s3cret"}
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS shadowing"))
        conn.execute(sa.text("DROP ROLE IF EXISTS shadowing"))
    try:
        done = subprocess.run(["bash", str(ROOT / "include" / "sql" / "docker-init-warehouse.sh")], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with admin.connect() as conn:
            owner = conn.execute(sa.text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shadowing'"))
            assert owner.scalar() == "shadowing"
            assert conn.execute(sa.text("SELECT rolpassword IS NOT NULL FROM pg_authid "
                                        "WHERE rolname = 'shadowing'")).scalar()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS shadowing"))
            conn.execute(sa.text("DROP ROLE IF EXISTS shadowing"))
        admin.dispose()
