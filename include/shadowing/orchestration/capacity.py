"""Airflow glue of the capacity profiler: one region's refresh (plan interval → extract → fold → validate → store).

Also the DAG's parse-time settings (:func:`capacity_schedule`), cheap and import-light: the DAG file imports them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from shadowing.settings import is_region_name

SCHEDULE_ENV = "SHADOWING_CAPACITY_SCHEDULE"
DEFAULT_SCHEDULE = "*/5 * * * *"
# CloudWatch ingests a datapoint a while after its timestamp (the agent flushes every minute, EC2 detailed
# monitoring lags 1–2 minutes, the demo world publishes each whole minute once it is over): a run reads only up
# to this long before the wall clock, since a point that lands after its interval was read is late for ever.
DEFAULT_SETTLE = timedelta(minutes=3)
# Freshness (the GX suite's bounds): a window ending this long before the wall clock is an old interval, not the
# region's current capacity; the newest sample period ending this long before the window end means the source
# delivered nothing new (a silent CloudWatch, an agent or permission broken): the window moved on, the data not.
DEFAULT_MAX_WINDOW_AGE = timedelta(hours=2)
DEFAULT_MAX_DATA_LAG = timedelta(minutes=30)


def capacity_schedule() -> str:
    """The DAG's schedule from ``SHADOWING_CAPACITY_SCHEDULE`` (unset or blank: every 5 minutes).

    A bad value fails the DAG's import naming the variable and the value, instead of croniter's bare "Exactly
    5, 6 or 7 columns has to be specified for iterator expression".
    """
    raw = os.environ.get(SCHEDULE_ENV, "").strip()
    if not raw:
        return DEFAULT_SCHEDULE
    if raw in ("@once", "@continuous"):
        return raw
    # Checked as Airflow will (presets such as @hourly included), already imported by any DAG file.
    from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    try:
        CronTriggerTimetable(raw, timezone="UTC").validate()
    except AirflowTimetableInvalid as exc:
        raise ValueError(f"{SCHEDULE_ENV}={raw!r} is not a schedule: {exc} (expected a cron expression such as "
                         f"{DEFAULT_SCHEDULE!r}, or a preset such as @hourly)") from exc
    return raw


def _utcnow() -> datetime:
    return datetime.now(UTC)


def refresh_region(region: str, *, end: datetime, run_id: str | None = None, period: int = 60,
                   bootstrap: timedelta = timedelta(days=7), max_gap: timedelta = timedelta(days=7),
                   bootstrap_period: int = 3600, window_periods: int | None = 6,
                   settle: timedelta = DEFAULT_SETTLE, retire_after: timedelta = timedelta(days=7),
                   max_window_age: timedelta | None = None, max_data_lag: timedelta = DEFAULT_MAX_DATA_LAG
                   ) -> dict[str, Any]:
    """Fold everything since the region's last valid fingerprint (up to ``end``) into it and store the result.

    The first fingerprint of a region reads ``bootstrap`` of history at ``bootstrap_period`` (hourly samples
    of a week), later runs fold at ``period``; GetMetricData calls cover at most ``window_periods`` periods.
    Nothing younger than ``settle`` (wall clock) is read: a run whose end is later (a live run, a logical date
    in the future) stops there, and the next run reads on from it. A service without a sample for
    ``retire_after`` before the region's newest is retired from the fingerprint (named in its warnings).

    Freshness, validated with the rest: the region's newest sample period must end at most ``max_data_lag``
    before the window end (a CloudWatch that delivered nothing new for that long fails the run instead of
    storing the old data under a new window end), and, with ``max_window_age`` (the DAG always passes it), the
    window must end at most that long before the wall clock at validation (never less than ``settle`` plus two
    periods: what a punctual run's window lags by). Without it, the window is checked against its own end, as
    the CLI checks a file: a replay of history (a test, a benchmark) is not stale.

    Returns {"id", "valid", "skipped", "landed", "window", "services"}: ``landed`` when the current fingerprint
    was stored by this run (now, or by an earlier try of it that died after storing), the only case in which
    the DAG publishes the Asset. A failed validation is stored (auditable) but not made current, and fails the
    task without retries (AirflowFailException: the same data fails the same way), so the Asset is not
    published and the previous valid fingerprint stays current. A first run in a region without any tagged
    instance fails the same way, naming the tag, and so does a region name that cannot be an AWS region. A valid
    fingerprint whose window ends before the current one (stored meanwhile by another worker: this one a zombie,
    or an overlapping run) is stored as superseded, not made current: the result is then skipped, ``id`` the
    current one, ``stored_id`` this row.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from shadowing.aws import tags
    from shadowing.capacity.fingerprint import ProfileParams, fold, parse_iso
    from shadowing.capacity.interval import next_interval
    from shadowing.errors import ValidationFailed
    from shadowing.metrics.cloudwatch import discover_instances, extract
    from shadowing.orchestration.clients import aws_client, warehouse_engine
    from shadowing.quality.fingerprint import freshness, validate_fingerprint
    from shadowing.warehouse.store import latest_valid_fingerprint, store_fingerprint

    if not is_region_name(region):
        # Not retried: a misspelt region fails the same way every time (an unreachable endpoint on AWS, HTTP 500
        # from the emulator), only slower and less clearly.
        raise AirflowFailException(f"{region!r} (a primary region of SHADOWING_REGION_PAIRS) is not an AWS "
                                   f"region name such as 'us-east-1': fix or drop it")
    end = min(end, _utcnow() - settle)
    engine = warehouse_engine()
    previous = latest_valid_fingerprint(engine, region)
    previous_end = None
    if previous is not None:
        previous_end = datetime.fromtimestamp(parse_iso(previous.payload["window"]["end"]), UTC)
    interval = next_interval(previous_end, end, bootstrap=bootstrap, max_gap=max_gap, step_seconds=period,
                             bootstrap_step_seconds=bootstrap_period)
    if interval.empty:
        assert previous is not None
        return {"id": previous.id, "valid": True, "skipped": True, "note": interval.note,
                "landed": run_id is not None and previous.run_id == run_id,
                "window": previous.payload["window"], "services": _summary(previous.payload)}
    instances = discover_instances(aws_client("ec2", region))
    untagged = (f"{region}: no EC2 instance tagged {tags.SERVICE!r} (pre-staged standbys excluded): nothing to "
                f"profile; tag the primary's instances with their service, or drop {region} from "
                f"SHADOWING_REGION_PAIRS")
    if not instances and previous is None:
        # A configuration problem, not a transient one: retrying reads the same inventory. (With a fingerprint
        # already, the fold below keeps it, decayed, and says so: a primary emptied on purpose stays sized.)
        raise AirflowFailException(untagged)
    cols = extract(aws_client("cloudwatch", region), None, region=region, start=interval.start, end=interval.end,
                   period=interval.step_seconds, window_periods=window_periods, instances=instances)
    # The bootstrap's alignment step is the period it was read at (a short history of one sample per series
    # gives the data no spacing to infer it from); later folds keep the fingerprint's step.
    fingerprint = fold(previous.payload if previous else None, cols,
                       window=(interval.start.timestamp(), interval.end.timestamp()), region=region,
                       params=ProfileParams(step_seconds=interval.step_seconds),
                       retire_after=retire_after.total_seconds())
    if interval.note:
        fingerprint["warnings"] = [f"interval: {interval.note}", *fingerprint["warnings"]]
    if not instances:
        fingerprint["warnings"] = [untagged, *fingerprint["warnings"]]
    # The wall clock at validation when the window's age is bounded; else the window's own end (a replay).
    now = _utcnow() if max_window_age is not None else interval.end
    window_bound = None if max_window_age is None else \
        max(max_window_age, settle + timedelta(seconds=2 * interval.step_seconds)).total_seconds()
    kept = f"fingerprint {previous.id} stays current" if previous else "no valid fingerprint yet"
    try:
        validate_fingerprint(fingerprint, now=now.timestamp(), max_window_age=window_bound,
                             max_data_lag=max_data_lag.total_seconds(), sample_period=interval.step_seconds)
    except ValidationFailed as exc:
        saved = store_fingerprint(engine, region=region, fingerprint=fingerprint, valid=False, errors=exc.failures,
                                  run_id=run_id, window_start=interval.start, window_end=interval.end)
        stale = _staleness(region, freshness(fingerprint, now=now.timestamp(), sample_period=interval.step_seconds),
                           max_window_age=window_bound, max_data_lag=max_data_lag.total_seconds())
        if stale and not instances:
            stale = f"{stale} ({untagged})"
        raise AirflowFailException(f"{stale + ' ' if stale else ''}{exc} (stored as invalid fingerprint {saved.id}; "
                                   f"{kept})") from exc
    saved = store_fingerprint(engine, region=region, fingerprint=fingerprint, valid=True, run_id=run_id,
                              window_start=interval.start, window_end=interval.end)
    if not saved.current:
        # A worker that stored a later window meanwhile (this one a zombie, or an overlapping run): that one
        # stays current; this row is kept for audit. Nothing landed, nothing to publish.
        return {"id": saved.current_id, "valid": True, "skipped": True, "landed": False, "stored_id": saved.id,
                "note": saved.superseded, "window": fingerprint["window"],
                "services": _summary(fingerprint)}
    return {"id": saved.id, "valid": True, "skipped": False, "landed": True, "note": interval.note,
            "window": fingerprint["window"],
            "period": interval.step_seconds, "rows": len(cols), "services": _summary(fingerprint)}


def _staleness(region: str, fresh: Any, *, max_window_age: float | None, max_data_lag: float) -> str:
    """The freshness failure in words, naming the region and the ages (empty when the fingerprint is fresh)."""
    from shadowing.capacity.fingerprint import iso

    reasons = []
    if fresh.data_lag is not None and fresh.data_lag > max_data_lag:
        reasons.append(f"no sample after {iso(fresh.newest)}: its data ends {_age(fresh.data_lag)} before its window "
                       f"end {iso(fresh.window_end)} (bound {_age(max_data_lag)}), CloudWatch delivered nothing new "
                       f"for that long (instances stopped? the agent or the role's permissions broken?)")
    if max_window_age is not None and fresh.window_age is not None and fresh.window_age > max_window_age:
        reasons.append(f"its window ends {_age(fresh.window_age)} before now, at {iso(fresh.window_end)} (bound "
                       f"{_age(max_window_age)}): a run of an old interval; the next run reads on from the last "
                       f"valid fingerprint")
    return f"{region}: stale capacity fingerprint: {'; '.join(reasons)}." if reasons else ""


def _age(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 120:
        return f"{minutes} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def _summary(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Service → recommended shadow instances (small enough for XCom and the task log)."""
    return {name: (s.get("sizing") or {}).get("instances") for name, s in (fingerprint.get("services") or {}).items()}
