"""boto3 sessions and clients. The same code talks to real AWS and to the emulator.

Clients are created at the edges (CLI, orchestration) and passed into the logic, never created deep inside it,
so tests can inject a client bound to the moto server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

# Adaptive mode adds client-side rate limiting on top of jittered exponential backoff for throttling and 5xx.
RETRY_CONFIG = Config(retries={"max_attempts": 10, "mode": "adaptive"}, connect_timeout=5, read_timeout=60)


@dataclass(frozen=True)
class AwsTarget:
    """Where AWS calls go: a real account (endpoint_url None) or an emulator URL."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def session(self, region: str) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            region_name=region,
        )

    def client(self, service: str, region: str, config: Config | None = None) -> Any:
        return self.session(region).client(service, endpoint_url=self.endpoint_url,
                                           config=config or RETRY_CONFIG)


def client(service: str, region: str, endpoint_url: str | None = None, config: Config | None = None) -> Any:
    """A boto3 client for ``service`` in ``region``; ``endpoint_url`` points it at an emulator."""
    return AwsTarget(endpoint_url=endpoint_url).client(service, region, config)
