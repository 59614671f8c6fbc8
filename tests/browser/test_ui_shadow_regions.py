"""The Shadow Regions page in a real browser: Debian's headless Chromium driven by Playwright.

Starts the embedded stack (``python -m shadowing.devstack up``: moto server, seeded world, airflow standalone
with this project's DAGs and plugin), fills the warehouse (the refresh DAGs for the seeded primary region when
they are deployed, plus synthetic regions through the warehouse API so the page has 20 regions to list), logs
in, opens the page inside the Airflow UI, checks the regions, charts and graph, triggers a dry-run failover
through the page's form and waits for it to appear in the failover history. Screenshots go to
``test-artifacts/ui/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
PRIMARY = "us-east-1"
SYNTHETIC_REGIONS = ["us-east-2", "us-west-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
                     "eu-south-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
                     "ap-southeast-1", "ap-southeast-2", "ap-east-1", "ca-central-1", "sa-east-1", "me-south-1",
                     "af-south-1"]
REFRESH_DAGS = ("capacity_profiler", "dependency_mapper")


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing in CI: .ci/run must `apt-get install -y chromium`")
    pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}); `apt-get install -y chromium` to run browser tests")


class Airflow:
    """Just enough of Airflow's REST API (JWT from the simple auth manager)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url, self.user, self.password = url, user, password
        # The API server shares two cores with the scheduler and the DAG processor parsing every DAG at start-up:
        # give it time, and retry, rather than fail on the first slow answer.
        deadline = time.monotonic() + 180
        while True:
            try:
                self.token = self._request("POST", "/auth/token", {"username": user, "password": password},
                                           auth=False)["access_token"]
                break
            except (TimeoutError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        # airflow standalone keeps its metadata in SQLite: right after a cold start, with the scheduler and
        # the dag-processor writing, the API server may answer 500 (database is locked). Retry those.
        for attempt in range(6):
            req = urllib.request.Request(self.url + path, method=method, headers=headers, data=data)
            try:
                with urllib.request.urlopen(req, timeout=90) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == 5:
                    detail = exc.read()[:500].decode(errors="replace")
                    raise AssertionError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
                time.sleep(3 * (attempt + 1))
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def has_dag(self, dag_id: str) -> bool:
        try:
            self.get(f"/api/v2/dags/{dag_id}")
            return True
        except AssertionError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise

    def wait_for_dags(self, dag_ids: tuple[str, ...], timeout: float) -> set[str]:
        deadline = time.monotonic() + timeout
        while True:
            present = {d for d in dag_ids if self.has_dag(d)}
            if present == set(dag_ids) or time.monotonic() > deadline:
                return present
            time.sleep(3)

    def run_and_wait(self, dag_id: str, conf: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return self.wait_run(dag_id, run["dag_run_id"], timeout)

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed") or time.monotonic() > deadline:
                return run
            time.sleep(2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    _require_chromium()
    state = tmp_path_factory.mktemp("stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SHADOWING_"))}
    # airflow standalone starts its components as `airflow …`: the virtualenv's bin must be on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    argv = [sys.executable, "-m", "shadowing.devstack", "--state-dir", str(state),
            "--airflow-port", str(free_port()), "--aws-port", str(free_port())]
    try:
        up = subprocess.run([*argv[:3], "up", *argv[3:]], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
        assert up.returncode == 0, f"devstack up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        info = json.loads((state / "stack.json").read_text())
        info["password"] = json.loads((state / "passwords.json").read_text())[info["user"]]
        info["state"] = state
        yield info
    finally:
        subprocess.run([*argv[:3], "down", *argv[3:]], env=env, cwd=ROOT, capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def warehouse_filled(stack: dict[str, Any]) -> dict[str, Any]:
    """The seeded primary through the refresh DAGs when deployed; 19 more synthetic regions via the warehouse API."""
    from shadowing.ui.synthetic import populate
    from shadowing.warehouse import open_warehouse

    api = Airflow(stack["airflow_url"], stack["user"], stack["password"])
    present = api.wait_for_dags((*REFRESH_DAGS, "shadow_blueprints", "regional_failover"), timeout=120)
    engine = open_warehouse(f"sqlite:///{stack['state'] / 'warehouse.db'}")
    refreshed_by_dags = set(REFRESH_DAGS) <= present and "shadow_blueprints" in present
    if refreshed_by_dags:
        for dag_id in REFRESH_DAGS:
            run = api.run_and_wait(dag_id, {}, timeout=600)
            assert run["state"] == "success", f"{dag_id} run {run['dag_run_id']} ended {run['state']}"
        _wait_for_blueprint(engine, PRIMARY, timeout=600)
    populate(engine, names=SYNTHETIC_REGIONS if refreshed_by_dags else [PRIMARY, *SYNTHETIC_REGIONS],
             services=60, versions=3, failovers=2)
    return {"api": api, "present": present, "refreshed_by_dags": refreshed_by_dags}


def _wait_for_blueprint(engine: Any, region: str, timeout: float) -> None:
    from shadowing.warehouse.blueprints import current_blueprint

    deadline = time.monotonic() + timeout
    while current_blueprint(engine, region) is None:
        assert time.monotonic() < deadline, f"no blueprint for {region} after the refresh DAGs ran"
        time.sleep(3)


@pytest.fixture(scope="module")
def browser_page(stack: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        page = context.new_page()
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.goto(stack["airflow_url"] + "/auth/login/")
        page.get_by_label("Username").fill(stack["user"])
        page.get_by_label("Password").fill(stack["password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
        page.console_errors = console_errors  # type: ignore[attr-defined]
        yield page
        browser.close()


def _open_region(page: Any, stack: dict[str, Any], region: str, *, reload: bool = False) -> Any:
    """Open the page (optionally afresh) and a region's detail; on a timeout, say what the page and API show."""
    if reload:
        page.goto(stack["airflow_url"] + "/plugin/shadow-regions")
    frame = page.frame_locator("iframe")
    frame.locator(f"#regions tr[data-region='{region}']").click()
    try:
        frame.locator("#summary h2").filter(has_text=region).wait_for(timeout=120_000)
    except Exception as exc:
        page.screenshot(path=str(ARTIFACTS / f"shadow-regions-{region}-not-loaded.png"), full_page=True)
        api = Airflow(stack["airflow_url"], stack["user"], stack["password"])
        started = time.monotonic()
        try:
            answer = f"{len(json.dumps(api.get(f'/shadow-regions/api/regions/{region}')))} bytes"
        except AssertionError as api_exc:
            answer = str(api_exc)
        raise AssertionError(f"{region} did not load on the page ({page.url}); summary "
                             f"{frame.locator('#summary').inner_text()[:300]!r}; the API answered {answer} in "
                             f"{time.monotonic() - started:.1f} s") from exc
    return frame


def test_page_lists_regions_with_charts_graph_and_history(stack: dict[str, Any], warehouse_filled: dict[str, Any],
                                                        browser_page: Any) -> None:
    page = browser_page
    page.goto(stack["airflow_url"] + "/plugin/shadow-regions")
    frame = page.frame_locator("iframe")
    rows = frame.locator("#regions tbody tr[data-region]")
    rows.first.wait_for(timeout=60_000)
    assert rows.count() == 20
    _open_region(page, stack, PRIMARY)
    assert frame.locator("#capacity svg.qbar").count() >= 1
    assert frame.locator("#capacity svg.week polyline").count() >= 1
    assert frame.locator("#graph-svg g.node").count() >= 3
    assert frame.locator("#history tbody tr").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "shadow-regions-primary.png"), full_page=True)

    _open_region(page, stack, "eu-west-1")
    assert frame.locator("#capacity .capacity-row").count() == 40  # first page of 60 services
    assert frame.locator("#graph-svg g.node.cycle").count() == 2
    assert frame.locator("#failing-checks tbody tr").count() >= 1
    assert frame.locator("#failovers svg.timeline").count() == 2
    page.screenshot(path=str(ARTIFACTS / "shadow-regions-synthetic.png"), full_page=True)
    # The page needs nothing from the internet: every request went to the Airflow origin.
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]


def _trigger_from_page(page: Any, stack: dict[str, Any], mode: str) -> None:
    """Trigger ``regional_failover`` for the primary from the page's form; the run succeeds and joins the history."""
    frame = _open_region(page, stack, PRIMARY, reload=True)
    before = frame.locator(f"#failovers tr[data-mode='{mode}']").count()
    form = frame.locator("#trigger-form")
    assert form.locator("select[name=mode]").input_value() == "dry_run"  # the safe default
    button = form.get_by_role("button", name="Trigger failover")
    if mode != "dry_run":
        form.locator("select[name=mode]").select_option(mode)
    if mode == "live":  # a click alone never moves traffic: the region's name must be typed
        assert button.is_disabled()
        form.locator("input[name=confirm_region]").fill("us-west-2")
        assert button.is_disabled()
        form.locator("input[name=confirm_region]").fill(PRIMARY)
    button.click()
    try:
        frame.locator("#trigger-status [data-run-state]").wait_for(timeout=30_000)
    except Exception as exc:
        page.screenshot(path=str(ARTIFACTS / f"shadow-regions-trigger-{mode}-failed.png"), full_page=True)
        raise AssertionError(
            f"trigger did not start a run: {frame.locator('#trigger-status').inner_text()!r}") from exc
    try:
        frame.locator("#trigger-status [data-run-state='success'], #trigger-status [data-run-state='failed']"
                      ).wait_for(timeout=600_000)
    except Exception as exc:
        page.screenshot(path=str(ARTIFACTS / f"shadow-regions-{mode}-not-finished.png"), full_page=True)
        raise AssertionError(
            f"run did not finish on the page: {frame.locator('#trigger-status').inner_text()!r}") from exc
    page.screenshot(path=str(ARTIFACTS / f"shadow-regions-after-{mode.replace('_', '-')}.png"), full_page=True)
    assert frame.locator("#trigger-status [data-run-state]").get_attribute("data-run-state") == "success"
    rows = frame.locator(f"#failovers tr[data-mode='{mode}']")
    rows.nth(before).wait_for(timeout=60_000)
    assert rows.count() == before + 1
    assert rows.first.get_attribute("data-outcome") in {"succeeded", "success"}


def test_dry_run_failover_from_the_page_appears_in_history(stack: dict[str, Any], warehouse_filled: dict[str, Any],
                                                         browser_page: Any) -> None:
    assert "regional_failover" in warehouse_filled["present"], "dags/regional_failover.py is not deployed"
    _trigger_from_page(browser_page, stack, "dry_run")


def test_drill_then_live_failover_from_the_page(stack: dict[str, Any], warehouse_filled: dict[str, Any],
                                               browser_page: Any) -> None:
    """The two modes that touch the (emulated) shadow, from the same form: a drill, then a typed-confirmed live."""
    if not warehouse_filled["refreshed_by_dags"]:
        pytest.skip("the primary's blueprint is synthetic: nothing to launch from")
    _trigger_from_page(browser_page, stack, "drill")
    _trigger_from_page(browser_page, stack, "live")


def test_data_docs_open_from_the_page_offline(stack: dict[str, Any], warehouse_filled: dict[str, Any],
                                              browser_page: Any) -> None:
    """The page's Data Docs link opens GX's site of the latest validations; every asset comes from Airflow.

    Airflow sandboxes plugin iframes without ``allow-popups``: the link opens in the page's own frame.
    """
    page = browser_page
    frame = _open_region(page, stack, PRIMARY, reload=True)
    requests: list[str] = []
    failed: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    # A navigation cancels what the page was still loading (ERR_ABORTED): not a missing asset.
    page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "") else failed.append(
        f"{r.url} {r.failure}"))
    frame.get_by_role("link", name="validation Data Docs", exact=True).click()  # the region's, not the header's
    # A build may be running (a refresh stored a newer artefact): the "building" page reloads by itself.
    deadline = time.monotonic() + 600
    while True:
        # The plugin's frame (Airflow mirrors its path in the top URL, so not "any frame with data-docs in it").
        docs = next((f for f in page.frames if f != page.main_frame and "/data-docs/" in f.url), None)
        if docs is not None and "Great Expectations" in docs.title():
            break
        if time.monotonic() > deadline:
            page.screenshot(path=str(ARTIFACTS / "data-docs-not-shown.png"))
            raise AssertionError(f"Data Docs not shown in time: {[(f.url, f.title()) for f in page.frames]}")
        page.wait_for_timeout(3000)
    docs.wait_for_load_state("load")
    # The index table is paginated by bootstrap-table from data in the page: check the data, not the rows shown.
    source = docs.content()
    assert "capacity_fingerprint" in source and "dependency_graph_edges" in source
    assert f"{PRIMARY}-fingerprint-" in source and f"{PRIMARY}-graph-" in source
    assert docs.locator("tr[data-href*='validations/']").count() >= 1  # rows link to their result pages
    # The vendored scripts ran (no CDN): jQuery, Bootstrap and bootstrap-table are loaded.
    assert docs.evaluate("typeof window.jQuery === 'function' && typeof jQuery.fn.bootstrapTable === 'function'"
                         " && typeof jQuery.fn.modal === 'function'")
    page.screenshot(path=str(ARTIFACTS / "data-docs-in-airflow.png"))

    # The primary's newest fingerprint validation (its row may be on another page of the table).
    newest = max(re.findall(rf"validations/capacity_fingerprint/{PRIMARY}-fingerprint-\d+/[^'\"]+?\.html", source),
                 key=lambda path: int(path.split("-fingerprint-")[1].split("/")[0]))
    docs.goto(docs.url.split("/data-docs/")[0] + "/data-docs/" + newest)
    docs.wait_for_load_state("load")
    docs.get_by_text("Overview").first.wait_for(timeout=60_000)
    assert "capacity_fingerprint" in docs.locator("body").inner_text()
    page.screenshot(path=str(ARTIFACTS / "data-docs-validation-in-airflow.png"))
    foreign = [u for u in requests if not u.startswith((stack["airflow_url"], "data:", "blob:"))]
    assert foreign == [] and failed == [], (foreign, failed)

    # The same site on its own (as from the browser's "open in new tab"), full length, for a human to look at.
    alone = page.context.new_page()
    alone.goto(stack["airflow_url"] + "/shadow-regions/data-docs/")
    assert "Great Expectations" in alone.title()
    alone.screenshot(path=str(ARTIFACTS / "data-docs-index.png"), full_page=True)
    alone.close()
