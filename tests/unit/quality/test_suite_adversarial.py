"""Adversarial validation: every rule of the capacity fingerprint suite fails when violated, in the pooled,
aggregate and per-instance rows alike, naming service, instance and metric; good fingerprints the package builds
(including odd ones, by property) always pass.

Each GX run costs ~0.25 s, so violations are batched: one copy of a good service per case (``case-<id>``), one
validation of the lot, then each case must be named in its expectation's failure line and an untouched control
service nowhere. The runner names at most 5 rows per expectation, so no expectation gets more than 5 cases.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowing.capacity.fingerprint import build, dumps, fold, loads, parse_iso
from shadowing.errors import ValidationFailed
from shadowing.metrics import frame as tidy
from shadowing.quality.core import run_suite
from shadowing.quality.fingerprint import (
    AGGREGATE,
    POOLED,
    STATS,
    SUITE_PATH,
    ValidationReport,
    check_fingerprint,
    flatten,
    validate_fingerprint,
)

T0 = pd.Timestamp("2025-01-06T00:00:00Z").timestamp()  # a Monday
CPU, BYTES, UNKNOWN = "cpu_utilization", "network_in_bytes", "queue_depth"  # queue_depth: not a canonical name
NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
SECTIONS = (POOLED, AGGREGATE, "api-0")


def _frame(services: dict[str, int], *, hours: float = 3, seed: int = 1, t0: float = T0) -> pd.DataFrame:
    """CPU 10–60 %, bytes 1e3–1e6 and an unknown gauge that goes negative, every minute, per instance."""
    rng = np.random.default_rng(seed)
    ts = pd.to_datetime(t0 + 60 * np.arange(int(hours * 60)), unit="s", utc=True)
    parts = []
    for svc, n in services.items():
        for i in range(n):
            for metric, values in ((CPU, rng.uniform(10, 60, ts.size)), (BYTES, rng.uniform(1e3, 1e6, ts.size)),
                                   (UNKNOWN, rng.normal(0, 5, ts.size))):
                parts.append(pd.DataFrame({"timestamp": ts, "region": "us-east-1", "service": svc,
                                           "instance_id": f"{svc.split('-')[0]}-{i}", "metric": metric,
                                           "value": values}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    return loads(dumps(build(tidy.from_pandas(_frame({"api": 2})))), source="test")


def _end(fp: dict[str, Any]) -> float:
    return parse_iso(fp["window"]["end"])


def _entry(service: dict[str, Any], section: str, metric: str) -> dict[str, Any]:
    if section == POOLED:
        return service["metrics"][metric]
    if section == AGGREGATE:
        return service["aggregate"][metric]
    return service["instances"]["by_id"][section][metric]


def _batch(good: dict[str, Any], cases: dict[str, Callable[[dict[str, Any]], None]]
           ) -> tuple[dict[str, Any], ValidationReport]:
    """``good``'s service copied once per case (mutated by it) plus an untouched ``control``: one validation."""
    fp = copy.deepcopy(good)
    template = fp["services"].pop("api")
    fp["services"]["control"] = copy.deepcopy(template)
    for name, mutate in cases.items():
        service = copy.deepcopy(template)
        mutate(service)
        fp["services"][f"case-{name}"] = service
    return fp, check_fingerprint(fp, now=_end(fp))


def _named(report: ValidationReport) -> dict[tuple[str, str], str]:
    """(expectation type, column) → its failure line."""
    out = {}
    for line in report.failures:
        m = re.match(r"capacity_fingerprint: (\w+) (\w+) at ", line)
        if m:
            out[(m.group(1), m.group(2))] = line
    return out


def _assert_cases(report: ValidationReport, expected: dict[str, tuple[str, str, str, str]]) -> None:
    """Each case → (expectation, column, instance, metric) it must be named under."""
    assert not report.success
    lines = _named(report)
    missed = []
    for name, (kind, column, instance, metric) in expected.items():
        label = f"case-{name}/{instance}/{metric}"
        line = lines.get((kind, column), "")
        if not re.search(rf"(at |, ){re.escape(label)}(,|…| —)", line):
            missed.append(f"{name}: {label} not under {kind} {column}: {line or 'no such failure'}")
    assert not missed, "\n".join(missed)
    assert not any("control/" in line for line in report.failures), report.failures


