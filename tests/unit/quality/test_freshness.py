"""Freshness of a capacity fingerprint: the window's age at validation and the lag of its newest data.

Regression: the refresh validated the window's age against the window's own end (always 0), and nothing looked
at the data: a fold over a CloudWatch silent for hours stored the old data under a new window end, valid.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from shadowing.capacity.fingerprint import build, iso, parse_iso
from shadowing.metrics.frame import read_metrics
from shadowing.quality.fingerprint import (
    DATA_LAG_BOUND,
    SUITE_PATH,
    bounded_suite,
    check_fingerprint,
    flatten,
    freshness,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    return build(read_metrics(FIXTURES))


def _end(fp: dict[str, Any]) -> float:
    return parse_iso(fp["window"]["end"])


def _moved_on(fp: dict[str, Any], seconds: float) -> dict[str, Any]:
    """``fp`` with its window ending ``seconds`` after its newest sample's period, and no new sample: what a fold
    over a source silent for that long gives."""
    moved = copy.deepcopy(fp)
    newest = freshness(fp).newest
    assert newest is not None
    moved["window"]["end"] = iso(newest + fp["params"]["step_seconds"] + seconds)
    return moved


def test_a_fingerprint_of_complete_data_has_no_lag(good: dict[str, Any]) -> None:
    fresh = freshness(good, now=_end(good) + 60)
    step = good["params"]["step_seconds"]
    assert fresh.data_lag == 0 and fresh.window_age == 60
    assert fresh.newest is not None and _end(good) - step <= fresh.newest < _end(good)
    assert set(flatten(good, now=_end(good))["data_lag_seconds"]) == {0.0}


@pytest.mark.parametrize(("silent", "ok"), [(1800, True), (1801, False), (3 * 3600, False)])
def test_a_window_that_moved_on_without_new_data_fails_data_freshness(good: dict[str, Any], silent: float,
                                                                      ok: bool) -> None:
    """The window end moved ``silent`` seconds past the data (default bound: 30 min), validated at once."""
    fp = _moved_on(good, silent)
    report = check_fingerprint(fp, now=_end(fp))
    assert report.success is ok, report.failures
    if not ok:
        assert any("data_lag_seconds at " in line and "data freshness" in line for line in report.failures)


def test_the_bounds_are_the_callers(good: dict[str, Any]) -> None:
    fp = _moved_on(good, 600)
    assert check_fingerprint(fp, now=_end(fp)).success
    assert not check_fingerprint(fp, now=_end(fp), max_data_lag=599).success
    # the window's age: against the wall clock the caller passes, at the caller's bound
    assert check_fingerprint(good, now=_end(good) + 7000).success
    report = check_fingerprint(good, now=_end(good) + 7000, max_window_age=3600)
    assert not report.success and any("window_age_seconds at " in line for line in report.failures)


def test_the_sample_period_the_data_was_read_at_counts_as_current(good: dict[str, Any]) -> None:
    """A fold read at 60 s into an hourly-step fingerprint: its newest sample is one period, not one step, before
    the end; at the fingerprint's step the lag would be hidden for an hour."""
    fp = copy.deepcopy(good)
    newest = freshness(fp).newest
    assert newest is not None
    fp["window"]["end"] = iso(newest + 60)
    fp["params"]["step_seconds"] = 3600
    assert freshness(fp, sample_period=60).data_lag == 0
    fp["window"]["end"] = iso(newest + 60 + 1801)
    assert freshness(fp).data_lag == 0  # hidden within the hourly step
    assert freshness(fp, sample_period=60).data_lag == 1801
    assert not check_fingerprint(fp, now=_end(fp), sample_period=60).success


def test_a_fingerprint_without_last_seen_is_not_failed_for_it(good: dict[str, Any]) -> None:
    """Fingerprints from before last_seen was kept carry no newest sample: no lag to measure."""
    fp = copy.deepcopy(good)
    for s in fp["services"].values():
        s["instances"].pop("last_seen", None)
    assert freshness(fp).data_lag is None
    assert check_fingerprint(fp, now=_end(fp)).success


def test_an_unknown_bound_is_an_error_not_a_no_op() -> None:
    with pytest.raises(ValueError, match="no expectation bounded by"):
        bounded_suite(SUITE_PATH, {"max_typo": 1.0})
    spec = bounded_suite(SUITE_PATH, {DATA_LAG_BOUND: 5.0})
    assert [e["kwargs"]["max_value"] for e in spec["expectations"] if e["meta"].get("bound") == DATA_LAG_BOUND] == [5.0]


def test_the_cli_still_validates_an_old_file(tmp_path: Path) -> None:
    """`python -m shadowing fingerprint --validate` profiles history: files from 2023 are not stale."""
    from shadowing.cli import main

    out = tmp_path / "fp.json"
    assert main(["fingerprint", "--metrics", str(FIXTURES / "ec2_cpu_utilization_5f5533.csv"), "--out", str(out),
                 "--validate"]) == 0
    assert out.exists()
