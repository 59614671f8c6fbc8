"""A mergeable relative-accuracy quantile sketch, DDSketch-compatible, built with numpy in bulk.

Buckets follow DDSketch's logarithmic mapping (relative accuracy ``ALPHA``): a positive value ``x`` falls in
key ``ceil(log_gamma(x))`` with ``gamma = (1 + ALPHA) / (1 - ALPHA)`` and is represented by
``2 * gamma**key / (1 + gamma)``, which is within ``ALPHA`` of every value of the bucket. Negative values
live in a separate store keyed by ``|x|``; exact zeros have their own counter.

The hot path never adds values one by one: :func:`ordinals` maps a whole array to bucket ordinals (one
monotone integer per bucket across negative, zero and positive stores) so that callers can count buckets of
millions of values, for thousands of groups at once, with ``np.bincount``. A :class:`LogSketch` is the
per-group result: sorted ordinals and their counts.

Quantiles are read with numpy's default (linear) interpolation between the two order statistics around the
rank, each taken from its bucket, then clamped to the exact min/max: since each order statistic is within
``ALPHA`` of the truth and interpolation is a convex combination, the result is within ``ALPHA`` of
``numpy.quantile`` for non-negative data (the metrics' domain).

Serialisation: ``base64(zlib(varints))`` of (ordinal delta, count) pairs — a few hundred bytes for a week of
one metric.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.01
# Same arithmetic as ddsketch.mapping.LogarithmicMapping so that keys agree bit for bit.
_GAMMA_MANTISSA = 2 * ALPHA / (1 - ALPHA)
GAMMA = 1 + _GAMMA_MANTISSA
_MULTIPLIER = math.log(2) / math.log1p(_GAMMA_MANTISSA)
_LOG2_GAMMA = 1.0 / _MULTIPLIER
# Positive keys are shifted by OFFSET to keep ordinals of the three stores apart; |key| ≤ ~35,800 for any
# finite float64 at ALPHA = 1 %, so 2**17 leaves room.
OFFSET = 1 << 17
# Smallest |x| indexed (as in DDSketch): below it a value counts as zero.
MIN_INDEXABLE = np.finfo(np.float64).tiny * GAMMA
_FORMAT_VERSION = 1


def keys(magnitudes: np.ndarray) -> np.ndarray:
    """DDSketch keys of strictly positive magnitudes (``ceil(log_gamma(x))``), int32."""
    # log2 is several times faster than log in numpy (SIMD); DDSketch's LogarithmicMapping uses log2 too.
    return np.ceil(np.log2(magnitudes) * _MULTIPLIER).astype(np.int32)


def ordinals(values: np.ndarray) -> np.ndarray:
    """Bucket ordinal of each value: monotone in value, 0 for zeros, ±(key + OFFSET) otherwise (int32)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape, dtype=np.int32)
    pos = values >= MIN_INDEXABLE
    if pos.all():
        return keys(values) + OFFSET
    out[pos] = keys(values[pos]) + OFFSET
    neg = values <= -MIN_INDEXABLE
    if neg.any():
        out[neg] = -(keys(-values[neg]) + OFFSET)
    return out


def representatives(ords: np.ndarray) -> np.ndarray:
    """The value each bucket ordinal stands for (within ALPHA of every member of the bucket)."""
    ords = np.asarray(ords, dtype=np.int64)
    out = np.zeros(ords.shape, dtype=np.float64)
    pos, neg = ords > 0, ords < 0
    out[pos] = np.exp2((ords[pos] - OFFSET) * _LOG2_GAMMA) * (2.0 / (1.0 + GAMMA))
    out[neg] = -np.exp2((-ords[neg] - OFFSET) * _LOG2_GAMMA) * (2.0 / (1.0 + GAMMA))
    return out


