"""Synthetic metrics as the tidy frame of DESIGN §3, without AWS (benchmarks, tests) — same shapes as CloudWatch.

``synthetic_tidy_frame`` builds the whole frame; ``iter_synthetic_tidy_frames`` yields it in instance chunks
with bounded memory. Both are vectorised (numpy) and deterministic by seed; chunked and whole frames agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from shadowing.metrics.names import CANONICAL_METRICS
from shadowing.world.app import App, build_app
from shadowing.world.shapes import instance_share, metric_values, service_load


@dataclass(frozen=True)
class InstanceKey:
    """One instance as the generator sees it: service position in the app and ordinal within the service."""

    service_index: int
    ordinal: int
    instance_id: str


def synthetic_instance_id(seed: int, service_index: int, ordinal: int) -> str:
    return f"i-{(seed & 0xFFFF):04x}{service_index:05x}{ordinal:08x}"


def _timestamps(start: datetime, periods: int, step_seconds: int) -> np.ndarray:
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    if periods < 0 or step_seconds <= 0:
        raise ValueError("periods must be >= 0 and step_seconds > 0")
    t0 = int(start.timestamp())
    return t0 + step_seconds * np.arange(periods, dtype=np.int64)


def instance_block(app: App, service_index: int, ordinals: np.ndarray, ts: np.ndarray, step_seconds: int,
                   seed: int, metrics: Sequence[str]) -> np.ndarray:
    """Values shaped (len(metrics), len(ordinals), len(ts)) for instances of one service."""
    svc = app.services[service_index]
    load = service_load(ts, seed, service_index, svc.load_scale)
    inst = ordinals.astype(np.int64)[:, None]
    share = instance_share(seed, service_index, inst)
    minute = ts // 60
    out = np.empty((len(metrics), len(ordinals), len(ts)), dtype=np.float64)
    for mi, name in enumerate(metrics):
        out[mi] = metric_values(name, load, share, svc.load_scale, step_seconds, seed, service_index, inst, minute)
    return out


def _frame(app: App, keys: list[InstanceKey], ts: np.ndarray, step_seconds: int, seed: int, region: str,
           metrics: Sequence[str], service_categories: list[str], instance_categories: list[str],
           instance_code_offset: int) -> pd.DataFrame:
    n_inst, n_met, n_ts = len(keys), len(metrics), len(ts)
    values = np.empty((n_inst, n_met, n_ts), dtype=np.float64)
    by_service: dict[int, list[int]] = {}
    for pos, k in enumerate(keys):
        by_service.setdefault(k.service_index, []).append(pos)
    for si, positions in by_service.items():
        ords = np.array([keys[p].ordinal for p in positions], dtype=np.int64)
        block = instance_block(app, si, ords, ts, step_seconds, seed, metrics)  # (M, I_s, T)
        values[positions] = block.transpose(1, 0, 2)
    rows = n_inst * n_met * n_ts
    ts_col = pd.DatetimeIndex(np.tile(ts.astype("datetime64[s]"), n_inst * n_met)).tz_localize("UTC")
    svc_codes = np.repeat(np.array([k.service_index for k in keys], dtype=np.int32), n_met * n_ts)
    inst_codes = np.repeat(np.arange(n_inst, dtype=np.int32) + instance_code_offset, n_met * n_ts)
    met_codes = np.tile(np.repeat(np.arange(n_met, dtype=np.int8), n_ts), n_inst)
    return pd.DataFrame({
        "timestamp": ts_col,
        "region": pd.Categorical.from_codes(np.zeros(rows, dtype=np.int8), categories=[region]),
        "service": pd.Categorical.from_codes(svc_codes, categories=service_categories),
        "instance_id": pd.Categorical.from_codes(inst_codes, categories=instance_categories),
        "metric": pd.Categorical.from_codes(met_codes, categories=list(metrics)),
        "value": values.reshape(-1),
    }, copy=False)


def _keys(app: App, instances_per_service: int, seed: int) -> list[InstanceKey]:
    return [InstanceKey(si, o, synthetic_instance_id(seed, si, o))
            for si in range(len(app.services)) for o in range(instances_per_service)]


def iter_synthetic_tidy_frames(*, services: int, instances_per_service: int, start: datetime, periods: int,
                               step_seconds: int = 60, seed: int = 0, region: str = "us-east-1",
                               metrics: Sequence[str] = CANONICAL_METRICS,
                               instances_per_chunk: int = 64) -> Iterator[pd.DataFrame]:
    """The synthetic tidy frame in chunks of ``instances_per_chunk`` instances (same rows as the whole frame).

    Categories are identical in every chunk (all services / instances of the world), so chunks concatenate
    without re-coding.
    """
    if services < 1 or instances_per_service < 1 or instances_per_chunk < 1:
        raise ValueError("services, instances_per_service and instances_per_chunk must be >= 1")
    app = build_app(services, seed)
    ts = _timestamps(start, periods, step_seconds)
    keys = _keys(app, instances_per_service, seed)
    svc_cats = app.names
    inst_cats = [k.instance_id for k in keys]
    metrics = list(metrics)
    for lo in range(0, len(keys), instances_per_chunk):
        yield _frame(app, keys[lo:lo + instances_per_chunk], ts, step_seconds, seed, region, metrics,
                     svc_cats, inst_cats, lo)


def synthetic_tidy_frame(*, services: int, instances_per_service: int, start: datetime, periods: int,
                         step_seconds: int = 60, seed: int = 0, region: str = "us-east-1",
                         metrics: Sequence[str] = CANONICAL_METRICS) -> pd.DataFrame:
    """The tidy metrics frame (timestamp UTC, region, service, instance_id, metric, value) of a synthetic world.

    ``services`` equal to the shopfront size (13) gives shopfront's services, any other count a generated app.
    Rows are ordered by instance, metric, timestamp; string columns are categoricals.
    """
    if services < 1 or instances_per_service < 1:
        raise ValueError("services and instances_per_service must be >= 1")
    app = build_app(services, seed)
    ts = _timestamps(start, periods, step_seconds)
    keys = _keys(app, instances_per_service, seed)
    return _frame(app, keys, ts, step_seconds, seed, region, list(metrics), app.names,
                  [k.instance_id for k in keys], 0)
