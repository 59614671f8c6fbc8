"""The auto-failover switch is audited with who flipped it, from Airflow's own event log (its REST API,
in-process), in the warehouse (SQLite and PostgreSQL); and failovers name who triggered them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from shadowing.health.switch import VariableEdit, attribute, audit_switch, variable_edits
from shadowing.orchestration.health import switch_edit_query
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.operations import SWITCH_DISABLED, SWITCH_ENABLED, auto_failover_decisions

KEY = "shadowing_auto_failover"
REGION = "us-east-1"


class _Api:
    """Airflow's real REST API app in-process, logged in as one user (SimpleAuthManager)."""

    def __init__(self, client: Any, user: str, password: str) -> None:
        self.client = client
        token = client.post("/auth/token", json={"username": user, "password": password})
        assert token.status_code in (200, 201), token.text
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, headers=self.headers, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response.json() if response.content else None

    def set_variable(self, key: str, value: str) -> None:
        """Create or update a Variable as the UI does (POST, or PATCH when it exists)."""
        response = self.client.patch(f"/api/v2/variables/{key}", headers=self.headers,
                                     json={"key": key, "value": value})
        if response.status_code == 404:
            self.call("POST", "/api/v2/variables", json={"key": key, "value": value})
        else:
            assert response.status_code == 200, response.text

    def switch_edits(self, after: datetime | None, before: datetime) -> list[VariableEdit]:
        entries = self.call("GET", "/api/v2/eventLogs", params=switch_edit_query(after, before))["event_logs"]
        return variable_edits(entries, KEY)


