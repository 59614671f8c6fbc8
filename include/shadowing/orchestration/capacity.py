"""Airflow glue of the capacity profiler: one region's refresh (plan interval → extract → fold → validate → store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def refresh_region(region: str, *, end: datetime, run_id: str | None = None, period: int = 60,
                   bootstrap: timedelta = timedelta(days=7), max_gap: timedelta = timedelta(days=7),
                   bootstrap_period: int = 3600, window_periods: int | None = 6) -> dict[str, Any]:
    """Fold everything since the region's last valid fingerprint (up to ``end``) into it and store the result.

    The first fingerprint of a region reads ``bootstrap`` of history at ``bootstrap_period`` (hourly samples
    of a week), later runs fold at ``period``; GetMetricData calls cover at most ``window_periods`` periods.

    Returns {"id", "valid", "skipped", "window", "services"}. A failed validation is stored (auditable) but not
    made current, and fails the task without retries (AirflowFailException: the same data fails the same way),
    so the Asset is not published and the previous valid fingerprint stays current. A first run in a region
    without any tagged instance fails the same way, naming the tag.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from shadowing.aws import tags
    from shadowing.capacity.fingerprint import ProfileParams, fold, parse_iso
    from shadowing.capacity.interval import next_interval
    from shadowing.errors import ValidationFailed
    from shadowing.metrics.cloudwatch import discover_instances, extract
    from shadowing.orchestration.clients import aws_client, warehouse_engine
    from shadowing.quality.fingerprint import validate_fingerprint
    from shadowing.warehouse.store import latest_valid_fingerprint, save_fingerprint

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
                       params=ProfileParams(step_seconds=interval.step_seconds))
    if interval.note:
        fingerprint["warnings"] = [f"interval: {interval.note}", *fingerprint["warnings"]]
    if not instances:
        fingerprint["warnings"] = [untagged, *fingerprint["warnings"]]
    try:
        validate_fingerprint(fingerprint, now=interval.end.timestamp())
    except ValidationFailed as exc:
        fid = save_fingerprint(engine, region=region, fingerprint=fingerprint, valid=False, errors=exc.failures,
                               run_id=run_id, window_start=interval.start, window_end=interval.end)
        kept = f"fingerprint {previous.id} stays current" if previous else "no valid fingerprint yet"
        raise AirflowFailException(f"{exc} (stored as invalid fingerprint {fid}; {kept})") from exc
    fid = save_fingerprint(engine, region=region, fingerprint=fingerprint, valid=True, run_id=run_id,
                           window_start=interval.start, window_end=interval.end)
    return {"id": fid, "valid": True, "skipped": False, "note": interval.note, "window": fingerprint["window"],
            "period": interval.step_seconds, "rows": len(cols), "services": _summary(fingerprint)}


def _summary(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Service → recommended shadow instances (small enough for XCom and the task log)."""
    return {name: (s.get("sizing") or {}).get("instances") for name, s in (fingerprint.get("services") or {}).items()}
