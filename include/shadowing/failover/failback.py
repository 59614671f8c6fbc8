"""Failback: once the primary has been healthy long enough, move traffic home, reverse replication, remove
the shadow's launched capacity (ROLE=launched instances of that failover; pre-staged parts stay).

A failback is a run of its own, so it gets its own row in ``failover_events`` (DESIGN §3: one row per run):
id ``fb-<hash of the DAG run>``, mode ``live`` (it moves production traffic), ``plan`` = {kind: failback,
failback_of: the failover id}, its own timeline (health → traffic → replication → capacity), outcome and
recovery time (until traffic is back on the primary). The failover's row gets a ``failback`` step naming the
failback id, so each links to the other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shadowing.errors import InputError, ShadowingError
from shadowing.failover import launcher, network, replication, traffic
from shadowing.failover.identity import FAILBACK_PREFIX
from shadowing.failover.steps import (
    FailoverEnv,
    FailoverState,
    event_of,
    hold_lock,
    load_blueprint,
    recorded_step,
)
from shadowing.warehouse import operations as ops

log = logging.getLogger(__name__)


class PrimaryNotHealthy(ShadowingError):
    """The primary's health has not held long enough for a failback."""


@dataclass(frozen=True)
class HealthHold:
    held: bool
    healthy_since: datetime | None
    detail: str


def health_hold(observations: list[ops.HealthObservation], hold: timedelta, now: datetime,
                not_before: datetime | None = None) -> HealthHold:
    """Has the primary been healthy for at least ``hold``? Observations newest first.

    The healthy streak is the run of healthy observations since the last unhealthy one; it must start at least
    ``hold`` before ``now`` (no observation at all counts as not yet held). ``not_before`` (the outage the
    failover answered: its detection, else its start) bounds the streak: health seen before the outage says
    nothing about the recovery, so only observations from then on count."""
    if not_before is not None:
        observations = [o for o in observations if o.observed_at >= not_before]
        if not observations:
            return HealthHold(False, None, f"no health observation since the failover ({not_before.isoformat()})")
    if not observations:
        return HealthHold(False, None, "no health observations of the primary")
    if not observations[0].healthy:
        return HealthHold(False, None, f"primary unhealthy at {observations[0].observed_at.isoformat()}")
    since = observations[0].observed_at
    complete = False
    for obs in observations:
        if not obs.healthy:
            complete = True
            break
        since = obs.observed_at
    held_for = now - since
    # Without an earlier unhealthy observation we only know the streak began at or before the oldest one read.
    if held_for >= hold:
        return HealthHold(True, since, f"healthy since {since.isoformat()} ({held_for.total_seconds():.0f}s)")
    why = "" if complete else (" (since the failover)" if not_before is not None else " (oldest observation read)")
    return HealthHold(False, since, f"healthy only for {held_for.total_seconds():.0f}s of "
                                    f"{hold.total_seconds():.0f}s{why}")


def select_failover(env: FailoverEnv, primary_region: str, failover_id: str | None) -> ops.FailoverEvent:
    """The failover to fail back: the one named, else the latest succeeded live failover of the primary that
    no failback has undone yet. A dry run or drill moved nothing, and a failover already failed back has nothing
    left to undo: both are refused (InputError on ``failover_id``) instead of moving DNS and reversing
    replication a second time."""
    events = ops.list_failover_events(env.engine, primary_region, limit=500)
    if failover_id:
        event = ops.get_failover_event(env.engine, failover_id)
        if event is None or event.primary_region != primary_region:
            raise InputError(f"no failover {failover_id!r} of {primary_region}", field="failover_id")
        if not is_failback(event):
            if event.mode != "live":
                raise InputError(f"{failover_id} is a {event.mode} failover that moved no traffic: nothing to fail "
                                 f"back", field="failover_id")
            done = failed_back_by(event, events)
            if done:
                raise InputError(f"{failover_id} was already failed back by {done}: nothing left to fail back",
                                 field="failover_id")
        return event
    for event in events:
        if event.mode == "live" and event.outcome == "succeeded" and not is_failback(event) \
                and not failed_back_by(event, events):
            return event
    raise InputError(f"{primary_region} has no succeeded live failover to fail back (none, or every one is "
                     f"already failed back)", field="failover_id")


def failed_back_by(event: ops.FailoverEvent, events: list[ops.FailoverEvent]) -> str | None:
    """The id of a succeeded failback of ``event`` (its link step or a failback row naming it), else None."""
    link = next((s for s in event.steps if s.get("step") == "failback"), None)
    if link and link.get("outcome") == "succeeded":
        return str((link.get("detail") or {}).get("failback_id") or "a failback")
    for other in events:
        if is_failback(other) and other.outcome == "succeeded" and \
                (other.plan or {}).get("failback_of") == event.failover_id:
            return other.failover_id
    return None


def serving_failover(events: list[ops.FailoverEvent]) -> ops.FailoverEvent | None:
    """The live failover whose shadow serves the region now (events newest first): its traffic moved (the
    ``traffic`` step or the whole failover succeeded) and no failback of it succeeded."""
    for event in events:
        if event.mode != "live" or is_failback(event) or failed_back_by(event, events):
            continue
        traffic_step = next((s for s in event.steps if s.get("step") == "traffic"), None) or {}
        if event.outcome == "succeeded" or traffic_step.get("outcome") == "succeeded":
            return event
    return None


