"""Comparing a streamed fingerprint (build_file's path) with the whole-file build(read_metrics())."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shadowing.capacity import fingerprint as fpm
from shadowing.capacity.fingerprint import ProfileParams
from shadowing.metrics import frame

STATS = ("count", "mean", "std", "ewma", "min", "max", "p50", "p90", "p95", "p99")


def streamed_or_none(path: Path, *, region: str | None = None, params: ProfileParams | None = None
                     ) -> dict[str, Any] | None:
    """The streamed build of ``path`` whatever its size, None when the file is not streamable."""
    try:
        return fpm._build_streamed(path, region=region, params=params or ProfileParams(), max_warnings=50,
                                   min_rows=0)
    except frame.NotSeriesLayout:
        return None


def assert_same_fingerprint(got: dict[str, Any], want: dict[str, Any], *, key_order: bool = False) -> None:
    """Identical (serialised, so key order included, with ``key_order``) but for the aggregates, whose service
    totals are summed in another order: their statistics within 1e-9, quantiles within a sketch bucket."""
    got, want = dict(got), dict(want)
    for fp in (got, want):
        fp.pop("generated_at")
    got_services, want_services = got.pop("services"), want.pop("services")
    assert got == want
    assert list(got_services) == list(want_services)
    for name, w in want_services.items():
        g = got_services[name]
        for part in ("instances", "metrics"):
            if key_order:
                assert json.dumps(g[part]) == json.dumps(w[part]), (name, part)
            else:
                assert g[part] == w[part], (name, part)
        assert g["sizing"]["instances"] == w["sizing"]["instances"], name
        assert list(g["aggregate"]) == list(w["aggregate"]), name
        for metric, wa in w["aggregate"].items():
            ga = g["aggregate"][metric]
            for stat in STATS:
                assert ga[stat] == pytest.approx(wa[stat], rel=0.021 if stat[0] == "p" else 1e-9), (name, stat)
