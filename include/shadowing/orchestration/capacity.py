"""Airflow glue of the capacity profiler: one region's refresh (extract → fold → validate → store)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def refresh_region(region: str, *, start: datetime, end: datetime, run_id: str | None = None,
                   period: int = 60) -> dict[str, Any]:
    """Fold the data interval into the region's last valid fingerprint and store the result.

    Returns {"id", "valid", "errors"}; a failed validation is stored (auditable) but not made current, and
    is raised as ValidationFailed so the task fails visibly and the Asset is not published.
    """
    from shadowing.capacity.fingerprint import fold
    from shadowing.errors import ValidationFailed
    from shadowing.metrics.cloudwatch import extract
    from shadowing.orchestration.clients import aws_client, warehouse_engine
    from shadowing.quality.fingerprint import validate_fingerprint
    from shadowing.warehouse.store import latest_valid_fingerprint, save_fingerprint

    engine = warehouse_engine()
    previous = latest_valid_fingerprint(engine, region)
    cols = extract(aws_client("cloudwatch", region), aws_client("ec2", region), region=region, start=start,
                   end=end, period=period)
    fingerprint = fold(previous.payload if previous else None, cols, window=(start.timestamp(), end.timestamp()),
                       region=region)
    try:
        validate_fingerprint(fingerprint, now=end.timestamp())
    except ValidationFailed as exc:
        save_fingerprint(engine, region=region, fingerprint=fingerprint, valid=False, errors=exc.failures,
                         run_id=run_id, window_start=start, window_end=end)
        raise
    fid = save_fingerprint(engine, region=region, fingerprint=fingerprint, valid=True, run_id=run_id,
                           window_start=start, window_end=end)
    return {"id": fid, "valid": True, "errors": []}
