"""Which data interval a capacity refresh reads: everything not folded yet, bounded.

A scheduled run owns [data_interval_start, data_interval_end), but the fingerprint is a fold: what it needs is
every point since the last *valid* fingerprint's window end. Reading from there (not from the run's own start)
means a failed or skipped run leaves no hole and a re-run never double counts (the fold also drops points before
that watermark). The first run has no fingerprint to fold into and reads a bootstrap history; a gap longer than
``max_gap`` (the profiler was off for weeks) restarts from ``end - max_gap`` and says so: a bootstrap into the
old fingerprint, read at the bootstrap's (coarser) period when there is one. Both starts are
floored to the period too: CloudWatch (to the minute; moto to the second) rounds StartTime down and labels the
first period with the rounded time, which the extraction would drop as before the interval (a bootstrap of
0.3333 h at 3600 s lost its only period). A fold starts at the previous end, already on the grid. Cron schedules in
Airflow 3 give zero-length intervals: only the run's end matters here.

The bootstrap may be read at a coarser period than the folds (a week of hourly samples instead of minutes:
sixty times fewer points to fetch and fold); its end is then floored to that coarser step, so the next fold
starts on a whole hour and reads the rest at the fine period. ``step_seconds`` of the result is the period
to read the interval at.

The period can change between runs (the DAG's ``period_seconds``): the previous end is on the old period's
grid, not necessarily on the new one's (12:07 after minutes, now 5-minute periods). CloudWatch labels periods
from the StartTime, and a period starting at 12:07 covers up to 12:12, past an interval ending at 12:10, whose
next fold reads 12:10–12:15 again: the buckets straddle the intervals. Such a fold is read at a *bridge*
period instead, the longest CloudWatch period on both grids (12:07 → 12:10 at 60 s), up to an end on the new
grid; from there on the folds read at the new period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

# Periods CloudWatch accepts below a minute (high-resolution metrics); above it, any multiple of 60.
SUB_MINUTE_PERIODS = (1, 5, 10, 20, 30)


@dataclass(frozen=True)
class RefreshInterval:
    start: datetime
    end: datetime
    note: str | None = None
    step_seconds: int = 60

    @property
    def empty(self) -> bool:
        return self.start >= self.end


def next_interval(previous_end: datetime | None, end: datetime, *, bootstrap: timedelta,
                  max_gap: timedelta, step_seconds: int = 60, bootstrap_step_seconds: int | None = None
                  ) -> RefreshInterval:
    """[start, end) of the next fold; ``end`` is floored to whole steps (a step still filling is left for later).

    ``bootstrap_step_seconds`` (default ``step_seconds``): the period of the first read (no previous end) and of
    a restart after a gap longer than ``max_gap``.
    """
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    if previous_end is None:
        step = step_seconds if bootstrap_step_seconds is None else bootstrap_step_seconds
        end = _floor(end, step)
        return RefreshInterval(_floor(end - bootstrap, step), end, f"first fingerprint: bootstrap from "
                               f"{bootstrap} of history at a {step} s period", step)
    fine_end = _floor(end, step_seconds)
    if previous_end >= fine_end:
        return RefreshInterval(previous_end, previous_end, "nothing new since the last valid fingerprint",
                               step_seconds)
    bridge = bridge_period(previous_end, step_seconds)
    if fine_end - previous_end > max_gap:
        note = f"last valid fingerprint ends {fine_end - previous_end} before this run; only the last {max_gap} are folded"
        # A restart is a bootstrap into the old fingerprint: read at the bootstrap's period (max_gap at the fine
        # period is up to 60 times the calls and the billed metrics), unless the gap is too short for one
        # whole coarse step after the previous end (never read before it: the fold drops those points as late).
        if bootstrap_step_seconds and bootstrap_step_seconds != step_seconds:
            coarse_end = _floor(end, bootstrap_step_seconds)
            coarse_start = max(_floor(coarse_end - max_gap, bootstrap_step_seconds),
                               _ceil(previous_end, bootstrap_step_seconds))
            if coarse_start < coarse_end:
                return RefreshInterval(coarse_start, coarse_end, note, bootstrap_step_seconds)
        restart = _floor(fine_end - max_gap, step_seconds)
        if restart >= previous_end:
            return RefreshInterval(restart, fine_end, note, step_seconds)
        if bridge != step_seconds:  # the restart would start inside the previous end's step: from it, bridged
            return RefreshInterval(previous_end, fine_end, f"{note}; {_bridge_note(previous_end, step_seconds, bridge)}",
                                   bridge)
        return RefreshInterval(previous_end, fine_end, note, step_seconds)
    if bridge != step_seconds:
        return RefreshInterval(previous_end, fine_end, _bridge_note(previous_end, step_seconds, bridge), bridge)
    return RefreshInterval(previous_end, fine_end, None, step_seconds)


def bridge_period(moment: datetime, step_seconds: int) -> int:
    """The longest CloudWatch period dividing both ``step_seconds`` and ``moment``'s offset on its grid:
    ``step_seconds`` itself when ``moment`` is on the grid. Periods read from ``moment`` at it end on the grid."""
    if step_seconds <= 0:
        return step_seconds
    offset = moment.timestamp() % step_seconds
    if offset == 0:
        return step_seconds
    if not float(offset).is_integer():
        return 1
    common = math.gcd(int(offset), step_seconds)
    # any multiple of 60 is a period; below it, only the high-resolution ones
    return common if common % 60 == 0 else max(p for p in SUB_MINUTE_PERIODS if common % p == 0)


def _bridge_note(previous_end: datetime, step_seconds: int, bridge: int) -> str:
    return (f"the last valid fingerprint ends at {previous_end.isoformat()}, off the {step_seconds} s period's grid "
            f"(the period changed): read at {bridge} s up to the grid, so that no period straddles two folds")


def _floor(moment: datetime, step_seconds: int) -> datetime:
    return moment - timedelta(seconds=moment.timestamp() % step_seconds) if step_seconds > 0 else moment


def _ceil(moment: datetime, step_seconds: int) -> datetime:
    floored = _floor(moment, step_seconds)
    return floored if floored == moment else floored + timedelta(seconds=step_seconds)
