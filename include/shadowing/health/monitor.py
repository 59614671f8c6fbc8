"""One monitor pass over a primary region: observe, judge (N-of-M), decide, record. Airflow-free."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from shadowing.failover.failback import is_failback
from shadowing.failover.steps import stale_lock_reason
from shadowing.health.checks import alarm_checks, overall_healthy, probe_checks
from shadowing.health.policy import CHECK_INTERVAL, Decision, HealthPolicy, decide, judge
from shadowing.warehouse.operations import (
    AutoFailoverDecision,
    FailoverEvent,
    HealthObservation,
    auto_failover_decisions,
    failover_lock_holder,
    list_failover_events,
    recent_health_observations,
    record_auto_failover_decision,
    record_health_observation,
)

log = logging.getLogger(__name__)

# Whether a recorded trigger decision took effect: False when it demonstrably created no regional_failover run
# (its trigger task failed and its monitor run is over). Supplied by the Airflow layer, which can ask.
TriggerTookEffect = Callable[[AutoFailoverDecision], bool]


def assess_region(engine: Engine, cloudwatch: Any, region: str, *, policy: HealthPolicy, auto_failover: bool,
                  probes: Sequence[str] = (), failover_dagrun_running: bool = False, run_id: str | None = None,
                  now: datetime | None = None, checks: list[dict[str, Any]] | None = None,
                  trigger_run_id: str | None = None, max_check_age: timedelta | None = None,
                  check_interval: timedelta = CHECK_INTERVAL,
                  trigger_took_effect: TriggerTookEffect | None = None) -> dict[str, Any]:
    """Observe ``region``, judge it over the stored history and decide; everything is recorded.

    Returns {region, healthy, verdict, action, reason, detected_at, failing, considered}. ``action`` is
    ``trigger`` only when the region is judged failed, auto-failover is on, no failover of it is running
    (lock table, or ``failover_dagrun_running``: a queued/running run), its shadow does not already serve it
    (a live failover moved traffic and was not failed back: ``suppressed_failed_over``) and both the monitor's
    last trigger and the region's last live failover (whoever started it) are older than the cooldown.
    With ``trigger_took_effect``, a recorded trigger that created no failover run (the trigger task failed)
    starts no cooldown: the next failing check triggers again.

    Only stored checks older than ``now`` count (a clock stepped back never adds up "future" checks), and,
    with ``max_check_age``, only those younger than it (failures left before a pause never join a fresh one).
    Checks are samples in wall-clock time: at most one per half ``check_interval`` counts (the newest), so a
    bunch of manual runs within seconds is one check, not N of M."""
    now = now or datetime.now(UTC)
    # A retried (or cleared and re-run) monitor task is the same check: it replays what its first attempt
    # decided instead of observing again, so one check never counts twice and a recorded trigger is re-issued
    # under the same run id (the trigger skips a run that already exists) rather than suppressed by its own
    # cooldown.
    fetched = recent_health_observations(engine, region, _HISTORY_SLACK * policy.window)
    if run_id is not None:
        earlier = [o for o in fetched if o.run_id == run_id]
        if earlier:
            return _replay(engine, region, earlier[-1], run_id=run_id, auto_failover=auto_failover,
                           trigger_run_id=trigger_run_id, policy=policy, now=now,
                           failover_running=failover_dagrun_running)
    if checks is None:
        checks = alarm_checks(cloudwatch, region) + (probe_checks(probes) if probes else [])
    healthy = overall_healthy(checks)
    # no readable signal at all (alarm missing / INSUFFICIENT_DATA / throttled / refused, no probes): the check
    # counts as not failing, but the monitor is blind and says so in the record and the log
    blind = all(c.get("healthy") is None for c in checks)
    fresh = [o for o in _distinct_checks(fetched) if o.observed_at <= now
             and (max_check_age is None or now - o.observed_at <= max_check_age)]
    history = _spaced(fresh, now, check_interval / 2)[: policy.window - 1]
    verdict = judge([healthy] + [o.healthy for o in history], policy)
    holder = failover_lock_holder(engine, region)
    stale = _stale_lock(engine, holder, failover_dagrun_running)
    running = failover_dagrun_running or (holder is not None and stale is None)
    events = list_failover_events(engine, region, limit=_EVENT_LOOKBACK)
    serving = active_failover(events)
    kind = "trigger" if auto_failover else "alert"
    ignored: list[AutoFailoverDecision] = []
    if kind == "trigger" and trigger_took_effect is not None:
        last_action_at, ignored = _last_effective_trigger(engine, region, now=now, policy=policy,
                                                          took_effect=trigger_took_effect)
    else:
        previous = auto_failover_decisions(engine, region, decision=kind, limit=1)
        last_action_at = previous[0].decided_at if previous else None
    if auto_failover:
        # A live failover of the region started by anyone (a person, the CLI) starts the cooldown too: the
        # monitor must not fail the region over a second time right after a manual failover finished.
        live = [e.started_at for e in events if e.mode == "live"]
        last_action_at = max([t for t in (last_action_at, *live[:1]) if t is not None], default=None)
    decision = decide(verdict, auto_failover=auto_failover, failover_running=running,
                      last_action_at=last_action_at, now=now, policy=policy,
                      failed_over=_describe(serving) if serving else None)
    if ignored and decision.action in ("trigger", "alert"):
        decision = Decision(decision.action, f"{decision.reason}; earlier trigger(s) that created no failover run "
                                             f"start no cooldown: {_describe_triggers(ignored)}")
    if stale and decision.action in ("trigger", "alert"):
        decision = Decision(decision.action, f"{decision.reason}; the region's failover lock, held by {holder}, is "
                                             f"left over ({stale}): the failover run reclaims it")
    # detection time: the oldest failing check of the current window (recovery time counts from there)
    failing_times = [now] if not healthy else []
    failing_times += [o.observed_at for o in history if not o.healthy]
    detected_at = min(failing_times) if verdict.failed and failing_times else None
    if blind:
        states = sorted({str(c.get("state")) for c in checks})
        decision = Decision(decision.action, f"no readable signal ({', '.join(states)}): unknown, not counted as "
                                             f"failing; {decision.reason}")
    record_health_observation(engine, primary_region=region, healthy=healthy, checks=checks,
                              verdict="failed" if verdict.failed else ("degraded" if verdict.failing else "healthy"),
                              action=decision.action, detail=decision.reason, run_id=run_id, observed_at=now)
    if verdict.failed:
        record_auto_failover_decision(
            engine, primary_region=region, decision=decision.action, reason=decision.reason,
            auto_failover=auto_failover, failover_id=holder or (serving.failover_id if serving else None),
            run_id=run_id, decided_at=now,
            detail={"trigger_run_id": trigger_run_id if decision.action == "trigger" else None,
                    "policy": policy.to_dict(), "failing": verdict.failing, "considered": verdict.considered,
                    "detected_at": detected_at.isoformat() if detected_at else None,
                    "failover_dagrun_running": failover_dagrun_running,
                    "failed_over_by": serving.failover_id if serving else None,
                    "stale_lock": stale,
                    "triggers_without_run": [d.detail.get("trigger_run_id") for d in ignored]})
    level = logging.WARNING if verdict.failed or blind else logging.INFO
    log.log(level, "%s: %s → %s (%s)", region, "UNKNOWN" if blind else "healthy" if healthy else "UNHEALTHY",
            decision.action, decision.reason)
    return {"region": region, "healthy": None if blind else healthy, "verdict": "failed" if verdict.failed else "ok",
            "action": decision.action, "reason": decision.reason,
            "detected_at": detected_at.isoformat() if detected_at else None,
            "failing": verdict.failing, "considered": verdict.considered,
            "trigger_run_id": trigger_run_id if decision.action == "trigger" else None}


_HISTORY_SLACK = 3  # observations fetched per window slot: room for the duplicates of retried runs
_EVENT_LOOKBACK = 50  # failover events read per region (newest first): drills and failbacks among them
_TRIGGER_LOOKBACK = 60  # trigger decisions read for the cooldown: one a minute while triggers keep failing


def _spaced(observations: Sequence[HealthObservation], newest_at: datetime,
            spacing: timedelta) -> list[HealthObservation]:
    """Newest first, at most one check per ``spacing``: a check closer than that to the next newer counted one
    (the current check at ``newest_at`` first) samples the same moment of the region and is not counted.

    Wall-clock time, as stored: it is when the alarm was read. A logical date says nothing about that (a manual
    run's is its trigger time or none, a cleared old run's is in the past)."""
    out = []
    last = newest_at
    for obs in observations:
        if last - obs.observed_at >= spacing:
            out.append(obs)
            last = obs.observed_at
    return out


def _last_effective_trigger(engine: Engine, region: str, *, now: datetime, policy: HealthPolicy,
                            took_effect: TriggerTookEffect) -> tuple[datetime | None, list[AutoFailoverDecision]]:
    """When the monitor last triggered a failover that took effect (within the cooldown; older ones do not
    matter), and the newer triggers that created no run (their failed trigger task must not hold back a real
    failover for a whole cooldown)."""
    ignored = []
    for decision in auto_failover_decisions(engine, region, decision="trigger", limit=_TRIGGER_LOOKBACK):
        if now - decision.decided_at >= policy.cooldown:
            break
        if took_effect(decision):
            return decision.decided_at, ignored
        ignored.append(decision)
    return None, ignored


def active_failover(events: Sequence[FailoverEvent]) -> FailoverEvent | None:
    """The live failover whose shadow serves the region now (events newest first): it moved traffic (its
    ``traffic`` step succeeded, or the failover as a whole did) and no failback of it succeeded. A failover
    that failed before moving traffic, a drill or a dry run leaves the primary serving: not this."""
    failed_back = {(e.plan or {}).get("failback_of") for e in events if is_failback(e) and e.outcome == "succeeded"}
    for event in events:
        if event.mode != "live" or is_failback(event) or event.failover_id in failed_back:
            continue
        steps = {s.get("step"): s for s in event.steps}
        if (steps.get("failback") or {}).get("outcome") == "succeeded":
            continue
        if event.outcome == "succeeded" or (steps.get("traffic") or {}).get("outcome") == "succeeded":
            return event
    return None


def _describe(event: FailoverEvent) -> str:
    finished = f", {event.outcome} at {event.finished_at.isoformat()}" if event.finished_at else \
        f", {event.outcome}"
    return (f"failover {event.failover_id} ({event.trigger}, started {event.started_at.isoformat()}{finished}) "
            f"moved traffic to {event.shadow_region} and was not failed back; fail back (regional_failback) "
            f"before the monitor may fail this region over again")


def _describe_triggers(decisions: Sequence[AutoFailoverDecision]) -> str:
    return ", ".join(f"{d.detail.get('trigger_run_id') or '?'} (run {d.run_id})" for d in decisions[:5]) + \
        (f" and {len(decisions) - 5} more" if len(decisions) > 5 else "")


def _distinct_checks(observations: Sequence[HealthObservation]) -> list[HealthObservation]:
    """One observation per monitor run (the first attempt's), newest first; run-less ones all count."""
    seen: set[str] = set()
    out = []
    for obs in reversed(observations):  # oldest first: keep each run's first attempt
        if obs.run_id is not None:
            if obs.run_id in seen:
                continue
            seen.add(obs.run_id)
        out.append(obs)
    return out[::-1]


def _replay(engine: Engine, region: str, first: HealthObservation, *, run_id: str, auto_failover: bool,
            trigger_run_id: str | None, policy: HealthPolicy, now: datetime,
            failover_running: bool) -> dict[str, Any]:
    """The result of a run's first attempt, from what it recorded (completing the decision row if the attempt
    died between the two writes). A recorded trigger is re-issued only while it is still the region's latest
    and nothing has failed the region over since (see ``_stale_trigger``)."""
    decisions = [d for d in auto_failover_decisions(engine, region, limit=_HISTORY_SLACK * policy.window)
                 if d.run_id == run_id and d.decision == first.action]
    detail: dict[str, Any] = decisions[0].detail if decisions else {}
    if first.action == "trigger":
        trigger_run_id = detail.get("trigger_run_id") or trigger_run_id
    failed = first.verdict == "failed"
    detected_at = detail.get("detected_at")
    if failed and not decisions:
        detail = {"trigger_run_id": trigger_run_id if first.action == "trigger" else None,
                  "policy": policy.to_dict(), "replayed": True, "detected_at": first.observed_at.isoformat()}
        detected_at = detail["detected_at"]
        record_auto_failover_decision(engine, primary_region=region, decision=first.action, reason=first.detail,
                                      auto_failover=auto_failover, run_id=run_id, decided_at=first.observed_at,
                                      detail=detail)
    log.warning("%s: run %s already judged this check (%s): replaying its decision", region, run_id,
                first.action)
    action, reason = first.action, first.detail
    if first.action == "trigger":
        stale = _stale_trigger(engine, region, run_id=run_id, failover_running=failover_running)
        if stale is not None:
            action, why = stale
            reason = f"{first.detail}; replayed trigger {trigger_run_id} not re-issued: {why}"
            log.warning("%s: %s", region, reason)
            record_auto_failover_decision(engine, primary_region=region, decision=action, reason=reason,
                                          auto_failover=auto_failover, run_id=run_id, decided_at=now,
                                          detail={"replayed": True, "not_reissued": trigger_run_id})
    return {"region": region, "healthy": first.healthy, "verdict": "failed" if failed else "ok",
            "action": action, "reason": reason, "detected_at": detected_at,
            "failing": detail.get("failing"), "considered": detail.get("considered"),
            "trigger_run_id": trigger_run_id if action == "trigger" else None}


def _stale_trigger(engine: Engine, region: str, *, run_id: str, failover_running: bool) -> tuple[str, str] | None:
    """Why a replayed trigger (a cleared or retried old monitor run) must not be re-issued, or None.

    Since a failed trigger starts no cooldown, a later run may have triggered again; re-issuing the old one
    then would queue a second failover behind it."""
    newest = auto_failover_decisions(engine, region, decision="trigger", limit=1)
    if newest and newest[0].run_id != run_id:
        return ("suppressed_cooldown", f"a newer trigger superseded it (run {newest[0].run_id}, "
                                       f"{newest[0].detail.get('trigger_run_id')})")
    holder = failover_lock_holder(engine, region)
    if failover_running or (holder is not None and _stale_lock(engine, holder, failover_running) is None):
        return ("suppressed_running", "a failover of this region is already running or queued"
                                      + (f" ({holder})" if holder else ""))
    serving = active_failover(list_failover_events(engine, region, limit=_EVENT_LOOKBACK))
    if serving is not None:
        return ("suppressed_failed_over", f"already failed over: {_describe(serving)}")
    return None


def _stale_lock(engine: Engine, holder: str | None, failover_dagrun_running: bool) -> str | None:
    """Why the region's lock ``holder`` is left over by a failover that is over, else None (no holder, or live).

    A worker killed in finalize, or a run marked failed by hand, never releases the lock: counted as a running
    failover, it would suppress every trigger of the region for ever, on the day it is needed. Over when its event
    is closed, or when its event is a DAG run's and no regional_failover run is queued or running (a failback's
    lock, a CLI run's, or one without an event yet stays live). The triggered run reclaims it (failover.steps)."""
    if holder is None:
        return None

    def run_ended(event: FailoverEvent) -> str | None:
        if failover_dagrun_running or is_failback(event):
            return None
        return "no regional_failover run is queued or running"

    return stale_lock_reason(engine, holder, run_ended)


def triggered_run_ids(engine: Engine, region: str, limit: int = 5) -> list[str]:
    """Run ids of the last failovers the monitor triggered for ``region`` (to ask whether one still runs)."""
    return [d.detail["trigger_run_id"] for d in auto_failover_decisions(engine, region, decision="trigger",
                                                                         limit=limit)
            if d.detail.get("trigger_run_id")]


def failover_conf(assessment: dict[str, Any]) -> dict[str, Any]:
    """The ``regional_failover`` run conf for a triggering assessment."""
    conf = {"primary_region": assessment["region"], "mode": "live", "trigger": "sensor",
            "detected_at": assessment["detected_at"],
            "reason": f"primary_health_monitor: {assessment['reason']}"}
    if assessment.get("monitor_run_id"):  # who triggered: recorded as the failover's triggered_by
        conf["monitor_run_id"] = assessment["monitor_run_id"]
    return conf
