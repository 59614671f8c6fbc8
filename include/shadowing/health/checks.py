"""Health signals of a primary region: CloudWatch alarm states and optional HTTP probes.

Route 53 health-check status is static in the emulator (DESIGN §5), so health comes from alarms (the world
seeds ``shadowing-region-health-<region>``, driven by ``set_alarm_state``) and from probes.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

ALARM_PREFIX = "shadowing-region-health-"


def alarm_checks(cloudwatch: Any, region: str, *, prefix: str = ALARM_PREFIX) -> list[dict[str, Any]]:
    """One check per region-health alarm: ALARM → unhealthy, OK → healthy, INSUFFICIENT_DATA → unknown."""
    name = f"{prefix}{region}"
    try:
        alarms = cloudwatch.describe_alarms(AlarmNamePrefix=name).get("MetricAlarms", [])
    except (ClientError, BotoCoreError) as exc:
        # the monitoring API itself failing is a failed check (the region's control plane may be down)
        return [{"kind": "alarm", "name": name, "healthy": False, "state": "ERROR", "detail": str(exc)[:300]}]
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
