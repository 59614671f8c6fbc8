"""Default arguments and shared DAG settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

OWNER = "shadowing"
AWS_CONN_ID = "aws_default"
WAREHOUSE_CONN_ID = "shadowing_warehouse"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}

# Failover steps are retried quickly: every minute of delay is a minute of outage.
FAILOVER_DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(seconds=30),
}

# DAG ids the package refers to across DAGs (triggering, asking Airflow about runs).
FAILOVER_DAG_ID = "regional_failover"
FAILBACK_DAG_ID = "regional_failback"
MONITOR_DAG_ID = "primary_health_monitor"


@contextmanager
def fail_without_retry(*errors: type[BaseException]) -> Iterator[None]:
    """``errors`` raised in the block fail the task at once (AirflowFailException): bad input or a failed
    validation fails a retry the same way, which would only delay the verdict (and record it twice)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except errors as exc:
        raise AirflowFailException(str(exc)) from exc