def grouped_quantiles(group_of_bin: np.ndarray, bin_ordinals: np.ndarray, bin_counts: np.ndarray,
                      n_groups: int, quantiles: Sequence[float], lo: np.ndarray | None = None,
                      hi: np.ndarray | None = None, *, weighted: bool = False) -> np.ndarray:
    """Quantiles of many sketches at once, shape (n_groups, len(quantiles)); NaN for empty groups.

    Bins must be sorted by (group, ordinal). Unweighted: numpy's linear interpolation between the order
    statistics around rank q·(n−1). Weighted (decayed counts): the lowest bucket whose cumulative weight
    reaches q·W. ``lo``/``hi`` (exact min/max per group) clamp the answer.
    """
    group_of_bin = np.asarray(group_of_bin, dtype=np.int64)
    counts = np.asarray(bin_counts, dtype=np.float64)
    out = np.full((n_groups, len(quantiles)), np.nan)
    if counts.size == 0:
        return out
    totals = np.bincount(group_of_bin, weights=counts, minlength=n_groups)
    cum = np.cumsum(counts)
    base = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
    reps = representatives(bin_ordinals)
    present = np.flatnonzero(totals > 0)
    n = totals[present]
    end = base[present] + (n * (1 - 1e-12) if weighted else n - 0.5)
    last_bin = np.searchsorted(cum, end, side="left")
    first_bin = np.searchsorted(cum, base[present] + (n * 1e-12 if weighted else 0.5), side="left")
    for j, q in enumerate(quantiles):
        if weighted:
            idx = np.searchsorted(cum, base[present] + q * n, side="left")
            value = reps[np.clip(idx, first_bin, last_bin)]
        else:
            rank = q * (n - 1)
            r_lo, r_hi = np.floor(rank), np.ceil(rank)
            # First bin whose cumulative count exceeds the (0-based) rank: that bin holds the order statistic.
            i_lo = np.searchsorted(cum, base[present] + r_lo, side="right")
            i_hi = np.searchsorted(cum, base[present] + r_hi, side="right")
            i_lo, i_hi = np.minimum(i_lo, last_bin), np.minimum(i_hi, last_bin)
            v_lo, v_hi = reps[i_lo], reps[i_hi]
            # The extreme order statistics are known exactly when min/max are given.
            if lo is not None:
                v_lo = np.where(r_lo == 0, lo[present], v_lo)
            if hi is not None:
                v_hi = np.where(r_hi == n - 1, hi[present], v_hi)
                v_lo = np.where(r_lo == n - 1, hi[present], v_lo)
            value = v_lo + (rank - r_lo) * (v_hi - v_lo)
        if lo is not None:
            value = np.maximum(value, lo[present])
        if hi is not None:
            value = np.minimum(value, hi[present])
        out[present, j] = value
    return out


def _zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.uint64)
    return ((v >> np.uint64(1)).astype(np.int64)) ^ -((v & np.uint64(1)).astype(np.int64))