def _set(section: str, metric: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(service: dict[str, Any]) -> None:
        _entry(service, section, metric).update(values)
    return mutate


def _relative(section: str, metric: str, target: str, source: str, delta: float
              ) -> Callable[[dict[str, Any]], None]:
    def mutate(service: dict[str, Any]) -> None:
        e = _entry(service, section, metric)
        e[target] = e[source] + delta if delta else math.nextafter(e[source], math.inf)
    return mutate


def _drop(section: str, metric: str, stat: str) -> Callable[[dict[str, Any]], None]:
    def mutate(service: dict[str, Any]) -> None:
        del _entry(service, section, metric)[stat]
    return mutate


# --- the good ones pass -----------------------------------------------------------------------------------------

def test_a_generated_fingerprint_passes_and_covers_every_section(good: dict[str, Any]) -> None:
    report = validate_fingerprint(good, now=_end(good))
    assert report.success and not report.failures
    table = flatten(good, now=_end(good))
    assert set(table["instance"]) == {POOLED, AGGREGATE, "api-0", "api-1"}
    assert set(table["metric"]) == {CPU, BYTES, UNKNOWN}
    sized = table[table["sizing_row"] == 1]
    assert sized[["instance", "metric"]].values.tolist() == [[AGGREGATE, CPU]]


# --- every rule fails when violated -------------------------------------------------------------------------------

NULLS = (None, math.nan, math.inf, -math.inf, "12", True)


def test_a_null_statistic_fails_at_every_field_of_every_section(good: dict[str, Any]) -> None:
    """None, NaN, ±inf, text, a boolean (``true`` was read as 1.0) and a missing key are all nulls."""
    cases, expected = {}, {}
    for i, stat in enumerate(STATS):
        for j, section in enumerate(SECTIONS):
            name = f"null-{stat}-{j}"
            metric = (CPU, BYTES, UNKNOWN)[(i + j) % 3]
            bad = NULLS[(i + j) % len(NULLS)]
            cases[name] = _set(section, metric, **{stat: bad}) if (i + j) % 7 else _drop(section, metric, stat)
            expected[name] = (NULL, stat, section, metric)
    fp, report = _batch(good, cases)
    _assert_cases(report, expected)
    with pytest.raises(ValidationFailed, match=r"case-null-\w+-\d/"):
        validate_fingerprint(fp, now=_end(fp))


def test_quantile_order_fails_at_each_adjacent_pair_of_every_section(good: dict[str, Any]) -> None:
    """min ≤ p50 ≤ p90 ≤ p95 ≤ p99 ≤ max: each pair broken alone (by one ulp for p99/max), in each section."""
    pairs = (("min", "p50"), ("p50", "p90"), ("p90", "p95"), ("p95", "p99"), ("p99", "max"))
    cases, expected = {}, {}
    for lower, upper in pairs:
        for j, section in enumerate(SECTIONS):
            name = f"order-{lower}-{upper}-{j}"
            metric = (CPU, BYTES, UNKNOWN)[j]
            delta = 0.0 if (lower, upper) == ("p99", "max") else 1.0  # 0: the next float above
            cases[name] = _relative(section, metric, lower, upper, delta)
            expected[name] = (PAIR, upper, section, metric)
    # equalities are fine: p99 == max (a spike-free tail), every quantile equal (a constant series)
    cases["flat-ok"] = _set(POOLED, CPU, min=30.0, p50=30.0, p90=30.0, p95=30.0, p99=30.0, max=30.0, mean=30.0)
    fp, report = _batch(good, cases)
    _assert_cases(report, expected)
    assert not any("case-flat-ok/" in line for line in report.failures)


def test_p99_equal_to_max_passes(good: dict[str, Any]) -> None:
    fp = copy.deepcopy(good)
    for section in SECTIONS:
        e = _entry(fp["services"]["api"], section, CPU)
        e["p99"] = e["max"]
    assert check_fingerprint(fp, now=_end(fp)).success


def test_ranges_fail_for_utilisation_bytes_std_and_sample_count(good: dict[str, Any]) -> None:
    cases = {
        "cpu-over-100-pooled": _set(POOLED, CPU, max=100.0000001),
        "cpu-over-100-instance": _set("api-0", CPU, max=250.0),
        "cpu-below-0-pooled": _set(POOLED, CPU, min=-0.5),
        "cpu-below-0-instance": _set("api-1", CPU, min=-1e-9),
        "bytes-negative-pooled": _set(POOLED, BYTES, min=-1.0),
        "bytes-negative-aggregate": _set(AGGREGATE, BYTES, min=-1e-300),
        "bytes-negative-instance": _set("api-0", BYTES, min=-7.0),
        "std-negative-aggregate": _set(AGGREGATE, UNKNOWN, std=-1e-12),
        "std-negative-instance": _set("api-1", CPU, std=-3.0),
        "no-samples-pooled": _set(POOLED, UNKNOWN, count=0),
        "no-samples-aggregate": _set(AGGREGATE, CPU, count=0),
        "too-few-samples-instance": _set("api-0", BYTES, count=0.5),
        "rejected-rows": lambda s: None,  # the share is in the fingerprint's quality block, set below
        # allowed: the service total of CPU is a sum over instances; an unknown gauge may be negative or > 100
        "aggregate-cpu-sum-ok": _set(AGGREGATE, CPU, max=180.0, p99=170.0),
        "unknown-negative-ok": _set(POOLED, UNKNOWN, min=-1e6),
        "unknown-large-ok": _set("api-0", UNKNOWN, max=1e12),
    }
    fp, _ = _batch(good, cases)
    fp["quality"] = {"kept_rows": {"case-rejected-rows": {CPU: 90}}, "rejected_rows": {"case-rejected-rows": {CPU: 10}}}
    report = check_fingerprint(fp, now=_end(fp))
    _assert_cases(report, {
        "cpu-over-100-pooled": (BETWEEN, "utilisation_max", POOLED, CPU),
        "cpu-over-100-instance": (BETWEEN, "utilisation_max", "api-0", CPU),
        "cpu-below-0-pooled": (BETWEEN, "utilisation_min", POOLED, CPU),
        "cpu-below-0-instance": (BETWEEN, "utilisation_min", "api-1", CPU),
        "bytes-negative-pooled": (BETWEEN, "non_negative_min", POOLED, BYTES),
        "bytes-negative-aggregate": (BETWEEN, "non_negative_min", AGGREGATE, BYTES),
        "bytes-negative-instance": (BETWEEN, "non_negative_min", "api-0", BYTES),
        "std-negative-aggregate": (BETWEEN, "std", AGGREGATE, UNKNOWN),
        "std-negative-instance": (BETWEEN, "std", "api-1", CPU),
        "no-samples-pooled": (BETWEEN, "count", POOLED, UNKNOWN),
        "no-samples-aggregate": (BETWEEN, "count", AGGREGATE, CPU),
        "too-few-samples-instance": (BETWEEN, "count", "api-0", BYTES),
        "rejected-rows": (BETWEEN, "rejected_share", POOLED, CPU),
    })
    for ok in ("aggregate-cpu-sum-ok", "unknown-negative-ok", "unknown-large-ok"):
        assert not any(f"case-{ok}/" in line for line in report.failures), ok


def test_an_unknown_metric_is_validated_generically_not_skipped(good: dict[str, Any]) -> None:
    fp, report = _batch(good, {
        "unknown-order": _relative(POOLED, UNKNOWN, "p95", "p99", 1.0),
        "unknown-null": _set("api-1", UNKNOWN, ewma=None),
        "unknown-empty": _set(AGGREGATE, UNKNOWN, count=0),
    })
    _assert_cases(report, {"unknown-order": (PAIR, "p99", POOLED, UNKNOWN),
                           "unknown-null": (NULL, "ewma", "api-1", UNKNOWN),
                           "unknown-empty": (BETWEEN, "count", AGGREGATE, UNKNOWN)})


def test_a_service_with_demand_but_no_usable_sizing_fails_naming_it(good: dict[str, Any]) -> None:
    def no_cpu(service: dict[str, Any]) -> None:
        for part in (service["metrics"], service["aggregate"]):
            del part[CPU]
        service["sizing"] = {"instances": None, "reason": "no cpu_utilization aggregate to size from"}

    fp, report = _batch(good, {
        "sizing-none": lambda s: s["sizing"].update(instances=None, reason="beyond any instance count"),
        "sizing-negative": lambda s: s["sizing"].update(instances=-1),
        "sizing-fraction": lambda s: s["sizing"].update(instances=2.5),
        "sizing-bool": lambda s: s["sizing"].update(instances=True),
        "sizing-missing": lambda s: s.pop("sizing"),
        "no-cpu-ok": no_cpu,  # nothing to size from: not sizing it is right
        "whole-float-ok": lambda s: s["sizing"].update(instances=3.0),
    })
    _assert_cases(report, {name: (NULL, "sizing_instances", AGGREGATE, CPU) for name in
                           ("sizing-none", "sizing-negative", "sizing-fraction", "sizing-bool", "sizing-missing")})
    assert not any(f"case-{ok}/" in line for line in report.failures for ok in ("no-cpu-ok", "whole-float-ok"))


# --- the window -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("age", "ok"), [(0.0, True), (7200.0, True), (7200.5, False), (86400.0, False),
                                         (-300.0, True), (-301.0, False)])
