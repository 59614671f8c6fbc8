"""A service without a sample for RETIRE_AFTER_SECONDS before the region's newest sample leaves the fingerprint
(and so the sizing a failover launches), with a warning; a region whose metrics stopped altogether keeps all."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from shadowing.capacity.fingerprint import RETIRE_AFTER_SECONDS, build, dumps, fold, loads, parse_iso
from shadowing.metrics.frame import from_pandas

T0 = pd.Timestamp("2025-03-03", tz="UTC").timestamp()  # a Monday
HOUR, DAY = 3600.0, 86400.0


def _frame(service: str, start: float, hours: float, *, instances: int = 1) -> pd.DataFrame:
    n = int(hours * 60)
    ts = pd.to_datetime(start + 60.0 * np.arange(n), unit="s", utc=True)
    return pd.concat([pd.DataFrame({"timestamp": ts, "service": service, "instance_id": f"{service}-{i}",
                                    "metric": "cpu_utilization", "value": 20.0 + i}) for i in range(instances)],
                     ignore_index=True)


def _stored(fp: dict) -> dict:
    return loads(dumps(fp), source="test")


def _fold(fp: dict, df: pd.DataFrame, start: float, end: float, **kw: float) -> dict:
    return fold(_stored(fp), from_pandas(df) if len(df) else from_pandas(_frame("api", start, 0)),
                window=(start, end), **kw)


def _first(hours: float = 6) -> dict:
    df = pd.concat([_frame("api", T0, hours, instances=2), _frame("old", T0, hours)], ignore_index=True)
    return build(from_pandas(df), window=(T0, T0 + hours * HOUR))


def test_last_seen_is_kept_per_service_and_survives_the_stored_json() -> None:
    fp = _stored(_first())
    assert fp["services"]["old"]["instances"]["last_seen"] == "2025-03-03T05:59:00Z"
    later = _fold(fp, _frame("api", T0 + 6 * HOUR, 1, instances=2), T0 + 6 * HOUR, T0 + 7 * HOUR)
    assert later["services"]["api"]["instances"]["last_seen"] == "2025-03-03T06:59:00Z"
    assert later["services"]["old"]["instances"]["last_seen"] == "2025-03-03T05:59:00Z"  # not moved by the fold


def test_a_service_silent_for_the_retirement_period_is_dropped_and_named() -> None:
    fp = _first()
    start = T0 + 6 * HOUR
    # api reports on; old stops at 05:59 on day 0. One minute short of 7 days: still there.
    end = T0 + 5 * HOUR + 59 * 60 + RETIRE_AFTER_SECONDS
    kept = _fold(fp, _frame("api", start, (end - start) / HOUR, instances=2), start, end)
    assert "old" in kept["services"] and not any("retired" in w for w in kept["warnings"])
    retired = _fold(kept, _frame("api", end, 1 / 60, instances=2), end, end + 60)
    assert "old" not in retired["services"] and "api" in retired["services"]
    assert retired["warnings"][0] == ("service old: no sample since 2025-03-03T05:59:00Z, 7 d before the newest of "
                                      "the region (retired after 7 d): dropped from the fingerprint, no longer sized")
    # gone for good: the next fold does not bring it back or warn again
    again = _fold(retired, _frame("api", end + 60, 1, instances=2), end + 60, end + 60 + HOUR)
    assert "old" not in again["services"] and not any("retired" in w for w in again["warnings"])


def test_a_region_whose_metrics_stopped_altogether_keeps_every_service() -> None:
    """Ten days of empty folds (a broken pipeline, not a retirement): no service is newer than another."""
    fp = _first()
    start = T0 + 6 * HOUR
    for day in range(10):
        fp = _fold(fp, pd.DataFrame(), start + day * DAY, start + (day + 1) * DAY)
    assert set(fp["services"]) == {"api", "old"}
    assert not any("retired" in w for w in fp["warnings"])


def test_a_build_from_one_file_retires_too_and_the_period_is_a_parameter() -> None:
    df = pd.concat([_frame("api", T0, 24 * 9), _frame("old", T0, 24)], ignore_index=True)
    assert set(build(from_pandas(df))["services"]) == {"api"}
    assert set(build(from_pandas(df), retire_after=math.inf)["services"]) == {"api", "old"}
    assert set(build(from_pandas(df), retire_after=9 * DAY)["services"]) == {"api", "old"}


def test_a_fingerprint_without_last_seen_counts_from_its_window_end() -> None:
    """Fingerprints stored before last_seen existed: each service counts as seen at that fingerprint's end."""
    fp = _stored(_first())
    for service in fp["services"].values():
        del service["instances"]["last_seen"]
    end = parse_iso(fp["window"]["end"])
    folded = _fold(fp, _frame("api", end, 1, instances=2), end, end + HOUR)
    assert folded["services"]["old"]["instances"]["last_seen"] == fp["window"]["end"]
    assert "old" in folded["services"]


def test_a_retired_service_that_comes_back_starts_afresh() -> None:
    df = pd.concat([_frame("api", T0, 24 * 9), _frame("old", T0, 24)], ignore_index=True)
    fp = build(from_pandas(df))
    end = parse_iso(fp["window"]["end"])
    back = _fold(fp, pd.concat([_frame("api", end, 1), _frame("old", end, 1)], ignore_index=True), end, end + HOUR)
    assert back["services"]["old"]["instances"]["by_id"]["old-0"]["cpu_utilization"]["count"] == 60


def test_last_seen_is_the_newest_sample_not_the_start_of_its_step() -> None:
    """The DAG folds minutes into a fingerprint whose step is its hourly bootstrap's: last_seen must still say
    10:21 for a sample at 10:21, not the 10:00 its hour starts at."""
    hourly = pd.DataFrame({"timestamp": pd.to_datetime(T0 + HOUR * np.arange(10), unit="s", utc=True),
                           "service": "api", "instance_id": "api-0", "metric": "cpu_utilization", "value": 20.0})
    fp = build(from_pandas(hourly), window=(T0, T0 + 10 * HOUR))
    assert fp["params"]["step_seconds"] == 3600
    start = T0 + 10 * HOUR
    minutes = _frame("api", start, 22 / 60)  # 10:00 … 10:21
    for rows in (minutes, minutes.sample(frac=1.0, random_state=1)):  # ordered runs, and unordered rows
        folded = _fold(fp, rows, start, start + 22 * 60)
        assert folded["services"]["api"]["instances"]["last_seen"] == "2025-03-03T10:21:00Z"
