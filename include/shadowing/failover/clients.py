"""The AWS clients a failover uses, created at the edge (CLI, orchestration, tests) and passed in.

Two flavours per (service, region): ``get`` with botocore's adaptive retries (throttling and 5xx are retried
transparently — safe for reads and idempotent writes), and ``get_single_attempt`` with automatic retries OFF,
for non-idempotent creates (RunInstances on an emulator that ignores ClientToken): those are retried by
:mod:`shadowing.failover.launcher` only after re-counting what exists.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.config import Config

from shadowing.aws.clients import RETRY_CONFIG, AwsTarget

SINGLE_ATTEMPT_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                               read_timeout=60, max_pool_connections=32)
POOLED_RETRY_CONFIG = RETRY_CONFIG.merge(Config(max_pool_connections=32))

ClientMaker = Callable[[str, str, Config], Any]


class FailoverClients:
    """Caches one client per (service, region, flavour); boto3 clients are safe to share between threads."""

    def __init__(self, make: ClientMaker) -> None:
        self._make = make
        self._cache: dict[tuple[str, str, bool], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_target(cls, target: AwsTarget) -> FailoverClients:
        return cls(lambda service, region, config: target.client(service, region, config))

    @classmethod
    def for_endpoint(cls, endpoint_url: str | None) -> FailoverClients:
        return cls.for_target(AwsTarget(endpoint_url=endpoint_url))

    def _client(self, service: str, region: str, single: bool) -> Any:
        key = (service, region, single)
        with self._lock:
            if key not in self._cache:
                config = SINGLE_ATTEMPT_CONFIG if single else POOLED_RETRY_CONFIG
                self._cache[key] = self._make(service, region, config)
            return self._cache[key]

    def get(self, service: str, region: str) -> Any:
        return self._client(service, region, False)

    def get_single_attempt(self, service: str, region: str) -> Any:
        return self._client(service, region, True)