@pytest.fixture(scope="module")
def airflow_api(airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import socket
    import threading
    import time

    import uvicorn
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps({"alice": "alice-pw", "bob": "bob-pw", "auditor": "auditor-pw"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:admin,bob:admin,auditor:viewer")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        # The execution API validates tokens with this key, and a fresh AIRFLOW_HOME may have none yet
        # (standalone generates one): fixed here so the fixture never depends on what ran before it.
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "shadowing-tests-jwt-secret-not-a-credential")
        app = create_app()
        client = TestClient(app)
        # the same app over real HTTP, for the monitor's own client (urllib, token, query encoding)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "the API server did not start"
        users = {user: _Api(client, user, f"{user}-pw") for user in ("alice", "bob", "auditor")}
        yield {**users, "url": f"http://127.0.0.1:{port}"}
        server.should_exit = True
        thread.join(timeout=10)


def _cli_set(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`airflow variables set` in-process: the CLI's own action logger writes the event-log row."""
    import sys

    from airflow.cli import cli_parser

    argv = ["airflow", "variables", "set", KEY, value]
    monkeypatch.setattr(sys, "argv", argv)
    args = cli_parser.get_parser().parse_args(argv[1:])
    args.func(args)


def test_edits_through_api_bulk_and_cli_are_attributed(airflow_api: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = airflow_api["alice"], airflow_api["bob"]
    since = datetime.now(UTC) - timedelta(seconds=1)
    alice.set_variable(KEY, json.dumps({REGION: True}))
    alice.set_variable("some_other_variable", "1")
    bob.call("PATCH", "/api/v2/variables", json={"actions": [{"action": "update", "entities": [
        {"key": KEY, "value": json.dumps({REGION: False})}]}]})
    _cli_set(json.dumps({REGION: True}), monkeypatch)
    edits = alice.switch_edits(since, datetime.now(UTC) + timedelta(seconds=1))
    # Airflow logs the attempt before the handler runs: a PATCH answered 404 then a POST are two entries
    assert [e.event for e in edits][-2:] == ["bulk_variables", "cli_variables_set"]
    assert {e.event for e in edits[:-2]} <= {"post_variable", "patch_variable"}
    assert [e.who for e in edits[:-2]] == ["alice"] * (len(edits) - 2) and edits[-2].who == "bob"
    assert "(CLI on " in edits[-1].who and all(e.certain for e in edits)
    who, evidence = attribute(edits, run_id="r1")
    assert who == edits[-1].who and evidence["event"] == "cli_variables_set"
    assert edits[-1].at > since
    # the window excludes what happened before the last audited flip
    assert alice.switch_edits(edits[-1].at, datetime.now(UTC) + timedelta(seconds=1)) == []
    # the REST API masks the value in the event log (the CLI logs its command line as typed)
    entries = alice.call("GET", "/api/v2/eventLogs", params=switch_edit_query(since, datetime.now(UTC)))
    api_entries = [e for e in entries["event_logs"] if not e["event"].startswith("cli_")]
    assert api_entries and all(REGION not in (e["extra"] or "") for e in api_entries)


def test_switch_flips_are_audited_once_with_who(airflow_api: dict[str, Any], warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    alice = airflow_api["alice"]
    t0 = datetime.now(UTC)

    def run(n: int, enabled: bool, find: Any = alice.switch_edits) -> int | None:
        return audit_switch(engine, REGION, enabled, run_id=f"scheduled__{n}", now=t0 + timedelta(seconds=n),
                            find_edits=find)

    assert run(1, False) is None  # never audited and off: the default, nothing to say
    alice.set_variable(KEY, json.dumps({REGION: True}))
    assert run(2, True) is not None
    assert run(3, True) is None  # unchanged: one row per flip, not per run
    # switched off without a trace in Airflow (an AIRFLOW_VAR_ environment variable, a secrets backend …)
    assert run(4, False) is not None

    def unreachable(after: datetime | None, before: datetime) -> list[VariableEdit]:
        raise ConnectionRefusedError("API server down")

    assert run(5, True, unreachable) is not None  # the flip is audited even when the log cannot be read
    rows = list(reversed(auto_failover_decisions(engine, REGION)))
    assert [r.decision for r in rows] == [SWITCH_ENABLED, SWITCH_DISABLED, SWITCH_ENABLED]
    assert [r.auto_failover for r in rows] == [True, False, True]
    assert rows[0].detail["changed_by"] == "alice" and rows[0].detail["event"] in ("post_variable", "patch_variable")
    assert rows[0].reason == f"auto-failover turned on for {REGION} by alice"
    assert rows[1].detail["changed_by"] == "unknown (observed by primary_health_monitor run scheduled__4)"
    assert rows[2].detail["changed_by"].startswith("unknown (observed by primary_health_monitor run scheduled__5")
    assert "API server down" in rows[2].detail["lookup_error"]
    assert [r.run_id for r in rows] == ["scheduled__2", "scheduled__4", "scheduled__5"]


def test_failover_names_who_triggered_it() -> None:
    from shadowing.orchestration.failover import triggered_by

    def context(trigger: str, user: str | None, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        run = SimpleNamespace(triggering_user_name=user, conf=conf or {}, run_type="manual", run_id="manual__1")
        return {"dag_run": run, "params": {"trigger": trigger}}

    assert triggered_by(context("manual", "alice")) == "alice"
    assert triggered_by(context("manual", None)) == "unknown (manual run manual__1)"
    assert triggered_by(context("sensor", None, {"monitor_run_id": "scheduled__2026"})) \
        == "primary_health_monitor run scheduled__2026"
    assert triggered_by(context("sensor", "bob", {"monitor_run_id": "manual__7"})) \
        == "primary_health_monitor run manual__7 (started by bob)"


def test_the_monitor_reads_the_event_log_over_http_as_a_viewer(airflow_api: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowing.errors import ShadowingError
    from shadowing.orchestration.health import switch_edits

    since = datetime.now(UTC) - timedelta(seconds=1)
    airflow_api["bob"].set_variable(KEY, json.dumps({REGION: False}))
    monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_API", raising=False)
    with pytest.raises(ShadowingError, match="airflow_api"):
        switch_edits(since, datetime.now(UTC))
    host, port = airflow_api["url"].rsplit(":", 1)
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({
        "conn_type": "http", "host": host.removeprefix("http://"), "port": int(port), "schema": "http",
        "login": "auditor", "password": "auditor-pw"}))
    edits = switch_edits(since, datetime.now(UTC) + timedelta(seconds=1))
    assert edits and edits[-1].who == "bob" and edits[-1].event in ("post_variable", "patch_variable")
    # a viewer reads the log but cannot flip the switch itself
    denied = airflow_api["auditor"].client.patch(f"/api/v2/variables/{KEY}", headers=airflow_api["auditor"].headers,
                                                 json={"key": KEY, "value": "{}"})
    assert denied.status_code == 403
