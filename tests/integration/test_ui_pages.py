"""The Shadow Regions app on a real warehouse (SQLite and PostgreSQL) and inside Airflow's API server app."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shadowing.ui.synthetic import populate
from shadowing.ui.web import ASSETS_DIR, create_app
from shadowing.warehouse import open_warehouse


@pytest.fixture
def client(warehouse_url: str, tmp_path: Path) -> TestClient:
    engine = open_warehouse(warehouse_url)
    populate(engine, regions=3, services=30, versions=3, failovers=2, seed=7)
    app = create_app(lambda: engine, region_pairs=lambda: {"us-east-1": "us-west-2", "eu-north-9": "eu-west-1"},
                     data_docs_dir=lambda: None)
    return TestClient(app)


def test_region_list_and_detail(client: TestClient) -> None:
    regions = client.get("/api/regions").json()["regions"]
    by_name = {r["region"]: r for r in regions}
    assert set(by_name) == {"us-east-1", "us-east-2", "us-west-1", "eu-north-9"}
    east = by_name["us-east-1"]
    assert east["blueprint_version"] == 3 and east["shadow_region"] == "us-west-2"
    assert east["ready"] is False and east["failing_checks"] == 3  # svc-007, db-017, svc-027 lack a shadow AMI
    assert east["health"]["healthy"] is True and east["last_failover"]["outcome"] == "succeeded"
    assert east["last_failover"]["mode"] == "dry_run"  # the newest by start time, not by row id
    assert by_name["eu-north-9"]["blueprint_version"] is None  # configured, nothing refreshed yet

    detail = client.get("/api/regions/us-east-1").json()
    assert detail["blueprint"]["version"] == 3 and detail["blueprint"]["services"] == 30
    assert detail["blueprint"]["age_seconds"] > 0
    assert {c["subject"] for c in detail["readiness"]["failing"]} == {"svc-007", "db-017", "svc-027"}
    assert len(detail["capacity"]["services"]) == 30
    assert all(len(s["hour_of_week"]) == 168 and s["capacity"] for s in detail["capacity"]["services"])
    graph = detail["graph"]
    assert len(graph["nodes"]) == 30 and graph["cycles"] and graph["tiers"][0]["label"] == "tier 0"
    assert [v["version"] for v in detail["blueprint_history"]] == [3, 2, 1]
    assert detail["blueprint_history"][0]["is_current"] and detail["blueprint_history"][0]["diff"]["changed"]
    assert len(detail["failovers"]) == 2
    steps = detail["failovers"][0]["steps"]
    assert [s["name"] for s in steps][0] == "preflight" and steps[0]["offset_seconds"] == 0
    assert detail["failovers"][0]["recovery_seconds"] > sum(s["duration_seconds"] for s in steps) - 1e-6
    # The invalid graph stored after the valid one is reported, and the valid one stays current.
    status = detail["validation"]["dependency_graph"]
    assert status["latest_valid"] is False and status["current_valid_id"] == graph["graph_id"]


def test_errors_are_clear(client: TestClient) -> None:
    assert client.get("/api/regions/ap-nowhere-1").status_code == 404
    assert client.get("/api/regions/Bad%20Region").status_code == 400
    configured_only = client.get("/api/regions/eu-north-9").json()
    assert configured_only["blueprint"] is None and configured_only["capacity"] is None


def test_page_and_assets_are_served_without_any_external_url(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Shadow Regions" in page.text
    for asset in ("app.js", "app.css", "icon.svg"):
        assert client.get(f"/assets/{asset}").status_code == 200
    for path in ASSETS_DIR.iterdir():
        text = path.read_text()
        # No CDN: nothing is loaded from another origin (the SVG namespace URI is not a fetch).
        assert not [u for u in re.findall(r"https?://[^\s\"')]+", text) if "www.w3.org" not in u], path


def test_validation_docs_fallback_lists_failed_expectations(client: TestClient) -> None:
    docs = client.get("/data-docs/")
    assert docs.status_code == 200
    assert "expect_graph_to_have_nodes" in docs.text and "(current)" in docs.text
    assert client.get("/data-docs/../../etc/passwd").status_code == 404


def test_data_docs_site_is_served_when_built(warehouse_url: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "validations").mkdir(parents=True)
    (site / "index.html").write_text("<html>gx site</html>")
    (site / "validations" / "r.html").write_text("<html>one result</html>")
    app = create_app(lambda: open_warehouse(warehouse_url), data_docs_dir=lambda: site)
    client = TestClient(app)
    assert client.get("/data-docs/").text == "<html>gx site</html>"
    assert client.get("/data-docs/validations/r.html").text == "<html>one result</html>"
    assert "Validation results" in client.get("/data-docs/validations.html").text
    assert client.get("/data-docs/../secret").status_code == 404


def test_plugin_is_registered_and_requires_an_airflow_login(airflow_db: str, sqlite_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside Airflow's API server app: the view is in the nav, the app is mounted, anonymous calls get 401."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_SHADOWING_WAREHOUSE",
                       json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": sqlite_url}}))
    from airflow import plugins_manager
    from airflow.api_fastapi.app import create_app as create_airflow_app

    apps, _ = plugins_manager.get_fastapi_plugins()
    views, _ = plugins_manager._get_ui_plugins()
    assert any(a["url_prefix"] == "/shadow-regions" for a in apps)
    [view] = [v for v in views if v["url_route"] == "shadow-regions"]
    assert view["destination"] == "nav" and not view["href"].startswith("/")

    client = TestClient(create_airflow_app())
    assert client.get("/shadow-regions/api/regions").status_code == 401
    assert client.get("/shadow-regions/").status_code == 401


def test_gx_data_docs_of_the_latest_validations_are_built_served_and_offline(sqlite_url: str,
                                                                               tmp_path: Path) -> None:
    """GX's own site, built from the stored artefacts (the newest and the current valid one), no CDN asset,
    and known stale as soon as a newer artefact is stored."""
    from datetime import UTC, datetime

    from shadowing.quality.data_docs import (
        latest_artefact_ids,
        remote_asset_references,
        site_is_current,
        site_stamp,
    )
    from shadowing.warehouse.store import save_fingerprint

    engine = open_warehouse(sqlite_url)
    populate(engine, regions=2, services=4, versions=1, failovers=1, seed=3)
    # A newer, failed fingerprint: the docs show it and the valid one that stays current.
    with engine.connect() as conn:
        fingerprint = conn.execute(sa.text("SELECT payload FROM capacity_fingerprints WHERE id = 1")).scalar()
    fingerprint = json.loads(fingerprint) if isinstance(fingerprint, str) else fingerprint
    first = next(iter(fingerprint["services"].values()))
    first["metrics"]["cpu_utilization"]["max"] = 250.0  # utilisation above 100 %: the suite must fail it

    def store_broken() -> int:
        return save_fingerprint(engine, region="us-east-1", fingerprint=fingerprint, valid=False,
                                errors=["capacity_fingerprint: expect_column_values_to_be_between utilisation_max"],
                                run_id="manual__broken", window_start=datetime.now(UTC), window_end=datetime.now(UTC))

    new_id = store_broken()
    site = tmp_path / "data_docs"
    client = TestClient(create_app(lambda: engine, region_pairs=lambda: {"us-east-1": "us-west-2"},
                                   data_docs_dir=lambda: site, build_data_docs=True))
    assert client.get("/api/regions/us-east-1").json()["data_docs"] == {"great_expectations": True}

    index = client.get("/data-docs/")
    assert index.status_code == 200, index.text
    assert "Data Docs created by Great Expectations" in index.text
    assert "capacity_fingerprint" in index.text and "dependency_graph_edges" in index.text
    run_name = f"us-east-1-fingerprint-{new_id}"  # region, artefact, stored id
    assert run_name in index.text and "us-east-1-fingerprint-1" in index.text
    [page] = site.glob(f"validations/capacity_fingerprint/{run_name}/*/us-east-1.html")
    result = client.get("/data-docs/" + page.relative_to(site).as_posix())
    assert result.status_code == 200
    assert "capacity_fingerprint" in result.text and "Failed" in result.text and "utilisation_max" in result.text

    pages = [*site.rglob("*.html"), *site.glob("static/styles/*.css")]
    assert len(pages) >= 6
    for path in pages:
        assert remote_asset_references(path.read_text()) == [], path
    assert client.get("/data-docs/static/vendor/bootstrap/bootstrap.min.css").status_code == 200
    assert client.get("/data-docs/static/vendor/jquery/jquery.min.js").status_code == 200
    assert "Validation results" in client.get("/data-docs/validations.html").text  # ours stays beside it

    assert site_is_current(site, site_stamp(latest_artefact_ids(engine, ["us-east-1"])))
    store_broken()  # the next visit rebuilds (not repeated here: a build is GX's import, seconds)
    assert not site_is_current(site, site_stamp(latest_artefact_ids(engine, ["us-east-1"])))
