"""Airflow connections → the clients the core takes as arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shadowing.orchestration.defaults import AWS_CONN_ID, WAREHOUSE_CONN_ID

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def aws_client(service: str, region: str, conn_id: str = AWS_CONN_ID) -> Any:
    """A boto3 client through the Amazon provider's hook (endpoint URL in the connection's extra → emulator)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from shadowing.aws.clients import RETRY_CONFIG

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region, config=RETRY_CONFIG)
    return hook.get_conn()


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
