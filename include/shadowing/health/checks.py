"""Health signals of a primary region: CloudWatch alarm states and optional HTTP probes.

Route 53 health-check status is static in the emulator (DESIGN §5), so health comes from alarms (the world
seeds ``shadowing-region-health-<region>``, driven by ``set_alarm_state``) and from probes.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from shadowing.errors import InputError

log = logging.getLogger(__name__)

ALARM_PREFIX = "shadowing-region-health-"


def alarm_checks(cloudwatch: Any, region: str, *, prefix: str = ALARM_PREFIX) -> list[dict[str, Any]]:
    """One check per region-health alarm: ALARM → unhealthy, OK → healthy, INSUFFICIENT_DATA → unknown.

    The API failing: see ``_api_failure`` (unreachable → unhealthy; throttled or refused → unknown)."""
    name = f"{prefix}{region}"
    try:
        alarms = cloudwatch.describe_alarms(AlarmNamePrefix=name).get("MetricAlarms", [])
    except (ClientError, BotoCoreError) as exc:
        return [{"kind": "alarm", "name": name, **_api_failure(exc), "detail": str(exc)[:300]}]
    if not alarms:
        return [{"kind": "alarm", "name": name, "healthy": None, "state": "MISSING",
                 "detail": f"no alarm named {name}*"}]
    out = []
    for alarm in sorted(alarms, key=lambda a: a["AlarmName"]):
        state = alarm.get("StateValue", "INSUFFICIENT_DATA")
        healthy = {"OK": True, "ALARM": False}.get(state)
        out.append({"kind": "alarm", "name": alarm["AlarmName"], "healthy": healthy, "state": state,
                    "detail": str(alarm.get("StateReason", ""))[:300]})
    return out


# Answers of a live control plane that say nothing about the region's health: counted as unknown, never as a
# failure (three minutes of someone else's API quota, or of a revoked IAM permission, must not fail a region over).
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                              "TooManyRequestsException", "RequestThrottled", "RequestThrottledException",
                              "SlowDown", "LimitExceededException"})


def _api_failure(exc: Exception) -> dict[str, Any]:
    """healthy/state of a failed DescribeAlarms call.

    Unreachable (connection refused, timeouts) or a server error (5xx) → a failed check: the region's control
    plane may be down. Throttling → unknown (``THROTTLED``). Any other client-side error (4xx: access denied,
    expired credentials, a bad request) or a local botocore problem (no credentials) → unknown
    (``UNREADABLE``): a configuration problem, not the region's health."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in THROTTLING_CODES:
            return {"healthy": None, "state": "THROTTLED"}
        if status >= 500 or code in {"InternalFailure", "InternalError", "ServiceUnavailable"}:
            return {"healthy": False, "state": "ERROR"}
        return {"healthy": None, "state": "UNREADABLE"}
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return {"healthy": False, "state": "ERROR"}
    return {"healthy": None, "state": "UNREADABLE"}


def probe_checks(urls: Sequence[str], *, timeout: float = 3.0,
                 opener: Callable[..., Any] = urllib.request.urlopen) -> list[dict[str, Any]]:
    """HTTP GET each URL; 2xx/3xx is healthy."""
    out = []
    for url in urls:
        try:
            with opener(url, timeout=timeout) as resp:
                status = int(getattr(resp, "status", 200))
            out.append({"kind": "probe", "name": url, "healthy": 200 <= status < 400, "state": str(status),
                        "detail": ""})
        except urllib.error.HTTPError as exc:
            out.append({"kind": "probe", "name": url, "healthy": False, "state": str(exc.code), "detail": str(exc)})
        except (OSError, ValueError) as exc:
            out.append({"kind": "probe", "name": url, "healthy": False, "state": "ERROR", "detail": str(exc)[:300]})
    return out


def overall_healthy(checks: Sequence[dict[str, Any]]) -> bool:
    """Unhealthy when any alarm is in ALARM (or unreadable), or when more than half of the probes fail.
    Unknown signals (no alarm, insufficient data) never count as failures on their own."""
    alarms = [c for c in checks if c["kind"] == "alarm" and c["healthy"] is not None]
    probes = [c for c in checks if c["kind"] == "probe"]
    if any(not c["healthy"] for c in alarms):
        return False
    if probes and sum(1 for c in probes if not c["healthy"]) * 2 > len(probes):
        return False
    return True


def probe_urls(setting: Any, region: str, *, source: str = "shadowing_health_probes") -> list[str]:
    """The ``{region: [url, …]}`` probes setting → the region's URLs. A malformed setting is refused naming
    ``source`` and the region: a bare string would otherwise be probed character by character, every "URL"
    failing, and the region judged down."""
    if setting is None:
        return []
    if not isinstance(setting, Mapping):
        raise InputError(f'must be a JSON object {{"<region>": ["https://…", …]}}, got {type(setting).__name__}',
                         source=f"Variable {source}")
    urls = setting.get(region)
    if urls is None:
        return []
    if isinstance(urls, str) or not isinstance(urls, list):
        raise InputError(f"must be a list of URLs, got {urls!r}", source=f"Variable {source}", field=region)
    bad = [u for u in urls if not isinstance(u, str) or urllib.parse.urlsplit(u).scheme not in ("http", "https")]
    if bad:
        raise InputError(f"not http(s) URLs: {bad!r}", source=f"Variable {source}", field=region)
    return list(urls)
