"""Airflow connections → the clients the core takes as arguments."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shadowing.orchestration.defaults import AWS_CONN_ID, WAREHOUSE_CONN_ID

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def aws_client(service: str, region: str, conn_id: str = AWS_CONN_ID) -> Any:
    """A boto3 client through the Amazon provider's hook (endpoint URL in the connection's extra → emulator)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from shadowing.aws.clients import RETRY_CONFIG

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region, config=RETRY_CONFIG)
    return hook.get_conn()


PRESTAGE_CONN_ID = "aws_prestage"  # the shadowing-prestage role (include/iam/shadowing-prestage-policy.json)


def prestage_conn_id() -> str:
    """``aws_prestage`` when that connection exists, else ``aws_default`` (which then needs the prestage rights
    too) — said in the log, since it widens what the default connection must be allowed to do."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        Connection.get(PRESTAGE_CONN_ID)
    except AirflowNotFoundException:
        log.warning("no Airflow connection %r: pre-staging through %r, which then needs the shadowing-prestage "
                    "policy as well", PRESTAGE_CONN_ID, AWS_CONN_ID)
        return AWS_CONN_ID
    return PRESTAGE_CONN_ID


def aws_endpoint_url(conn_id: str = AWS_CONN_ID) -> str | None:
    from airflow.sdk import Connection

    conn = Connection.get(conn_id)
    return (conn.extra_dejson or {}).get("endpoint_url")


def warehouse_url(conn_id: str = WAREHOUSE_CONN_ID) -> str:
    """SQLAlchemy URL of the warehouse connection (extra ``sqlalchemy_url`` wins when set)."""
    from airflow.sdk import Connection

    conn = Connection.get(conn_id)
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    if conn.conn_type in {"postgres", "postgresql"}:
        from sqlalchemy.engine import URL

        return URL.create("postgresql+psycopg2", username=conn.login, password=conn.password,
                          host=conn.host, port=conn.port, database=conn.schema).render_as_string(
                              hide_password=False)
    return conn.get_uri()


def warehouse_engine(conn_id: str = WAREHOUSE_CONN_ID) -> Engine:
    """The warehouse engine, migrated to the latest schema (idempotent)."""
    from shadowing.warehouse import open_warehouse

    return open_warehouse(warehouse_url(conn_id))


AIRFLOW_API_CONN_ID = "airflow_api"  # http connection to Airflow's own REST API (a viewer-role user suffices)


class AirflowApi:
    """A minimal client of Airflow's REST API (what tasks may not read from the metadata DB themselves)."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              token: str | None = None) -> dict[str, Any]:
        import json
        import urllib.request

        request = urllib.request.Request(f"{self.base_url}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Accept", "application/json")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (configured URL)
            return dict(json.loads(response.read() or b"{}"))

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from urllib.parse import urlencode

        if self._token is None:
            self._token = str(self._call("POST", "/auth/token", self._credentials)["access_token"])
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        return self._call("GET", f"{path}{query}", token=self._token)


def airflow_api(conn_id: str = AIRFLOW_API_CONN_ID) -> AirflowApi | None:
    """The REST API client from the ``airflow_api`` connection (None when there is no such connection)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    extra = conn.extra_dejson or {}
    base = str(extra.get("base_url") or conn.host or "")
    if base and "://" not in base:
        base = f"{conn.schema or 'http'}://{base}{f':{conn.port}' if conn.port else ''}"
    return AirflowApi(base, conn.login or "", conn.password or "")
