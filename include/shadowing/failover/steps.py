"""The failover's coarse steps, each idempotent and each recorded in the failover event's timeline.

One function per DAG task (``prepare`` → ``preflight`` → ``launch`` → ``network`` → ``traffic`` →
``replication`` → ``verify`` → ``finalize``, plus ``teardown`` for drills). They take a :class:`FailoverState`
(a small JSON-able dict passed between tasks) and a :class:`FailoverEnv` (clients + warehouse engine), reload
the pinned blueprint version from the warehouse, and rebuild the (pure) plan — so any task can be retried,
cleared or re-run on another worker and converge to the same result.

Mode semantics: ``dry_run`` makes no mutating AWS call (the plan is rendered into the log and the event;
DryRun=True probes only); ``drill`` launches under MODE=drill tags into the shadow, never touches production
records and is always torn down; ``live`` does everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from shadowing.blueprint.model import Blueprint
from shadowing.errors import InputError, ShadowingError
from shadowing.failover import launcher, network, preflight, replication, traffic, verify
from shadowing.failover.clients import FailoverClients
from shadowing.failover.plan import MODES, TRIGGERS, FailoverPlan, build_plan
from shadowing.warehouse import blueprints as bp_store
from shadowing.warehouse import operations as ops

log = logging.getLogger(__name__)

STEPS_BY_MODE: dict[str, tuple[str, ...]] = {
    "dry_run": ("prepare", "preflight"),
    "drill": ("prepare", "preflight", "launch", "network", "verify"),
    "live": ("prepare", "preflight", "launch", "network", "traffic", "replication", "verify"),
}


DETECTION_CLOCK_SKEW = timedelta(minutes=5)


class FailoverLocked(ShadowingError):
    """Another failover of the same primary region holds the lock."""


RunEnded = Callable[[ops.FailoverEvent], "str | None"]
"""Given the lock holder's event, the terminal state of the run that recorded it ("failed", "success"), or None
while it runs or when unknown (the orchestration layer asks Airflow; the CLI cannot know)."""


@dataclass
class FailoverRequest:
    """What the trigger asked for (DAG params / CLI flags), before resolution."""

    primary_region: str
    mode: str = "dry_run"
    shadow_region: str | None = None
    capacity_percent: int = 100
    blueprint_version: int | None = None
    reason: str = ""
    confirm_region: str = ""
    trigger: str = "manual"
    detected_at: str | None = None
    triggered_by: str | None = None


@dataclass
class FailoverState:
    """Resolved identity of one failover, passed from task to task (JSON-able)."""

    failover_id: str
    primary_region: str
    shadow_region: str
    mode: str
    trigger: str
    capacity_percent: int
    blueprint_version: int
    blueprint_id: int
    dag_run_id: str | None = None
    detected_at: str | None = None
    reason: str = ""
    locked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailoverState:
        return cls(**data)


@dataclass
class FailoverEnv:
    clients: FailoverClients
    engine: Engine
    launch_timeout: float = 600.0
    max_blueprint_age_hours: float = 24.0

    def ec2(self, region: str) -> Any:
        return self.clients.get("ec2", region)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"not an ISO-8601 time: {value!r}", field=name) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def validate_request(request: FailoverRequest, allowed_primaries: list[str]) -> None:
    if request.primary_region not in allowed_primaries:
        raise InputError(f"{request.primary_region!r} is not a configured primary region "
                         f"({', '.join(allowed_primaries)})", field="primary_region")
    if request.mode not in MODES:
        raise InputError(f"must be one of {', '.join(MODES)}, got {request.mode!r}", field="mode")
    if request.trigger not in TRIGGERS:
        raise InputError(f"must be one of {', '.join(TRIGGERS)}, got {request.trigger!r}", field="trigger")
    if request.mode == "live" and request.trigger == "manual" and \
            (request.confirm_region or "").strip() != request.primary_region:
        raise InputError(f"a manual live failover requires typing the primary region "
                         f"({request.primary_region}) here", field="confirm_region")
    detected = _parse_time(request.detected_at, "detected_at")
    # Recovery is measured from it: a detection in the future (a typo, a skewed clock) would report an RTO of 0.
    if detected is not None and detected > datetime.now(UTC) + DETECTION_CLOCK_SKEW:
        raise InputError(f"{request.detected_at!r} is in the future", field="detected_at")


# ─────────────────────────────────────────── helpers ───────────────────────────────────────────

def load_blueprint(env: FailoverEnv, state: FailoverState) -> Blueprint:
    row = bp_store.blueprint_version(env.engine, state.primary_region, state.blueprint_version)
    if row is None:
        raise InputError(f"blueprint version {state.blueprint_version} of {state.primary_region} is gone",
                         field="blueprint_version")
    return Blueprint.from_dict(row.payload)


def plan_for(state: FailoverState, blueprint: Blueprint) -> FailoverPlan:
    return build_plan(blueprint, failover_id=state.failover_id, mode=state.mode,
                      capacity_percent=state.capacity_percent, blueprint_version=state.blueprint_version)


def launch_context(state: FailoverState) -> launcher.LaunchContext:
    return launcher.LaunchContext(failover_id=state.failover_id, mode=state.mode,
                                  blueprint_version=state.blueprint_version, primary_region=state.primary_region)


def event_of(state: FailoverState) -> str:
    """The event row a step is recorded on: the failover's own, or a failback's (``extra.event_id``)."""
    return str(state.extra.get("event_id") or state.failover_id)


@contextmanager
def recorded_step(env: FailoverEnv, state: FailoverState, step: str) -> Iterator[dict[str, Any]]:
    """Record a step's start, end, outcome, duration and detail in the event (failed + error on exception)."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    event_id = event_of(state)
    ops.record_failover_step(env.engine, event_id, step, started_at=started)
    detail: dict[str, Any] = {}
    try:
        yield detail
    except BaseException as exc:
        detail.update({"error": f"{type(exc).__name__}: {exc}"[:2000], "seconds": time.perf_counter() - t0})
        ops.record_failover_step(env.engine, event_id, step, finished_at=datetime.now(UTC),
                                 outcome="failed", detail=detail)
        raise
    outcome = detail.pop("outcome", "succeeded")
    detail["seconds"] = round(time.perf_counter() - t0, 3)
    ops.record_failover_step(env.engine, event_id, step, finished_at=datetime.now(UTC),
                             outcome=outcome, detail=detail)
    log.info("step %s %s in %.2fs", step, outcome, detail["seconds"])


