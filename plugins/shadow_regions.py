"""Airflow plugin: the "Shadow Regions" page in the Airflow UI.

A FastAPI app (``fastapi_apps``, mounted by the API server under ``/shadow-regions``) serves the page and its
JSON; an ``external_views`` entry puts it in the navigation bar, rendered by the UI in an iframe at
``/plugin/shadow-regions``. The iframe is same-origin, so the browser sends Airflow's ``_token`` session
cookie and every route requires an authenticated Airflow user (Airflow's own ``get_user`` dependency: a bearer
token or that cookie). The page reads the warehouse only; triggering a failover goes through Airflow's REST API
with the user's own session, so Airflow's DAG permissions apply. ``/shadow-regions/data-docs/`` serves Great
Expectations Data Docs of the latest stored validations, rebuilt (in a separate process) into
``SHADOWING_DATA_DOCS_DIR`` or ``<state dir>/data_docs`` when a newer artefact is stored.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends

from shadowing.settings import region_pairs, state_dir
from shadowing.ui.web import create_app

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

URL_PREFIX = "/shadow-regions"
_ENGINE_TTL_SECONDS = 60.0
_engine_lock = threading.Lock()
_engine_cache: dict[str, object] = {}


def _warehouse() -> Engine:
    """The warehouse engine of the ``shadowing_warehouse`` connection, reused across requests.

    The connection is re-read at most once a minute, so editing it in Airflow takes effect without a restart
    while a page load does not pay for a secrets lookup and a new connection pool.
    """
    from shadowing.orchestration.clients import warehouse_engine, warehouse_url

    with _engine_lock:
        now = time.monotonic()
        if now - float(_engine_cache.get("checked", -1e9)) > _ENGINE_TTL_SECONDS:  # type: ignore[arg-type]
            url = warehouse_url()
            if _engine_cache.get("url") != url:
                old = _engine_cache.get("engine")
                _engine_cache["engine"] = warehouse_engine()
                _engine_cache["url"] = url
                if old is not None:
                    old.dispose()  # type: ignore[attr-defined]
            _engine_cache["checked"] = now
        return _engine_cache["engine"]  # type: ignore[return-value]


def _data_docs_dir() -> Path:
    """Where the Great Expectations Data Docs site is built (``SHADOWING_DATA_DOCS_DIR`` or the state folder)."""
    configured = os.environ.get("SHADOWING_DATA_DOCS_DIR")
    return Path(configured) if configured else state_dir() / "data_docs"


shadow_regions_app = create_app(_warehouse, region_pairs=region_pairs, data_docs_dir=_data_docs_dir,
                                build_data_docs=True, dependencies=[Depends(requires_authenticated())])


class ShadowingPlugin(AirflowPlugin):
    name = "shadowing"
    fastapi_apps = [{"app": shadow_regions_app, "url_prefix": URL_PREFIX, "name": "Shadow Regions"}]
    external_views = [{
        "name": "Shadow Regions",
        "href": URL_PREFIX.lstrip("/") + "/",  # relative: works behind a proxy or a base_url sub-path
        "destination": "nav",
        "url_route": "shadow-regions",
        "icon": URL_PREFIX.lstrip("/") + "/assets/icon.svg",
        "nav_top_level": True,
    }]
