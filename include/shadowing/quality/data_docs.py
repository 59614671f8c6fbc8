"""Great Expectations Data Docs of the latest validations, built from the artefacts stored in the warehouse.

Every refresh stores its capacity fingerprint and dependency graph with its verdict, valid or not. This module
re-validates, per region, the newest stored artefact of each kind (and the current valid one when the newest
failed) with the same suites the refresh used, and renders the results with GX's own site builder: index,
one page per validation result, one per suite. The re-validation is faithful: the capacity suite's freshness
reference is the window end, as at refresh time; each result page's ``meta`` carries the stored verdict.

GX's templates load Bootstrap, jQuery, Font Awesome, Vega… from CDNs and its logo from S3; the site gets
local copies (``data_docs_vendor/``, the npm packages' files) and every such link is rewritten to them, so
it reads offline (even from ``file://``).

    site = refresh_site(engine, ["us-east-1"], Path(".shadowing/data_docs"))   # no-op while up to date
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).with_name("data_docs_vendor")
SITE_NAME = "shadowing"
_STAMP = ".shadowing-stamp.json"
RETRY_AFTER_FAILURE_SECONDS = 60.0
_ASSET_NAMES = {"fingerprint": "capacity_fingerprint", "graph": "dependency_graph"}  # "Asset Name" in the docs
_LOGO = "static/images/logo-long.png"

# CDN / S3 asset → file under the site's static/vendor/ (or static/, for GX's own images).
_ASSETS: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark/bootstrap-prefers-dark.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega/vega-embed.min.js",
}
_GX_IMAGES = re.compile(r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/[\w.-]+(\?[^\"')\s]*)?")
# Subresource-integrity hashes name the CDN's bytes; the local copies are served same-origin without them.
_SRI = re.compile(r'\s+(integrity="[^"]*"|crossorigin="[^"]*")')
# What a browser would fetch by itself: src/href of script, link and img, and CSS url(...).
ASSET_REFERENCE = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=[\"'](https?://[^\"']+)|"
                             r"url\(\s*[\"']?(https?://[^\"')]+)", re.IGNORECASE)


@dataclass(frozen=True)
class StoredValidation:
    """One stored artefact to validate: the suite, the frame it checks, and what the warehouse recorded."""

    kind: str  # "fingerprint" | "graph"
    region: str
    artefact_id: int
    run_id: str | None
    stored_at: datetime
    stored_valid: bool
    stored_errors: list[str]
    suite: dict[str, Any]
    frame: pd.DataFrame = field(repr=False)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _frame(kind: str, payload: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    if kind == "fingerprint":
        from shadowing.quality.core import load_suite_dict
        from shadowing.quality.fingerprint import SUITE_PATH, flatten

        end = (payload.get("window") or {}).get("end")
        try:
            now = datetime.fromisoformat(str(end).replace("Z", "+00:00")).timestamp()
        except ValueError:
            now = None
        return load_suite_dict(SUITE_PATH), flatten(payload, now=now)
    from shadowing.dependencies.validation import SUITE_PATH as GRAPH_SUITE
    from shadowing.dependencies.validation import edge_table, load_suite_config

    return load_suite_config(GRAPH_SUITE), edge_table(payload)


def _tables() -> tuple[tuple[str, sa.Table], ...]:
    from shadowing.warehouse.tables import capacity_fingerprints, dependency_graphs

    return ("fingerprint", capacity_fingerprints), ("graph", dependency_graphs)


def latest_artefact_ids(engine: Engine, regions: Iterable[str] = ()) -> list[tuple[str, str, int]]:
    """(kind, region, id) per region and kind: the newest stored artefact, plus the current (newest valid)
    one when the newest failed validation. Cheap: ids only."""
    picked: list[tuple[str, str, int]] = []
    with engine.connect() as conn:
        for kind, table in _tables():
            newest = dict(conn.execute(sa.select(table.c.region, sa.func.max(table.c.id))
                                       .group_by(table.c.region)).all())
            current = dict(conn.execute(sa.select(table.c.region, sa.func.max(table.c.id))
                                        .where(table.c.valid.is_(True)).group_by(table.c.region)).all())
            for region in sorted(set(newest) | set(regions)):
                ids = sorted({i for i in (newest.get(region), current.get(region)) if i is not None})
                picked.extend((kind, region, i) for i in ids)
    return picked


def load_stored_validations(engine: Engine, keys: list[tuple[str, str, int]]) -> list[StoredValidation]:
    """The artefacts behind ``keys`` with the suite and frame each is validated on."""
    tables = dict(_tables())
    loaded: list[StoredValidation] = []
    with engine.connect() as conn:
        for kind, region, artefact_id in keys:
            table = tables[kind]
            row = conn.execute(sa.select(table).where(table.c.id == artefact_id)).mappings().one()
            suite, frame = _frame(kind, row["payload"] or {})
            loaded.append(StoredValidation(
                kind=kind, region=region, artefact_id=artefact_id, run_id=row["run_id"],
                stored_at=_as_utc(row["created_at"]), stored_valid=bool(row["valid"]),
                stored_errors=[str(e) for e in row["errors"] or []], suite=suite, frame=frame))
    return loaded


def _run_name(item: StoredValidation) -> str:
    return f"{item.region}-{item.kind}-{item.artefact_id}"


def build_site(validations: list[StoredValidation], site_dir: Path) -> Path:
    """Validate each stored artefact and render GX Data Docs into ``site_dir`` (replaced as a whole)."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from shadowing.quality.core import context as quiet_gx
    from shadowing.quality.core import validate_frame

    quiet_gx()  # quiets GX's logging and progress bars once per process
    import great_expectations as gx

    site_dir = Path(site_dir)
    staging = site_dir.with_name(f".{site_dir.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    ctx = gx.get_context(mode="ephemeral")  # a fresh in-memory store per build: only these results are listed
    ctx.add_data_docs_site(SITE_NAME, {  # type: ignore[arg-type]
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(staging)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "show_cta_footer": False},
    })
    for item in validations:
        result = validate_frame(item.frame, item.suite, name=_ASSET_NAMES[item.kind], result_format="SUMMARY")
        suite_name = result.suite_name
        result.meta.update({"shadowing": {
            "region": item.region, "artefact": item.kind, "artefact_id": item.artefact_id, "run_id": item.run_id,
            "stored_at": item.stored_at.isoformat(), "stored_valid": item.stored_valid,
            "stored_errors": item.stored_errors[:30]}})
        if not any(s.name == suite_name for s in ctx.suites.all()):
            ctx.suites.add(gx.ExpectationSuite(name=suite_name, expectations=item.suite.get("expectations", []),
                                               meta=item.suite.get("meta") or {}))
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
            run_id=RunIdentifier(run_name=_run_name(item), run_time=item.stored_at),
            batch_identifier=item.region)
        ctx.validation_results_store.set(key, result)
    ctx.build_data_docs(site_names=[SITE_NAME])
    make_offline(staging, VENDOR_DIR)
    if site_dir.exists():
        old = site_dir.with_name(f".{site_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        site_dir.rename(old)
        staging.rename(site_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        site_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(site_dir)
    return site_dir


def make_offline(site_dir: Path, vendor_dir: Path = VENDOR_DIR) -> None:
    """Copy the vendored assets into ``static/vendor`` and point every CDN/S3 asset link of the site at them."""
    shutil.copytree(vendor_dir, site_dir / "static" / "vendor", dirs_exist_ok=True)
    for page in [*site_dir.rglob("*.html"), *site_dir.glob("static/styles/*.css")]:
        up = "../" * (len(page.relative_to(site_dir).parts) - 1)
        text = page.read_text(encoding="utf-8")
        for url, local in _ASSETS.items():
            text = text.replace(f'"{url}"', f'"{up}static/vendor/{local}"')
        text = _GX_IMAGES.sub(f"{up}{_LOGO}", text)
        text = _SRI.sub("", text)
        page.write_text(text, encoding="utf-8")


def remote_asset_references(html_or_css: str) -> list[str]:
    """The http(s) URLs a browser would load by itself from this page (empty for an offline page)."""
    return [a or b for a, b in ASSET_REFERENCE.findall(html_or_css)]


def site_stamp(keys: list[tuple[str, str, int]]) -> dict[str, Any]:
    """What the site was built from: the artefacts, the suites' text and the GX version."""
    from importlib.metadata import version

    from shadowing.dependencies.validation import SUITE_PATH as GRAPH_SUITE
    from shadowing.quality.fingerprint import SUITE_PATH as CAPACITY_SUITE

    return {"artefacts": [list(k) for k in keys], "gx": version("great_expectations"),
            "suites": [Path(p).read_text() for p in (CAPACITY_SUITE, GRAPH_SUITE)]}


def site_is_current(site_dir: Path, stamp: dict[str, Any]) -> bool:
    try:
        return json.loads((site_dir / _STAMP).read_text()) == stamp and (site_dir / "index.html").is_file()
    except (OSError, ValueError):
        return False


def refresh_site(engine: Engine, regions: Iterable[str], site_dir: Path) -> Path:
    """Rebuild the site when a newer artefact (or another suite) exists; a no-op otherwise.

    One builder at a time per site (a file lock: the API server may run several workers); a failed build
    leaves the previous site in place.
    """
    site_dir = Path(site_dir)
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(site_dir.with_name(f".{site_dir.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            keys = latest_artefact_ids(engine, regions)
            stamp = site_stamp(keys)
            if site_is_current(site_dir, stamp):
                return site_dir
            log.info("building Data Docs of %d stored validations into %s", len(keys), site_dir)
            build_site(load_stored_validations(engine, keys), site_dir)
            (site_dir / _STAMP).write_text(json.dumps(stamp))
            return site_dir
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class SiteRefresher:
    """Keeps a Data Docs site up to date for a long-running server (the Shadow Regions page).

    The up-to-date check is a cheap query in-process; a rebuild runs as a separate process
    (``python -m shadowing.quality.data_docs``): GX takes seconds of imports and CPU that would otherwise
    stall the server's other requests. At most one build runs at a time; callers may wait for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._failed_at = -1e9
        self.last_error: str | None = None

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self._proc = None
            if proc.returncode != 0:
                self.last_error = f"Data Docs build failed (exit {proc.returncode}); see {self._log_path}"
                self._failed_at = time.monotonic()
                log.warning(self.last_error)
            else:
                self.last_error = None

    def refresh(self, engine: Engine, regions: Iterable[str], site_dir: Path, *, wait: float = 0.0) -> str:
        """Start a rebuild if the site is stale; wait up to ``wait`` s. Returns current | building | failed."""
        site_dir, regions = Path(site_dir), list(regions)
        with self._lock:
            self._reap()
            if self._proc is None:
                if self.last_error and time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_SECONDS:
                    return "failed"  # the same data would fail the same way: do not rebuild on every page load
                keys = latest_artefact_ids(engine, regions)
                if site_is_current(site_dir, site_stamp(keys)):
                    return "current"
                site_dir.parent.mkdir(parents=True, exist_ok=True)
                log_path = self._log_path = site_dir.with_name(f".{site_dir.name}.log")
                env = dict(os.environ, SHADOWING_DATA_DOCS_WAREHOUSE=engine.url.render_as_string(hide_password=False))
                with open(log_path, "wb") as out:
                    # Niced: the build yields the CPU to the server's requests and to the scheduler.
                    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
                    self._proc = subprocess.Popen(
                        [*nice, sys.executable, "-m", "shadowing.quality.data_docs", "--site", str(site_dir),
                         *[a for r in regions for a in ("--region", r)]],
                        stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            proc = self._proc
        if wait > 0:
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                return "building"
        with self._lock:
            self._reap()
            if self._proc is not None:
                return "building"
        return "failed" if self.last_error else "current"


def main(argv: list[str] | None = None) -> int:
    """Build (or confirm up to date) the Data Docs site of the warehouse in ``SHADOWING_DATA_DOCS_WAREHOUSE``."""
    import argparse

    from shadowing.warehouse import open_warehouse

    parser = argparse.ArgumentParser(prog="python -m shadowing.quality.data_docs")
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--region", action="append", default=[])
    parser.add_argument("--warehouse-url", default=os.environ.get("SHADOWING_DATA_DOCS_WAREHOUSE"))
    args = parser.parse_args(argv)
    if not args.warehouse_url:
        parser.error("no warehouse: pass --warehouse-url or set SHADOWING_DATA_DOCS_WAREHOUSE")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)  # ours only: GX logs every decorator it registers at INFO
    site = refresh_site(open_warehouse(args.warehouse_url, apply_migrations=False), args.region, args.site)
    print(f"Data Docs: {site / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