def _skip(env: FailoverEnv, state: FailoverState, step: str, why: str) -> dict[str, Any]:
    with recorded_step(env, state, step) as detail:
        detail.update({"outcome": "skipped", "reason": why})
    log.info("%s: skipped (%s)", step, why)
    return {"skipped": why}


# ─────────────────────────────────────────── steps ───────────────────────────────────────────

def stale_lock_reason(engine: Engine, holder: str, run_ended: RunEnded | None = None) -> str | None:
    """Why the lock ``holder`` left is stale (its run is over and nothing will release it), else None.

    A run releases the lock in its finalize task; a worker killed there, a run marked failed by hand or a run
    that timed out never does, and every later failover of the region would be refused forever. Stale when the
    holder's event is closed (finalize got that far), or when ``run_ended`` says its DAG run is over. A holder
    without an event is NOT stale: a concurrent prepare takes the lock just before it opens its event."""
    if holder.endswith("/failback"):  # a failback's lock as older versions named it: <failover id>/failback
        failover = ops.get_failover_event(engine, holder.removesuffix("/failback"))
        link = next((s for s in failover.steps if s.get("step") == "failback"), None) if failover else None
        return "its failback is closed" if link and link.get("finished_at") else None
    event = ops.get_failover_event(engine, holder)
    if event is None:
        return None
    if event.outcome != "running":
        return f"its event is closed ({event.outcome})"
    ended = run_ended(event) if run_ended is not None and event.dag_run_id else None
    return f"its run {event.dag_run_id} is over ({ended}) but never released it" if ended else None


def take_lock(env: FailoverEnv, primary_region: str, lock_id: str, *, mode: str,
              run_ended: RunEnded | None = None) -> None:
    """Take the per-primary lock for ``lock_id`` (re-entrant), reclaiming it from a stale holder; else
    :class:`FailoverLocked` naming the holder."""
    for _ in range(2):
        if ops.acquire_failover_lock(env.engine, primary_region, lock_id, mode=mode):
            return
        holder = ops.failover_lock_holder(env.engine, primary_region)
        if holder is None:
            continue  # released between the two reads: try again
        why = stale_lock_reason(env.engine, holder, run_ended)
        if why is None:
            raise FailoverLocked(f"failover {holder} of {primary_region} is in progress; {lock_id} refused "
                                 f"(one failover or failback per primary at a time)")
        log.warning("%s: reclaiming the lock left by %s: %s", primary_region, holder, why)
        ops.release_failover_lock(env.engine, primary_region, holder)  # only if still that holder's
    raise FailoverLocked(f"{primary_region}'s lock changed hands while {lock_id} took it; try again")