def _varints(values: np.ndarray) -> bytes:
    """LEB128 varints of non-negative integers, vectorised over up to 10 bytes per value."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    groups = []
    remaining = v.copy()
    nbytes = np.ones(v.shape, dtype=np.int64)
    for i in range(1, 10):
        nbytes += (v >> np.uint64(7 * i)) > 0
    width = int(nbytes.max())
    mat = np.zeros((v.size, width), dtype=np.uint8)
    for i in range(width):
        byte = (remaining & np.uint64(0x7F)).astype(np.uint8)
        more = (i + 1) < nbytes
        mat[:, i] = byte | (more.astype(np.uint8) << 7)
        remaining >>= np.uint64(7)
    mask = np.arange(width)[None, :] < nbytes[:, None]
    groups.append(mat[mask].tobytes())
    return b"".join(groups)


def _read_varints(blob: bytes) -> np.ndarray:
    data = np.frombuffer(blob, dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero((data & 0x80) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    out = np.zeros(ends.size, dtype=np.uint64)
    pos = np.arange(data.size) - np.repeat(starts, ends - starts + 1)
    owner = np.repeat(np.arange(ends.size), ends - starts + 1)
    np.add.at(out, owner, (data & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64))
    return out


@dataclass
class LogSketch:
    """One sketch: sorted bucket ordinals and their counts (integers, or decayed float weights)."""

    ords: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    @classmethod
    def from_values(cls, values: np.ndarray, weights: np.ndarray | None = None) -> LogSketch:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)] if weights is None else values
        o = ordinals(values)
        uniq, inverse = np.unique(o, return_inverse=True)
        counts = np.bincount(inverse, weights=weights, minlength=uniq.size).astype(np.float64)
        return cls(uniq.astype(np.int32), counts)

    @property
    def count(self) -> float:
        return float(self.counts.sum())

    def merge(self, other: LogSketch, *, scale_self: float = 1.0) -> LogSketch:
        """A new sketch holding both (``scale_self`` decays this one's weights first)."""
        ords = np.concatenate((self.ords, other.ords))
        counts = np.concatenate((self.counts * scale_self, other.counts))
        uniq, inverse = np.unique(ords, return_inverse=True)
        return LogSketch(uniq.astype(np.int32), np.bincount(inverse, weights=counts, minlength=uniq.size))

    def quantiles(self, qs: Sequence[float], lo: float | None = None, hi: float | None = None, *,
                  weighted: bool = False) -> list[float | None]:
        res = grouped_quantiles(np.zeros(self.ords.size, dtype=np.int64), self.ords, self.counts, 1, qs,
                                None if lo is None else np.array([lo]), None if hi is None else np.array([hi]),
                                weighted=weighted)[0]
        return [None if math.isnan(v) else float(v) for v in res]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogSketch):
            return NotImplemented
        keep_a, keep_b = self.counts != 0, other.counts != 0
        return (np.array_equal(self.ords[keep_a], other.ords[keep_b])
                and np.allclose(self.counts[keep_a], other.counts[keep_b], rtol=1e-9, atol=0))

    # --- serialisation -------------------------------------------------------------------------------
    def to_compact(self) -> str:
        """Integer counts → base64(zlib(varints)): version, n, zigzag ordinal deltas, counts."""
        keep = self.counts > 0
        ords = self.ords[keep].astype(np.int64)
        counts = np.rint(self.counts[keep]).astype(np.uint64)
        deltas = np.diff(ords, prepend=0)
        payload = _varints(np.concatenate((np.array([_FORMAT_VERSION, ords.size], dtype=np.uint64),
                                           _zigzag(deltas), counts)))
        return base64.b64encode(zlib.compress(payload, 9)).decode("ascii")

    @classmethod
    def from_compact(cls, text: str) -> LogSketch:
        values = _read_varints(zlib.decompress(base64.b64decode(text)))
        if values.size < 2 or int(values[0]) != _FORMAT_VERSION:
            raise ValueError("not a LogSketch (unknown format version)")
        n = int(values[1])
        ords = np.cumsum(_unzigzag(values[2:2 + n])).astype(np.int32)
        return cls(ords, values[2 + n:2 + 2 * n].astype(np.float64))

    def weights_to_compact(self) -> str:
        """Decayed (float) weights → base64(zlib(ordinal varints, scale, float16 weights relative to it)).

        Half precision (3 significant digits) is plenty for decayed ranks and halves the size.
        """
        keep = self.counts > 0
        ords = self.ords[keep].astype(np.int64)
        weights = self.counts[keep]
        scale = float(weights.max()) if weights.size else 1.0
        head = _varints(np.concatenate((np.array([_FORMAT_VERSION, ords.size], dtype=np.uint64),
                                        _zigzag(np.diff(ords, prepend=0)))))
        blob = (len(head).to_bytes(4, "little") + head + np.float64(scale).tobytes()
                + (weights / scale).astype("<f2").tobytes())
        return base64.b64encode(zlib.compress(blob, 9)).decode("ascii")

    @classmethod
    def weights_from_compact(cls, text: str) -> LogSketch:
        blob = zlib.decompress(base64.b64decode(text))
        head_len = int.from_bytes(blob[:4], "little")
        values = _read_varints(blob[4:4 + head_len])
        if values.size < 2 or int(values[0]) != _FORMAT_VERSION:
            raise ValueError("not a weighted LogSketch (unknown format version)")
        n = int(values[1])
        ords = np.cumsum(_unzigzag(values[2:2 + n])).astype(np.int32)
        scale = float(np.frombuffer(blob[4 + head_len:12 + head_len], dtype="<f8")[0])
        weights = np.frombuffer(blob[12 + head_len:], dtype="<f2").astype(np.float64) * scale
        return cls(ords, weights)

    # --- interoperability ----------------------------------------------------------------------------
    def to_ddsketch(self):  # type: ignore[no-untyped-def]
        """The reference ``ddsketch.DDSketch`` with the same buckets (for checks and its protobuf form)."""
        from ddsketch import DDSketch

        sketch = DDSketch(ALPHA)
        for ordinal, count in zip(self.ords.tolist(), self.counts.tolist(), strict=True):
            if count <= 0:
                continue
            if ordinal > 0:
                sketch._store.add(ordinal - OFFSET, count)
            elif ordinal < 0:
                sketch._negative_store.add(-ordinal - OFFSET, count)
            else:
                sketch._zero_count += count
            sketch._count += count
        return sketch