def test_freshness_at_its_bounds(good: dict[str, Any], age: float, ok: bool) -> None:
    report = check_fingerprint(good, now=_end(good) + age)
    assert report.success is ok
    if not ok:
        assert any("window_age_seconds at api/*/cpu_utilization" in line for line in report.failures)


@pytest.mark.parametrize("window", [None, {}, {"start": "2025-01-06T00:00:00Z"}, {"start": "x", "end": "y"},
                                    {"start": 0, "end": 1}, "2025-01-06", {"start": None, "end": None}])
def test_a_missing_or_unreadable_window_fails_instead_of_passing_freshness(good: dict[str, Any],
                                                                           window: Any) -> None:
    """A null age was skipped by expect_column_values_to_be_between: a fingerprint without a window passed."""
    fp = copy.deepcopy(good)
    fp["window"] = window
    report = check_fingerprint(fp, now=_end(good))
    assert not report.success
    assert any(line.startswith(f"capacity_fingerprint: {NULL} window_age_seconds at api/*/cpu_utilization")
               for line in report.failures), report.failures


def test_a_window_without_offset_is_read_as_utc(good: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")  # 5 h behind UTC in January: a 2 h window would look stale
    time.tzset()
    try:
        fp = copy.deepcopy(good)
        fp["window"] = {k: v.replace("Z", "") for k, v in fp["window"].items()}
        assert check_fingerprint(fp, now=_end(good)).success
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# --- malformed structure: named, never a crash ---------------------------------------------------------------------

def test_malformed_parts_are_named_failures_not_crashes(good: dict[str, Any]) -> None:
    def section_list(s: dict[str, Any]) -> None:
        s["aggregate"] = [1, 2]

    def entry_none(s: dict[str, Any]) -> None:
        s["metrics"][BYTES] = None

    def by_id_list(s: dict[str, Any]) -> None:
        s["instances"]["by_id"] = ["api-0"]

    def instance_entry_text(s: dict[str, Any]) -> None:
        s["instances"]["by_id"]["api-1"] = "gone"

    fp, report = _batch(good, {"section-list": section_list, "entry-none": entry_none, "by-id-list": by_id_list,
                               "instance-text": instance_entry_text})
    _assert_cases(report, {"section-list": (NULL, "count", AGGREGATE, "(malformed)"),
                           "entry-none": (NULL, "count", POOLED, BYTES),
                           "by-id-list": (NULL, "count", "(malformed)", "(malformed)"),
                           "instance-text": (NULL, "count", "api-1", "(malformed)")})
    broken = copy.deepcopy(good)
    broken["services"]["odd"] = "not an object"
    assert any("odd/*/(malformed)" in line for line in check_fingerprint(broken, now=_end(good)).failures)
    for services in ([good["services"]["api"]], "api"):
        report = check_fingerprint({**good, "services": services}, now=_end(good))
        assert not report.success and any("(malformed)/*/(malformed)" in line for line in report.failures)
    report = check_fingerprint({**good, "services": {}}, now=_end(good))
    assert not report.success and "nothing to validate" in report.failures[0]
    with pytest.raises(ValidationFailed):
        validate_fingerprint("not a fingerprint", now=_end(good))  # type: ignore[arg-type]


# --- property: whatever the package builds from sane data, its own suite accepts -----------------------------------

VALUES = st.one_of(st.floats(0, 100), st.just(0.0), st.just(100.0), st.floats(1e-300, 1e-290),
                   st.floats(-1e6, 1e12), st.just(5e-324), st.just(1e100))  # 1e100: clean()'s MAX_MAGNITUDE


@st.composite
def _frames(draw: Any) -> pd.DataFrame:
    """1–2 services × 1–3 instances × 1–3 metrics (one unknown), 1–12 samples each, irregular, possibly
    constant, shuffled, with values from subnormal to 1e100 (utilisation clipped to 0–100, bytes made >= 0)."""
    rows = []
    step = draw(st.sampled_from([7, 60, 300]))
    start = T0 + draw(st.integers(-3 * 24, 3 * 24)) * 3600 + draw(st.integers(0, 59)) * 60
    for svc in draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True)):
        for i in range(draw(st.integers(1, 3))):
            for metric in draw(st.lists(st.sampled_from([CPU, BYTES, UNKNOWN]), min_size=1, max_size=3,
                                        unique=True)):
                constant = draw(st.booleans())
                first = draw(VALUES)
                for j in range(draw(st.integers(1, 12))):
                    v = first if constant else draw(VALUES)
                    v = min(max(v, 0.0), 100.0) if metric == CPU else abs(v) if metric == BYTES else v
                    jitter = draw(st.sampled_from([0, 0, 0, 1, -1]))
                    rows.append((start + j * step + jitter, "us-east-1", svc, f"{svc}-{i}", metric, v))
    df = pd.DataFrame(rows, columns=["timestamp", "region", "service", "instance_id", "metric", "value"])
    if draw(st.booleans()):
        df = df.sample(frac=1.0, random_state=0)
    return df.assign(timestamp=pd.to_datetime(df["timestamp"], unit="s", utc=True))


