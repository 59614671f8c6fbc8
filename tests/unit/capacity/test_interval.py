"""Which interval a capacity refresh folds: bootstrap, catch-up, nothing new, long gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shadowing.capacity.interval import next_interval

END = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
KW = dict(bootstrap=timedelta(hours=6), max_gap=timedelta(days=1))


def test_first_run_reads_the_bootstrap_history() -> None:
    i = next_interval(None, END, **KW)
    assert (i.start, i.end) == (END - timedelta(hours=6), END) and "bootstrap" in (i.note or "")


def test_catches_up_from_the_last_valid_end_and_floors_to_whole_steps() -> None:
    i = next_interval(END - timedelta(minutes=20), END + timedelta(seconds=42), **KW)
    assert (i.start, i.end, i.note) == (END - timedelta(minutes=20), END, None)


def test_nothing_new_is_empty() -> None:
    assert next_interval(END, END, **KW).empty
    assert next_interval(END + timedelta(minutes=5), END, **KW).empty


def test_a_long_gap_is_bounded_and_said() -> None:
    i = next_interval(END - timedelta(days=3), END, **KW)
    assert i.start == END - timedelta(days=1) and "only the last" in (i.note or "")


def test_naive_end_is_refused() -> None:
    with pytest.raises(ValueError):
        next_interval(None, END.replace(tzinfo=None), **KW)