def hold_lock(env: FailoverEnv, state: FailoverState) -> None:
    """Before a step changes anything: this run must (still) hold the region's lock. A task cleared after its
    run's finalize released the lock would otherwise launch, rewire or move DNS beside another failover or
    failback of the region that took the lock since; re-taken when free (finalize releases it again)."""
    if state.mode == "dry_run":
        return
    lock_id = str(state.extra.get("lock_id") or state.failover_id)
    take_lock(env, state.primary_region, lock_id, mode=state.mode)


def refuse_second_live_failover(env: FailoverEnv, primary_region: str, failover_id: str) -> None:
    """A live failover of a region whose shadow already serves it would launch a second full shadow beside
    the first and flip DNS between them: refused (InputError), naming the failover to fail back or resume.
    The same failover (a retried or cleared task) is not "another" one."""
    from shadowing.failover.failback import serving_failover

    serving = serving_failover(ops.list_failover_events(env.engine, primary_region, limit=500))
    if serving is not None and serving.failover_id != failover_id:
        raise InputError(f"{primary_region} is already failed over: live failover {serving.failover_id} (run "
                         f"{serving.dag_run_id}, {serving.outcome}) moved its traffic to {serving.shadow_region} "
                         f"and was not failed back; fail it back (regional_failback) or clear that run's failed "
                         f"tasks instead of starting a second live failover", field="mode")


def prepare(env: FailoverEnv, request: FailoverRequest, *, failover_id: str, dag_run_id: str | None,
            allowed_primaries: list[str], run_ended: RunEnded | None = None) -> FailoverState:
    """Validate, pin the blueprint version, take the per-primary lock (reclaiming a stale one, see
    :func:`take_lock`), open the event with the plan."""
    validate_request(request, allowed_primaries)
    if request.blueprint_version is not None:
        row = bp_store.blueprint_version(env.engine, request.primary_region, int(request.blueprint_version))
        if row is None:
            raise InputError(f"{request.primary_region} has no blueprint version {request.blueprint_version}",
                             field="blueprint_version")
    else:
        existing = ops.get_failover_event(env.engine, failover_id)
        # A retried prepare keeps the version it pinned the first time, even if a newer one became current.
        row = (bp_store.blueprint_version(env.engine, request.primary_region, existing.blueprint_version)
               if existing and existing.blueprint_version else
               bp_store.current_blueprint(env.engine, request.primary_region))
        if row is None:
            raise InputError(f"{request.primary_region} has no current blueprint yet (run shadow_blueprints)",
                             field="blueprint_version")
    blueprint = Blueprint.from_dict(row.payload)
    if request.shadow_region and request.shadow_region != blueprint.shadow_region:
        raise InputError(f"blueprint v{row.version} shadows {request.primary_region} in "
                         f"{blueprint.shadow_region}, not {request.shadow_region}", field="shadow_region")
    state = FailoverState(
        failover_id=failover_id, primary_region=request.primary_region, shadow_region=blueprint.shadow_region,
        mode=request.mode, trigger=request.trigger, capacity_percent=int(request.capacity_percent),
        blueprint_version=row.version, blueprint_id=row.id, dag_run_id=dag_run_id,
        detected_at=request.detected_at or None, reason=request.reason or "")
    plan = plan_for(state, blueprint)
    if state.mode == "live" and state.trigger == "manual":  # the monitor applies the rule itself before it
        refuse_second_live_failover(env, state.primary_region, failover_id)  # triggers (suppressed_failed_over)
    if state.mode != "dry_run":
        take_lock(env, state.primary_region, failover_id, mode=state.mode, run_ended=run_ended)
        state.locked = True
    ops.record_failover_event(
        env.engine, failover_id=failover_id, primary_region=state.primary_region,
        shadow_region=state.shadow_region, mode=state.mode, trigger=state.trigger,
        triggered_by=request.triggered_by, blueprint_version=row.version, blueprint_id=row.id,
        detected_at=_parse_time(request.detected_at, "detected_at"), plan=plan.to_dict(), dag_run_id=dag_run_id)
    with recorded_step(env, state, "prepare") as detail:
        detail.update({"blueprint_version": row.version, "instances_expected": plan.instances_expected,
                       "services": len(plan.services), "locked": state.locked, "reason": state.reason})
    log.info("plan:\n%s", plan.render())
    return state


