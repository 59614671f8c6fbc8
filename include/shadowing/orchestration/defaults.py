"""Default arguments and shared DAG settings."""

from __future__ import annotations

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
