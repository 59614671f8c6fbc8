"""Judging a primary region's health: N failing checks out of the last M, then a cooldown — no flapping.

Pure functions over plain values; the monitor DAG feeds them the stored observations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shadowing.errors import InputError

# How often primary_health_monitor checks a region (its schedule): the unit of the N-of-M window.
CHECK_INTERVAL = timedelta(minutes=1)
POLICY_FIELDS = ("failures_required", "window", "cooldown_minutes")

Action = Literal["none", "trigger", "alert", "suppressed_running", "suppressed_failed_over", "suppressed_cooldown"]


@dataclass(frozen=True)
class HealthPolicy:
    """A region is judged failed when at least ``failures_required`` of the last ``window`` checks failed."""

    failures_required: int = 3
    window: int = 5
    cooldown: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if isinstance(self.failures_required, bool) or not isinstance(self.failures_required, int) \
                or self.failures_required < 1:
            raise InputError(f"must be an integer ≥ 1, got {self.failures_required!r}", field="failures_required")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < self.failures_required:
            raise InputError(f"must be an integer ≥ failures_required ({self.failures_required}), got "
                             f"{self.window!r}", field="window")
        if self.cooldown < timedelta(0):
            raise InputError("must not be negative", field="cooldown_minutes")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, source: str | None = None) -> HealthPolicy:
        """From Params/Variable JSON: {failures_required, window, cooldown_minutes}; missing keys → defaults.

        Anything else is refused naming ``source`` (e.g. the Variable) and the field: an unknown key (a typo
        would silently fall back to the more eager default), NaN/infinite/boolean numbers."""
        if data is not None and not isinstance(data, Mapping):
            raise InputError(f"must be a JSON object {{{', '.join(POLICY_FIELDS)}}}, got {type(data).__name__}",
                             source=source)
        data = dict(data or {})
        unknown = sorted(str(k) for k in data if k not in POLICY_FIELDS)
        if unknown:
            raise InputError(f"unknown key(s) {unknown}; expected {list(POLICY_FIELDS)}", source=source,
                             field=unknown[0])
        default = cls()
        raw = data.get("cooldown_minutes", default.cooldown.total_seconds() / 60)
        try:
            if isinstance(raw, bool):
                raise TypeError(raw)
            minutes = float(raw)
            if not math.isfinite(minutes):
                raise ValueError(raw)
            cooldown = timedelta(minutes=minutes)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"not a finite number: {raw!r}", source=source, field="cooldown_minutes") from exc
        try:
            return cls(failures_required=data.get("failures_required", default.failures_required),
                       window=data.get("window", default.window), cooldown=cooldown)
        except InputError as exc:
            if source is None:
                raise
            message = str(exc).split(": ", 1)[-1]
            raise InputError(message, source=source, field=exc.field) from exc

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cooldown_minutes"] = self.cooldown.total_seconds() / 60
        del out["cooldown"]
        return out


@dataclass(frozen=True)
class Verdict:
    failed: bool
    failing: int  # failing checks among the last `considered`
    considered: int
    reason: str


def judge(recent_healthy: Sequence[bool], policy: HealthPolicy) -> Verdict:
    """``recent_healthy``: newest first, the current check included. Fewer than N checks can never fail."""
    window = list(recent_healthy)[: policy.window]
    failing = sum(1 for healthy in window if not healthy)
    failed = failing >= policy.failures_required
    return Verdict(failed, failing, len(window),
                   f"{failing} of the last {len(window)} checks failed (threshold {policy.failures_required} of "
                   f"{policy.window})")


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(verdict: Verdict, *, auto_failover: bool, failover_running: bool, last_action_at: datetime | None,
           now: datetime, policy: HealthPolicy, failed_over: str | None = None) -> Decision:
    """What the monitor does about a verdict.

    ``last_action_at``: when the monitor last triggered (auto on) or alerted (auto off) for this region; within
    the cooldown nothing is repeated. A running failover of the region always suppresses a new one.
    ``failed_over``: the failover whose shadow already serves the region (traffic moved, not failed back), in
    words; however long ago it was, the outage is handled: no second failover (nor an alert) for it."""
    if not verdict.failed:
        return Decision("none", verdict.reason)
    if failover_running:
        return Decision("suppressed_running", f"{verdict.reason}; a failover of this region is already running or queued")
    if failed_over:
        return Decision("suppressed_failed_over", f"{verdict.reason}; already failed over: {failed_over}")
    if last_action_at is not None and now - last_action_at < policy.cooldown:
        left = policy.cooldown - (now - last_action_at)
        return Decision("suppressed_cooldown", f"{verdict.reason}; cooldown, {int(left.total_seconds())} s left")
    if not auto_failover:
        return Decision("alert", f"{verdict.reason}; auto-failover is off for this region")
    return Decision("trigger", f"{verdict.reason}; auto-failover is on")


def auto_failover_enabled(setting: Any, region: str) -> bool:
    """The ``shadowing_auto_failover`` Variable: {region: bool}; anything else (missing, malformed) → off."""
    if isinstance(setting, Mapping):
        value = setting.get(region, False)
        return value is True or (isinstance(value, str) and value.strip().lower() in {"true", "on", "yes", "1"})
    return False