def run_preflight(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    blueprint = load_blueprint(env, state)
    plan = plan_for(state, blueprint)
    with recorded_step(env, state, "preflight") as detail:
        row = bp_store.blueprint_version(env.engine, state.primary_region, state.blueprint_version)
        quotas = env.clients.get("service-quotas", state.shadow_region)
        checks = preflight.run_preflight(
            env.ec2(state.shadow_region), quotas, plan, ctx=launch_context(state),
            blueprint_valid_from=row.valid_from if row else None,
            readiness=ops.latest_readiness(env.engine, state.primary_region),
            max_age_hours=env.max_blueprint_age_hours)
        detail.update({"checks": len(checks), "warnings": [c.to_dict() for c in checks if not c.passed]})
    return detail


def launch(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    if state.mode == "dry_run":
        return _skip(env, state, "launch", "dry run: nothing is launched")
    hold_lock(env, state)
    blueprint = load_blueprint(env, state)
    plan = plan_for(state, blueprint)
    region = state.shadow_region
    with recorded_step(env, state, "launch") as detail:
        elbv2 = env.clients.get("elbv2", region)
        network.ensure_target_groups(elbv2, blueprint)
        results = launcher.launch_all(env.ec2(region), env.clients.get_single_attempt("ec2", region), elbv2,
                                      launch_context(state), plan.tiers, timeout=env.launch_timeout)
        detail.update({
            "tiers": len(results), "instances": sum(len(s.instance_ids) for t in results for s in t.services.values()),
            "created": sum(s.created for t in results for s in t.services.values()),
            "create_calls": sum(s.create_calls for t in results for s in t.services.values()),
            "create_retries": sum(s.retries for t in results for s in t.services.values()),
            "surplus_terminated": sum(len(s.terminated_surplus) for t in results for s in t.services.values()),
        })
    # Not in the event (the timeline stays small): handed to the network step so it need not describe again.
    return {**detail, "addresses": {name: sorted(result.addresses.values())
                                    for t in results for name, result in t.services.items()}}


def configure_network(env: FailoverEnv, state: FailoverState,
                      launched: dict[str, Any] | None = None) -> dict[str, Any]:
    """``launched``: the launch step's result (its ``addresses`` spare describing every instance again)."""
    if state.mode == "dry_run":
        return _skip(env, state, "network", "dry run")
    hold_lock(env, state)
    blueprint = load_blueprint(env, state)
    region = state.shadow_region
    addresses = (launched or {}).get("addresses")
    with recorded_step(env, state, "network") as detail:
        detail.update(network.configure_network(env.ec2(region), env.clients.get("elbv2", region),
                                                env.clients.get("route53", region), blueprint,
                                                failover_id=state.failover_id, mode=state.mode,
                                                addresses=addresses))
    return detail


def redirect_traffic(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    if state.mode != "live":
        return _skip(env, state, "traffic", f"{state.mode}: production records untouched")
    hold_lock(env, state)
    blueprint = load_blueprint(env, state)
    region = state.shadow_region
    elbv2 = env.clients.get("elbv2", region)
    plan = plan_for(state, blueprint)

    def healthy(_percent: int) -> bool:
        return verify.verify_failover(env.ec2(region), elbv2, env.clients.get("route53", region), blueprint,
                                      _without_traffic(plan))["unhealthy_targets"] == 0

    event = ops.get_failover_event(env.engine, event_of(state))
    earlier = next((s for s in (event.steps if event else []) if s.get("step") == "traffic"), None) or {}
    with recorded_step(env, state, "traffic") as detail:
        detail.update(traffic.redirect_traffic(env.clients.get("route53", region), elbv2, blueprint,
                                               failover_id=state.failover_id, health_gate=healthy))
        # A retry finds the records already moved: keep what the first attempt replaced (failback restores it).
        kept = (earlier.get("detail") or {}).get("replaced") or []
        if kept and "replaced" in detail:
            fresh = [r for r in detail["replaced"] if r not in kept]
            detail["replaced"] = kept + fresh
    return detail


def _without_traffic(plan: FailoverPlan) -> FailoverPlan:
    from dataclasses import replace

    return replace(plan, mode="drill" if plan.mode == "live" else plan.mode)


def trigger_replication(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    if state.mode != "live":
        return _skip(env, state, "replication", f"{state.mode}: data replication not triggered")
    hold_lock(env, state)
    blueprint = load_blueprint(env, state)
    with recorded_step(env, state, "replication") as detail:
        detail["steps"] = replication.trigger_replication(env.clients, blueprint, failover_id=state.failover_id,
                                                          mode=state.mode)
    return detail


def verify_failover(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    if state.mode == "dry_run":
        return _skip(env, state, "verify", "dry run")
    blueprint = load_blueprint(env, state)
    plan = plan_for(state, blueprint)
    region = state.shadow_region
    with recorded_step(env, state, "verify") as detail:
        result = verify.verify_failover(env.ec2(region), env.clients.get("elbv2", region),
                                        env.clients.get("route53", region), blueprint, plan)
        detail.update({k: v for k, v in result.items() if k != "per_service"})
        if not result["ok"]:
            raise RuntimeError("verification failed: " + "; ".join(result["problems"]))
    return detail


def teardown_drill(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    """Drill only: terminate what the drill launched, deregister it, delete the drill's DNS zone."""
    if state.mode != "drill":
        return {"skipped": f"{state.mode}: nothing to tear down"}
    blueprint = load_blueprint(env, state)
    region = state.shadow_region
    ec2 = env.ec2(region)
    with recorded_step(env, state, "teardown") as detail:
        ids = set(launcher.census(ec2, state.failover_id, role="launched"))
        detail["deregistered"] = network.deregister_launched(env.clients.get("elbv2", region), blueprint, ids)
        detail["terminated"] = len(launcher.terminate_launched(ec2, state.failover_id,
                                                               timeout=env.launch_timeout))
        detail["zone_deleted"] = network.delete_drill_zone(env.clients.get("route53", region),
                                                           state.primary_region, state.failover_id)
    return detail


def outcome_of(event: ops.FailoverEvent, mode: str) -> tuple[str, str | None]:
    """``succeeded`` when every step the mode needs finished without failure, else ``failed`` + reason."""
    by_step = {s["step"]: s for s in event.steps}
    for step in STEPS_BY_MODE[mode]:
        entry = by_step.get(step)
        if entry is None or entry.get("finished_at") is None:
            return "failed", f"step {step} did not complete"
        if entry.get("outcome") == "failed":
            return "failed", f"step {step} failed: {(entry.get('detail') or {}).get('error', '')}"
    # A drill's teardown is not required (the CLI may keep a drill up), but one that ran and failed (or died)
    # left drill capacity running: the drill did not succeed.
    teardown = by_step.get("teardown")
    if teardown is not None and (teardown.get("finished_at") is None or teardown.get("outcome") == "failed"):
        return "failed", ("step teardown failed: " + str((teardown.get("detail") or {}).get("error", ""))
                          if teardown.get("outcome") == "failed" else "step teardown did not complete") + \
            " (drill instances may still run)"
    return "succeeded", None


def finalize(env: FailoverEnv, state: FailoverState) -> dict[str, Any]:
    """Close the event (outcome, recovery time) and release the lock; runs whatever happened upstream."""
    event = ops.get_failover_event(env.engine, state.failover_id)
    if event is None:
        raise RuntimeError(f"no failover event {state.failover_id}")
    outcome, error = outcome_of(event, state.mode)
    by_step = {s["step"]: s for s in event.steps}
    # Recovery = when the shadow serves: traffic moved (live), or ready to take it (drill), or planned (dry run).
    marker = {"live": "traffic", "drill": "network", "dry_run": "preflight"}[state.mode]
    recovered = _parse_time((by_step.get(marker) or {}).get("finished_at"), "finished_at")
    event = ops.finish_failover_event(env.engine, state.failover_id, outcome=outcome, error=error,
                                      recovery_at=recovered)
    released = ops.release_failover_lock(env.engine, state.primary_region, state.failover_id)
    summary = {"outcome": outcome, "error": error, "recovery_seconds": event.recovery_seconds,
               "lock_released": released, "steps": step_seconds(event)}
    log.info("failover %s %s; recovery %.2fs; steps %s", state.failover_id, outcome,
             event.recovery_seconds or 0.0, summary["steps"])
    return summary


def step_seconds(event: ops.FailoverEvent) -> dict[str, float]:
    return {s["step"]: float((s.get("detail") or {}).get("seconds", 0.0)) for s in event.steps
            if s.get("outcome") not in (None, "skipped")}
