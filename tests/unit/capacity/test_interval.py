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


def test_bootstrap_reads_at_its_own_period_and_ends_on_a_whole_step() -> None:
    i = next_interval(None, END + timedelta(minutes=7, seconds=3), **KW, step_seconds=60,
                      bootstrap_step_seconds=3600)
    assert (i.start, i.end, i.step_seconds) == (END - timedelta(hours=6), END, 3600)
    # the next run folds from there at the fine period
    j = next_interval(i.end, END + timedelta(minutes=7, seconds=3), **KW, step_seconds=60,
                      bootstrap_step_seconds=3600)
    assert (j.start, j.end, j.step_seconds) == (END, END + timedelta(minutes=7), 60)


# --- the intervals folded in sequence: an hourly bootstrap, then minute folds -------------------------------

def _tidy(start: datetime, end: datetime, step: int, *, instances: int, level: float = 40.0):  # type: ignore[no-untyped-def]
    """cpu and network of ``instances`` instances of one service, one sample per ``step`` in [start, end)."""
    import numpy as np
    import pandas as pd

    from shadowing.metrics import frame as tidy

    ts = pd.date_range(start, end, freq=f"{step}s", inclusive="left")
    rng = np.random.default_rng(int(start.timestamp()) % 2**32)
    parts = []
    for i in range(instances):
        for metric, scale in (("cpu_utilization", level), ("network_in_bytes", 1e6)):
            values = np.clip(scale * (1 + 0.2 * rng.standard_normal(ts.size)), 0, 100 if scale == level else None)
            parts.append(pd.DataFrame({"timestamp": ts, "region": "us-east-1", "service": "api",
                                       "instance_id": f"i-{i}", "metric": metric, "value": values}))
    return tidy.from_pandas(pd.concat(parts, ignore_index=True), region="us-east-1")


def test_hourly_bootstrap_then_minute_folds_stay_sane_and_valid() -> None:
    from shadowing.capacity.fingerprint import fold
    from shadowing.quality.fingerprint import validate_fingerprint

    hours, instances = 24, 3
    boot = next_interval(None, END + timedelta(minutes=2), bootstrap=timedelta(hours=hours),
                         max_gap=timedelta(days=1), step_seconds=60, bootstrap_step_seconds=3600)
    cols = _tidy(boot.start, boot.end, boot.step_seconds, instances=instances)
    fp = fold(None, cols, window=(boot.start.timestamp(), boot.end.timestamp()), region="us-east-1")
    validate_fingerprint(fp, now=boot.end.timestamp())
    assert fp["params"]["step_seconds"] == 3600  # inferred from the hourly samples
    agg0 = fp["services"]["api"]["aggregate"]["cpu_utilization"]
    assert agg0["count"] == hours
    minute_values = []
    previous = fp
    for k in range(1, 4):  # three 5-minute runs at 60 s
        run_end = END + timedelta(minutes=5 * k, seconds=20)
        i = next_interval(datetime.fromisoformat(previous["window"]["end"].replace("Z", "+00:00")), run_end,
                          bootstrap=timedelta(hours=hours), max_gap=timedelta(days=1), step_seconds=60,
                          bootstrap_step_seconds=3600)
        assert i.step_seconds == 60 and i.end - i.start == timedelta(minutes=5)
        new = _tidy(i.start, i.end, 60, instances=instances, level=60.0)
        minute_values.append(new)
        previous = fold(previous, new, window=(i.start.timestamp(), i.end.timestamp()), region="us-east-1")
        validate_fingerprint(previous, now=i.end.timestamp())
    api = previous["services"]["api"]
    assert previous["window"]["start"] == fp["window"]["start"] and previous["folds"] == 3
    # pooled: every sample counted once, whatever its period
    assert api["metrics"]["cpu_utilization"]["count"] == hours * instances + 3 * 5 * instances
    # aggregate: one sum over instances per aligned step; the minute folds fall in the same hour (END's),
    # each contributing the sum of the instances' means over its minutes — never a sum over minutes
    agg = api["aggregate"]["cpu_utilization"]
    assert agg["count"] == hours + 3
    sums = []
    for c in minute_values:
        cpu = c.metric == c.metrics.index("cpu_utilization")
        sums.append(sum(float(c.values[cpu & (c.instance == n)].mean()) for n in range(instances)))
    assert agg["max"] == pytest.approx(max(agg0["max"], *sums), rel=1e-9)
    assert agg["max"] < 100 * instances
    # instance counts: instances reporting per step, not samples per step
    inst = api["instances"]
    assert (inst["min"], inst["max"], inst["mean"], inst["distinct"]) == (instances, instances, instances,
                                                                            instances)
    assert inst["steps"] == hours + 3
    # hour of week: END's hour now carries the minute folds' peak
    how = api["metrics"]["cpu_utilization"]["hour_of_week_peak"]
    end_how = (int(END.timestamp()) // 3600 + 72) % 168
    peak = max(float(c.values[c.metric == c.metrics.index("cpu_utilization")].max()) for c in minute_values)
    assert how[end_how] == pytest.approx(peak, rel=1e-3)
    assert sum(v is not None for v in how) == hours + 1


def test_bootstrap_and_restart_starts_lie_on_the_period_grid() -> None:
    # CloudWatch labels the first period with the start rounded down: a start off the grid would lose it
    boot = next_interval(None, END, bootstrap=timedelta(hours=0.3333), max_gap=timedelta(days=1),
                         bootstrap_step_seconds=3600)
    assert boot.start == END - timedelta(hours=1) and boot.end == END
    restart = next_interval(END - timedelta(days=3), END, bootstrap=timedelta(hours=6),
                            max_gap=timedelta(hours=1, seconds=30), step_seconds=60)
    assert restart.start == END - timedelta(hours=1, minutes=1) and restart.end == END
