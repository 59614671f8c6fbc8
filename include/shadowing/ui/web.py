"""The FastAPI app behind the "Shadow Regions" page (Airflow-free: auth and engine are injected).

    GET  /                      the page (static HTML; data is fetched lazily, one JSON per region)
    GET  /assets/<file>         its JS and CSS (vendored: no CDN, works offline)
    GET  /api/regions           landing table
    GET  /api/regions/<region>  one region's page data
    GET  /data-docs/...         validation docs: the Great Expectations site when one was built, else ours

The Airflow plugin mounts it with ``dependencies=[Depends(airflow auth)]`` and ``warehouse_engine``; tests mount it
with a plain engine. Blocking SQL runs in the threadpool (sync endpoints), never on the event loop.
"""

from __future__ import annotations

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

ASSETS_DIR = Path(__file__).with_name("assets")
_REGION = re.compile(r"^[a-z0-9-]{1,64}$")
_NO_STORE = {"Cache-Control": "no-store"}


def create_app(engine: Callable[[], Engine], *, region_pairs: Callable[[], Mapping[str, str]] = dict,
               data_docs_dir: Callable[[], Path | None] = lambda: None,
               dependencies: Sequence[Any] = ()) -> FastAPI:
    """The page's app. ``engine`` is called per request (the plugin caches it); nothing is read at import."""
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
        detail["data_docs"] = {"great_expectations": bool(gx_site and (gx_site / "index.html").is_file())}
        return JSONResponse(detail, headers=_NO_STORE)

    @app.get("/data-docs", include_in_schema=False)
    def data_docs_root() -> RedirectResponse:
        return RedirectResponse("data-docs/")

    @app.get("/data-docs/{path:path}", include_in_schema=False)
    def data_docs(path: str) -> Any:
        site = data_docs_dir()
        if path in ("", "index.html") and not (site and (site / "index.html").is_file()):
            return HTMLResponse(render_validation_docs(engine(), region_pairs()), headers=_NO_STORE)
        if path == "validations.html":
            return HTMLResponse(render_validation_docs(engine(), region_pairs()), headers=_NO_STORE)
        if site is None:
            raise HTTPException(status_code=404, detail="no Data Docs site has been built")
        target = (site / (path or "index.html")).resolve()
        if not target.is_relative_to(site.resolve()) or not target.is_file():
            raise HTTPException(status_code=404, detail=f"not found: {path}")
        return FileResponse(target)

    return app
