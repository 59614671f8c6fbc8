"""Retries with full-jitter exponential backoff for what botocore's own retries do not cover.

botocore (adaptive mode, :data:`shadowing.aws.clients.RETRY_CONFIG`) already retries throttling and 5xx for
ordinary calls. This wrapper covers the rest: polling loops (our own waiters), and NON-idempotent creates, which
run on a client with automatic retries switched off so that a retry can first re-count what exists (a dropped
response means the call may have happened).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException", "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
})
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure",
                             "ServiceUnavailable", "Unavailable", "InsufficientInstanceCapacity"})


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: sleep U(0, min(cap, base·2^attempt))."""

    attempts: int = 8
    base: float = 0.1
    cap: float = 5.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        upper = min(self.cap, self.base * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, upper)


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return (response.get("Error") or {}).get("Code")
    return None


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return None


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx, and connection-level failures (including a response that never arrived)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, ReadTimeoutError
    from botocore.parsers import ResponseParserError

    if isinstance(exc, BotoConnectionError | HTTPClientError | ReadTimeoutError):
        return True
    # A 5xx with a non-AWS body (e.g. an overloaded server's HTML page) cannot be parsed: transient too.
    if isinstance(exc, ResponseParserError):
        return True
    code = error_code(exc)
    if code in THROTTLING_CODES or code in TRANSIENT_CODES:
        return True
    status = http_status(exc)
    # moto answers unimplemented calls with 500 too, but those fail the same way every time: bounded attempts.
    return status is not None and status >= 500


def retry_call(fn: Callable[[], T], *, what: str, policy: Backoff = Backoff(),
               retryable: Callable[[BaseException], bool] = is_retryable,
               before_retry: Callable[[BaseException], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until it succeeds, retrying retryable errors with jittered backoff.

    ``before_retry`` runs before every retry (e.g. re-count by tags and decide nothing is left to create: it
    may raise :class:`Done` to stop early with a value).
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == policy.attempts or not retryable(exc):
                raise
            delay = policy.delay(attempt)
            log.info("%s: %s (%s), retry %d/%d in %.2fs", what, type(exc).__name__, error_code(exc) or "",
                     attempt, policy.attempts - 1, delay)
            sleep(delay)
            if before_retry is not None:
                before_retry(exc)
    raise AssertionError("unreachable")


def poll_until(check: Callable[[], T | None], *, what: str, timeout: float, interval: float = 0.25,
               max_interval: float = 2.0, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> T:
    """Our own waiter: call ``check`` until it returns a value other than None (growing, jittered interval).

    Retryable AWS errors during polling are logged and polled through; a timeout raises :class:`TimeoutError`.
    """
    deadline = clock() + timeout
    delay = interval
    while True:
        try:
            result = check()
            if result is not None:
                return result
        except Exception as exc:
            if not is_retryable(exc):
                raise
            log.info("%s: transient %s while polling", what, error_code(exc) or type(exc).__name__)
        if clock() >= deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        sleep(random.uniform(0.5, 1.0) * delay)
        delay = min(max_interval, delay * 1.5)