def test_whatever_the_package_builds_or_folds_from_sane_data_its_suite_accepts() -> None:
    """Built, or built on the first half and folded with the second, through the stored JSON; all the
    fingerprints validated in one GX run (flattened tables concatenated, services told apart by example)."""
    tables: list[pd.DataFrame] = []

    @settings(max_examples=120, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(df=_frames(), split=st.booleans())
    def collect(df: pd.DataFrame, split: bool) -> None:
        secs = df["timestamp"].map(pd.Timestamp.timestamp).to_numpy()
        mid = float(np.median(secs))
        first, second = df[secs < mid], df[secs >= mid]
        if split and len(first) and len(second):
            fp = build(tidy.from_pandas(first), window=(math.floor(float(secs.min())), mid))
            fp = fold(loads(dumps(fp), source="test"), tidy.from_pandas(second),
                      window=(mid, float(secs.max()) + 1))
        else:
            fp = build(tidy.from_pandas(df))
        fp = loads(dumps(fp), source="test")
        table = flatten(fp, now=_end(fp))
        table["service"] = f"example{len(tables)}:" + table["service"]
        tables.append(table)

    collect()
    together = pd.concat(tables, ignore_index=True)
    report = run_suite(together, SUITE_PATH, name="capacity_fingerprint", label_columns=("service", "instance",
                                                                                          "metric"))
    assert report.success, report.failures
    assert len(tables) >= 100 and set(together["metric"]) == {CPU, BYTES, UNKNOWN}


def test_magnitudes_no_metric_can_have_are_dropped_and_named_and_the_rest_passes() -> None:
    """Beyond ~1e154 the sum of squared deviations overflows a double and the std would be null, which the
    suite rejects: such values (beyond any metric, over 1e100) are dropped and reported by series instead,
    and the other series' fingerprint passes."""
    ts = pd.to_datetime(T0 + 60 * np.arange(40), unit="s", utc=True)
    values = np.r_[[1e200, -1e200, 1e101], np.arange(37.0)]
    huge = pd.DataFrame({"timestamp": ts, "region": "us-east-1", "service": "api", "instance_id": "api-0",
                         "metric": UNKNOWN, "value": values})
    fine = huge.assign(instance_id="api-1", value=np.r_[[1e99, -1e99], np.arange(38.0)])
    fp = loads(dumps(build(tidy.from_pandas(pd.concat([huge, fine])))), source="test")
    [warning] = [w for w in fp["warnings"] if "magnitude" in w]
    assert "api-0" in warning and "api-1" not in warning and "3 row" in warning, warning
    assert fp["services"]["api"]["instances"]["by_id"]["api-0"][UNKNOWN]["count"] == 37
    assert fp["services"]["api"]["instances"]["by_id"]["api-1"][UNKNOWN]["count"] == 40
    assert fp["services"]["api"]["metrics"][UNKNOWN]["std"] is not None
    # 3 of 80 rows of api's metric (3.75 %) is within the suite's 5 % of impossible rows
    assert check_fingerprint(fp, now=_end(fp)).success
