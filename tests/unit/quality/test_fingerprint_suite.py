"""The GX suite accepts a good fingerprint and names service/metric for bad statistics."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from shadowing.capacity.fingerprint import build, parse_iso
from shadowing.errors import ValidationFailed
from shadowing.metrics.frame import read_metrics
from shadowing.quality.fingerprint import check_fingerprint, flatten, validate_fingerprint

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"


@pytest.fixture(scope="module")
def good() -> dict:
    return build(read_metrics(FIXTURES))


def test_good_fingerprint_passes(good: dict) -> None:
    now = parse_iso(good["window"]["end"])
    report = validate_fingerprint(good, now=now)
    assert report.success and not report.failures
    table = flatten(good, now=now)
    assert {"*", "(aggregate)"} <= set(table["instance"])


def test_bad_statistics_fail_naming_service_and_metric(good: dict) -> None:
    bad = copy.deepcopy(good)
    cpu = bad["services"]["ec2"]["metrics"]["cpu_utilization"]
    cpu["p95"] = cpu["max"] * 2  # p95 > p99
    cpu["max"] = 180.0  # utilisation above 100
    bad["services"]["ec2"]["metrics"]["network_in_bytes"]["mean"] = None
    bad["services"]["ec2"]["aggregate"]["disk_write_bytes"]["min"] = -1.0
    report = check_fingerprint(bad, now=parse_iso(good["window"]["end"]))
    assert not report.success
    text = "\n".join(report.failures)
    assert "ec2/*/cpu_utilization" in text and "utilisation_max" in text
    assert "ec2/*/network_in_bytes" in text and "not_be_null" in text
    assert "p99" in text and "non_negative_min" in text
    with pytest.raises(ValidationFailed, match="failed validation"):
        validate_fingerprint(bad, now=parse_iso(good["window"]["end"]))


def test_stale_window_fails_freshness(good: dict) -> None:
    report = check_fingerprint(good, now=parse_iso(good["window"]["end"]) + 86400)
    assert not report.success and any("window_age_seconds" in f for f in report.failures)
