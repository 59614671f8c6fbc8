"""The FastAPI app behind the "Shadow Regions" page (Airflow-free: auth and engine are injected).

    GET  /                      the page (static HTML; data is fetched lazily, one JSON per region)
    GET  /assets/<file>         its JS and CSS (vendored: no CDN, works offline)
    GET  /api/regions           landing table
    GET  /api/regions/<region>  one region's page data
    GET  /data-docs/...         Great Expectations Data Docs of the latest validations (rebuilt when a newer
                                artefact is stored; offline: vendored assets), ours at /data-docs/validations.html

The Airflow plugin mounts it with ``dependencies=[Depends(airflow auth)]`` and ``warehouse_engine``; tests mount it
with a plain engine. Blocking SQL runs in the threadpool (sync endpoints), never on the event loop.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine

from shadowing.ui.pages import region_detail, region_list
from shadowing.ui.validation_docs import render_validation_docs

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).with_name("assets")
# How long a Data Docs request waits for a rebuild before answering "building" (a page that reloads itself).
DATA_DOCS_WAIT_SECONDS = 90.0
_BUILDING_PAGE = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
                  "<title>Building Data Docs</title></head><body style='font:15px system-ui,sans-serif;margin:32px'>"
                  "<h1>Building the Great Expectations Data Docs…</h1><p>The latest stored artefacts are being "
                  "validated and rendered; this page reloads by itself. Meanwhile: "
                  "<a href='validations.html'>the validation summary</a>.</p>{note}</body></html>")
_REGION = re.compile(r"^[a-z0-9-]{1,64}$")
_NO_STORE = {"Cache-Control": "no-store"}


def create_app(engine: Callable[[], Engine], *, region_pairs: Callable[[], Mapping[str, str]] = dict,
               data_docs_dir: Callable[[], Path | None] = lambda: None, build_data_docs: bool = False,
               dependencies: Sequence[Any] = ()) -> FastAPI:
    """The page's app. ``engine`` is called per request (the plugin caches it); nothing is read at import.

    ``data_docs_dir`` is where the GX Data Docs site lives; with ``build_data_docs`` the app (re)builds it from
    the warehouse when a newer artefact is stored (in a separate process), else it serves what is there.
    """
    refresher = None
    if build_data_docs:
        from shadowing.quality.data_docs import SiteRefresher

        refresher = SiteRefresher()

    def refresh_docs(wait: float) -> str:
        site = data_docs_dir()
        if refresher is None or site is None:
            return "current"
        try:
            return refresher.refresh(engine(), region_pairs(), site, wait=wait)
        except Exception as exc:  # the docs must never take the page down
            log.warning("Data Docs refresh failed: %s", exc)
            refresher.last_error = f"{type(exc).__name__}: {exc}"
            return "failed"

    app = FastAPI(title="Shadow Regions", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=list(dependencies))
    app.mount("/assets", StaticFiles(directory=ASSETS_DIR), name="assets")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(ASSETS_DIR / "index.html", headers=_NO_STORE)

    @app.get("/api/regions")
    def regions() -> JSONResponse:
        return JSONResponse({"regions": region_list(engine(), region_pairs())}, headers=_NO_STORE)

    @app.get("/api/regions/{region}")
    def region(region: str) -> JSONResponse:
        if not _REGION.match(region):
            raise HTTPException(status_code=400, detail=f"not a region name: {region!r}")
        detail = region_detail(engine(), region, region_pairs())
        if detail is None:
            raise HTTPException(status_code=404, detail=f"no shadow data for region {region}")
        gx_site = data_docs_dir()
        detail["data_docs"] = {"great_expectations": bool(gx_site and (refresher is not None
                                                                    or (gx_site / "index.html").is_file()))}
        refresh_docs(0.0)  # start a rebuild early if a newer artefact exists: the docs are ready when opened
        return JSONResponse(detail, headers=_NO_STORE)

    @app.get("/data-docs", include_in_schema=False)
    def data_docs_root() -> RedirectResponse:
        return RedirectResponse("data-docs/")

    @app.get("/data-docs/{path:path}", include_in_schema=False)
    def data_docs(path: str) -> Any:
        site = data_docs_dir()
        if path in ("", "index.html"):
            status = refresh_docs(DATA_DOCS_WAIT_SECONDS)
            if not (site and (site / "index.html").is_file()):
                if status == "building":
                    return HTMLResponse(_BUILDING_PAGE.format(note=""), headers=_NO_STORE)
                note = refresher.last_error if refresher is not None else None
                body = render_validation_docs(engine(), region_pairs())
                if note:
                    body = body.replace("</h1>", f"</h1><p class='bad'>{html.escape(note)}</p>", 1)
                return HTMLResponse(body, headers=_NO_STORE)
        if path == "validations.html":
            return HTMLResponse(render_validation_docs(engine(), region_pairs()), headers=_NO_STORE)
        if site is None:
            raise HTTPException(status_code=404, detail="no Data Docs site has been built")
        target = (site / (path or "index.html")).resolve()
        if not target.is_relative_to(site.resolve()) or not target.is_file():
            raise HTTPException(status_code=404, detail=f"not found: {path}")
        return FileResponse(target, headers=_NO_STORE if target.suffix == ".html" else None)

    return app