def is_failback(event: ops.FailoverEvent) -> bool:
    return event.failover_id.startswith(FAILBACK_PREFIX) or (event.plan or {}).get("kind") == "failback"


def open_failback(env: FailoverEnv, state: FailoverState, *, event_id: str, dag_run_id: str | None,
                  triggered_by: str | None = None) -> FailoverState:
    """Open the failback's own event row (idempotent by id) and link it from the failover's row."""
    if is_failback(ops.get_failover_event(env.engine, state.failover_id) or _missing(state.failover_id)):
        raise InputError(f"{state.failover_id} is a failback, not a failover", field="failover_id")
    ops.record_failover_event(
        env.engine, failover_id=event_id, primary_region=state.primary_region, shadow_region=state.shadow_region,
        mode="live", trigger="manual", triggered_by=triggered_by, blueprint_version=state.blueprint_version or None,
        blueprint_id=state.blueprint_id or None, dag_run_id=dag_run_id,
        plan={"kind": "failback", "failback_of": state.failover_id, "primary_region": state.primary_region,
              "shadow_region": state.shadow_region})
    ops.record_failover_step(env.engine, state.failover_id, "failback", started_at=datetime.now(UTC),
                             detail={"failback_id": event_id})
    state.extra = {**state.extra, "event_id": event_id}
    return state


def _missing(failover_id: str) -> ops.FailoverEvent:
    raise InputError(f"no failover {failover_id!r}", field="failover_id")


FAILBACK_STEPS = ("health", "traffic", "replication", "capacity")


def finish_failback(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    """Close the failback's row (outcome; recovery = until traffic is home) and its link on the failover."""
    event_id = event_of(state)
    event = ops.get_failover_event(env.engine, event_id)
    if event is None:
        raise RuntimeError(f"no failback event {event_id}")
    by_step = {s["step"]: s for s in event.steps}
    error = None
    for step in FAILBACK_STEPS:
        entry = by_step.get(step)
        if entry is None or entry.get("finished_at") is None or entry.get("outcome") == "failed":
            error = f"step {step} " + ("failed: " + str((entry.get("detail") or {}).get("error", ""))
                                       if entry and entry.get("outcome") == "failed" else "did not complete")
            break
    outcome = "failed" if error else "succeeded"
    home = (by_step.get("traffic") or {}).get("finished_at")
    closed = ops.finish_failover_event(env.engine, event_id, outcome=outcome, error=error,
                                       recovery_at=datetime.fromisoformat(home) if home else None)
    ops.record_failover_step(env.engine, state.failover_id, "failback", finished_at=datetime.now(UTC),
                             outcome=outcome, detail={"failback_id": event_id, "error": error})
    return {"failback_id": event_id, "outcome": outcome, "error": error,
            "recovery_seconds": closed.recovery_seconds}


def state_of(event: ops.FailoverEvent) -> FailoverState:
    return FailoverState(failover_id=event.failover_id, primary_region=event.primary_region,
                         shadow_region=event.shadow_region, mode=event.mode, trigger=event.trigger,
                         capacity_percent=int((event.plan or {}).get("capacity_percent", 100)),
                         blueprint_version=int(event.blueprint_version or 0), blueprint_id=int(event.blueprint_id or 0),
                         dag_run_id=event.dag_run_id, detected_at=None)


def check_primary_health(env: FailoverEnv, state: FailoverState, hold_seconds: float,
                         now: datetime | None = None) -> dict[str, Any]:
    failover = ops.get_failover_event(env.engine, state.failover_id)
    outage = (failover.detected_at or failover.started_at) if failover is not None else None
    with recorded_step(env, state, "health") as detail:
        result = health_hold(ops.recent_health_observations(env.engine, state.primary_region, 500),
                             timedelta(seconds=hold_seconds), now or datetime.now(UTC), not_before=outage)
        detail.update({"held": result.held, "detail": result.detail})
        if not result.held:
            raise PrimaryNotHealthy(f"{state.primary_region}: {result.detail}")
    return detail


def restore_traffic(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    hold_lock(env, state)
    blueprint = load_blueprint(env, state)
    failover = ops.get_failover_event(env.engine, state.failover_id)
    moved = next((s for s in (failover.steps if failover else []) if s.get("step") == "traffic"), None) or {}
    with recorded_step(env, state, "traffic") as detail:
        detail.update(traffic.restore_primary(env.clients.get("route53", state.shadow_region), blueprint,
                                              failover_id=state.failover_id,
                                              replaced=(moved.get("detail") or {}).get("replaced")))
    return detail


def reverse_replication(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    hold_lock(env, state)
    blueprint = load_blueprint(env, state)
    with recorded_step(env, state, "replication") as detail:
        detail["plan"] = replication.replication_plan(blueprint, reverse=True)
        detail["steps"] = replication.trigger_replication(env.clients, blueprint, reverse=True,
                                                          failover_id=state.failover_id)
    return detail


def remove_launched_capacity(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    hold_lock(env, state)
    blueprint = load_blueprint(env, state)
    ec2 = env.ec2(state.shadow_region)
    with recorded_step(env, state, "capacity") as detail:
        ids = set(launcher.census(ec2, state.failover_id, role="launched"))
        detail["deregistered"] = network.deregister_launched(env.clients.get("elbv2", state.shadow_region),
                                                             blueprint, ids)
        detail["terminated"] = len(launcher.terminate_launched(ec2, state.failover_id, timeout=env.launch_timeout))
    return detail
