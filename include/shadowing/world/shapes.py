"""Deterministic load and metric shapes: pure functions of (seed, service, instance, metric, absolute time).

Because every value depends only on absolute time and integer keys (no sequential random state), the 7-day
history seeded at 5-minute resolution, the live 1-minute points published later and the synthetic frames
generated in chunks all agree with each other, whatever the window or chunking.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_INV_2_53 = 1.0 / float(1 << 53)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)

# canonical metric → index used as a hash key (stable: never reorder, only append)
METRIC_KEYS = {"cpu_utilization": 1, "memory_utilization": 2, "network_in_bytes": 3, "network_out_bytes": 4,
               "disk_read_bytes": 5, "disk_write_bytes": 6, "active_connections": 7, "request_latency_ms": 8}
_BURST_KEY, _SHARE_KEY = 101, 102
BURST_DECAY_SECONDS = 1800.0


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (vectorised; uint64 arithmetic wraps on purpose)."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def hash_uniform(*keys: int | np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers from integer keys (scalars or broadcastable arrays)."""
    with np.errstate(over="ignore"):
        acc = np.uint64(0x2545F4914F6CDD1D)
        for k in keys:
            acc = _mix(np.asarray(acc, dtype=np.uint64) + np.asarray(k).astype(np.uint64) * _GOLDEN)
        return (np.asarray(acc) >> _S11).astype(np.float64) * _INV_2_53


def keyed_uniform(seed: int, salt: int, key: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) from one integer key array (one mixing round: the fast path for big arrays)."""
    base = int(hash_uniform(seed, salt) * (1 << 53))
    with np.errstate(over="ignore"):
        x = _mix(np.asarray(key).astype(np.uint64) * _GOLDEN + np.uint64(base))
    return (x >> _S11).astype(np.float64) * _INV_2_53


def noise(seed: int, service: int, instance: np.ndarray, metric: int, minute: np.ndarray) -> np.ndarray:
    """Zero-mean triangular noise in (-1, 1), shape broadcast(instance, minute)."""
    return (hash_uniform(seed, service, instance, metric, minute)
            + hash_uniform(seed + 7919, service, instance, metric, minute) - 1.0)


def service_load(ts_seconds: np.ndarray, seed: int, service: int, scale: float = 1.0) -> np.ndarray:
    """Relative load of a service at the given UTC epoch seconds (about 0.1 … 1.0, bursts above).

    Diurnal cycle peaking mid-afternoon UTC with an evening shoulder, weekends at 70 %, hourly-drawn bursts
    decaying over half an hour, and a per-service phase shift so services do not peak in lockstep.
    """
    ts = np.asarray(ts_seconds, dtype=np.int64)
    phase = (hash_uniform(seed, service, 0, _SHARE_KEY, 0) - 0.5) * 2.0  # hours
    hour = (ts % 86400) / 3600.0 - phase
    diurnal = 0.5 + 0.4 * np.cos(2 * np.pi * (hour - 15.0) / 24.0) + 0.1 * np.cos(2 * np.pi * (hour - 20.0) / 12.0)
    dow = (ts // 86400 + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    weekly = np.where(dow >= 5, 0.7, 1.0)
    h = ts // 3600
    burst = np.zeros(ts.shape, dtype=np.float64)
    for back in (0, 1, 2):  # bursts that started in this hour or the two before still contribute
        hb = h - back
        start = hb * 3600 + (hash_uniform(seed, service, hb, _BURST_KEY, 1) * 3600).astype(np.int64)
        present = hash_uniform(seed, service, hb, _BURST_KEY, 0) < 0.04
        amp = 0.3 + 0.7 * hash_uniform(seed, service, hb, _BURST_KEY, 2)
        age = ts - start
        burst += np.where(present & (age >= 0), amp * np.exp(-np.maximum(age, 0) / BURST_DECAY_SECONDS), 0.0)
    return (diurnal * weekly + burst) * (0.85 + 0.15 * min(scale, 2.0) / 2.0)


def instance_share(seed: int, service: int, instance: np.ndarray) -> np.ndarray:
    """Constant per-instance imbalance factor (0.85 … 1.15): load balancers are never perfectly even."""
    return 0.85 + 0.3 * hash_uniform(seed, service, instance, _SHARE_KEY, 1)


def metric_values(metric: str, load: np.ndarray, share: np.ndarray, scale: float, step_seconds: int,
                  seed: int, service: int, instance: np.ndarray, minute: np.ndarray) -> np.ndarray:
    """Values of one metric for instances × times. ``load`` (T,), ``share``/``instance`` (I, 1), ``minute`` (T,).

    All metrics derive from the same utilisation u = load × share, so CPU, network, connections and latency are
    correlated as in real services; byte counters are totals over the period (CloudWatch semantics).
    """
    key = METRIC_KEYS.get(metric, 50 + sum(map(ord, metric)) % 1000)
    u = load[None, :] * share
    n = noise(seed, service, instance, key, minute[None, :])
    per_period = step_seconds / 60.0
    if metric == "cpu_utilization":
        return np.clip(4.0 + 62.0 * u + 4.0 * n, 0.5, 100.0)
    if metric == "memory_utilization":
        return np.clip(38.0 + 14.0 * share + 10.0 * u + 1.5 * n, 1.0, 100.0)
    if metric == "network_in_bytes":
        return np.maximum(scale * u * 3.0e6 * per_period * (1.0 + 0.15 * n), 0.0)
    if metric == "network_out_bytes":
        return np.maximum(scale * u * 5.0e6 * per_period * (1.0 + 0.15 * n), 0.0)
    if metric == "disk_read_bytes":
        return np.maximum(scale * u * 2.0e5 * per_period * (1.0 + 0.4 * n), 0.0)
    if metric == "disk_write_bytes":
        return np.maximum(scale * u * 6.0e5 * per_period * (1.0 + 0.3 * n), 0.0)
    if metric == "active_connections":
        return np.maximum(np.rint(scale * u * 150.0 * (1.0 + 0.1 * n)), 0.0)
    if metric == "request_latency_ms":
        return 18.0 * (1.0 + 1.8 * u ** 3) * (1.0 + 0.12 * n)
    # any other metric: a generic load-following gauge
    return np.maximum(scale * u * 100.0 * (1.0 + 0.1 * n), 0.0)
