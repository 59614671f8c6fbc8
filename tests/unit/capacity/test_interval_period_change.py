"""A change of the DAG's period_seconds between runs: the next fold must not start off the new period's grid.

CloudWatch labels periods from the StartTime: a 300 s period starting at 12:07 covers up to 12:12, past a fold
ending at 12:10, and the next fold reads 12:10–12:15 again (the buckets straddle). Every interval must be
readable in whole periods: start and end on the grid of the period it is read at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowing.capacity.interval import SUB_MINUTE_PERIODS, bridge_period, next_interval

HOUR = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
KW = dict(bootstrap=timedelta(hours=6), max_gap=timedelta(days=1))
PERIODS = [*SUB_MINUTE_PERIODS, 60, 120, 300, 600, 900, 3600]


def _on_grid(moment: datetime, step: int) -> bool:
    return moment.timestamp() % step == 0


def _cloudwatch_period(p: int) -> bool:
    return p in SUB_MINUTE_PERIODS or (p > 0 and p % 60 == 0)


def test_minutes_then_five_minute_periods_bridge_to_the_new_grid() -> None:
    """Folds ended at 12:07 at 60 s; the period is now 300 s: 12:07 → 12:15 is read at 60 s (noted), and the
    fold after it starts on the 5-minute grid at 300 s."""
    i = next_interval(HOUR + timedelta(minutes=7), HOUR + timedelta(minutes=16, seconds=12), **KW, step_seconds=300)
    assert (i.start, i.end, i.step_seconds) == (HOUR + timedelta(minutes=7), HOUR + timedelta(minutes=15), 60)
    assert "off the 300 s period's grid" in (i.note or "") and "read at 60 s" in (i.note or "")
    j = next_interval(i.end, HOUR + timedelta(minutes=21), **KW, step_seconds=300)
    assert (j.start, j.end, j.step_seconds, j.note) == (HOUR + timedelta(minutes=15), HOUR + timedelta(minutes=20),
                                                         300, None)


def test_an_end_already_on_the_new_grid_reads_at_the_new_period() -> None:
    i = next_interval(HOUR + timedelta(minutes=10), HOUR + timedelta(minutes=21), **KW, step_seconds=300)
    assert (i.start, i.end, i.step_seconds, i.note) == (HOUR + timedelta(minutes=10), HOUR + timedelta(minutes=20),
                                                         300, None)


def test_nothing_whole_on_the_new_grid_yet_is_nothing_new() -> None:
    assert next_interval(HOUR + timedelta(minutes=7), HOUR + timedelta(minutes=9), **KW, step_seconds=300).empty


def test_a_long_gap_restart_from_an_off_grid_end_is_bridged_too() -> None:
    """The max-gap restart starts at the previous end when that is inside the restart's first step."""
    previous = HOUR + timedelta(minutes=7)
    i = next_interval(previous, previous + timedelta(minutes=12), bootstrap=timedelta(hours=1),
                      max_gap=timedelta(minutes=7, seconds=30), step_seconds=300)
    assert (i.start, i.end, i.step_seconds) == (previous, HOUR + timedelta(minutes=15), 60)
    assert "only the last" in (i.note or "") and "off the 300 s period's grid" in (i.note or "")


@pytest.mark.parametrize(("offset", "step", "bridge"), [
    (7 * 60, 300, 60), (30, 300, 30), (20, 300, 20), (100, 300, 20), (40, 120, 20), (0, 300, 300),
    (90 * 60, 3600, 1800), (10, 30, 10), (1, 5, 1)])
def test_the_bridge_is_the_longest_cloudwatch_period_on_both_grids(offset: int, step: int, bridge: int) -> None:
    assert bridge_period(HOUR + timedelta(seconds=offset), step) == bridge


@given(old=st.sampled_from(PERIODS), new=st.sampled_from(PERIODS), steps=st.integers(1, 500),
       later=st.integers(0, 4 * 3600))
def test_every_interval_after_any_period_change_is_read_in_whole_periods(old: int, new: int, steps: int,
                                                                          later: int) -> None:
    """Previous folds ended on the old period's grid; after switching to the new period, every interval up to
    a run on the new grid is read in whole CloudWatch periods, and the one after it at the new period."""
    previous = HOUR + timedelta(seconds=old * steps)
    end = previous + timedelta(seconds=later)
    i = next_interval(previous, end, **KW, step_seconds=new)
    if i.empty:
        return
    assert i.start == previous and _cloudwatch_period(i.step_seconds)
    assert _on_grid(i.start, i.step_seconds) and _on_grid(i.end, i.step_seconds) and _on_grid(i.end, new)
    assert new % i.step_seconds == 0
    j = next_interval(i.end, i.end + timedelta(seconds=2 * new), **KW, step_seconds=new)
    assert (j.start, j.step_seconds, j.note) == (i.end, new, None)
