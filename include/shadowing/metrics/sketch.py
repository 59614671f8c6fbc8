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
MULTIPLIER = math.log(2) / math.log1p(_GAMMA_MANTISSA)
_LOG2_GAMMA = 1.0 / MULTIPLIER
# Positive keys are shifted by OFFSET to keep ordinals of the three stores apart; |key| ≤ ~35,800 for any
# finite float64 at ALPHA = 1 %, so 2**17 leaves room.
OFFSET = 1 << 17
# Smallest |x| indexed (as in DDSketch): below it a value counts as zero.
MIN_INDEXABLE = np.finfo(np.float64).tiny * GAMMA
_FORMAT_VERSION = 1


def keys(magnitudes: np.ndarray) -> np.ndarray:
    """DDSketch keys of strictly positive magnitudes (``ceil(log_gamma(x))``), int32."""
    # log2 is several times faster than log in numpy (SIMD); DDSketch's LogarithmicMapping uses log2 too.
    return np.ceil(np.log2(magnitudes) * MULTIPLIER).astype(np.int32)


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
    pos = np.arange(data.size) - np.repeat(starts, ends - starts + 1)
    # The 7-bit groups of one varint occupy disjoint bits: their sum per varint is the value.
    return np.add.reduceat((data & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64), starts)


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
        return base64.b64encode(_deflate(payload)).decode("ascii")

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
        return base64.b64encode(_deflate(blob)).decode("ascii")

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


# --- bulk codecs: many sketches at once (one numpy pass; per sketch only zlib + base64) -----------------

def _deflate(data: bytes) -> bytes:
    # Sketch payloads are well under a KB: a 1 KB window and small memory level compress them just as well
    # and several times faster than zlib.compress's defaults (any zlib inflater reads the result).
    c = zlib.compressobj(9, zlib.DEFLATED, 10, 2)
    return c.compress(data) + c.flush()


def _store(data: bytes) -> bytes:
    return zlib.compress(data, 0)


def _group_bounds(bin_group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.searchsorted(bin_group, np.arange(n_groups), side="left")
    ends = np.searchsorted(bin_group, np.arange(n_groups), side="right")
    return starts, ends


def _varint_stream(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """LEB128 bytes of all ``values`` and the byte offset where each value starts (plus the total)."""
    v = np.asarray(values, dtype=np.uint64)
    nbytes = np.ones(v.shape, dtype=np.int64)
    for i in range(1, 10):
        more = (v >> np.uint64(7 * i)) > 0
        if not more.any():
            break
        nbytes += more
    offsets = np.concatenate(([0], np.cumsum(nbytes)))
    width = int(nbytes.max()) if v.size else 1
    mat = np.zeros((v.size, width), dtype=np.uint8)
    remaining = v.copy()
    for i in range(width):
        mat[:, i] = (remaining & np.uint64(0x7F)).astype(np.uint8) | (((i + 1) < nbytes).astype(np.uint8) << 7)
        remaining >>= np.uint64(7)
    return mat[np.arange(width)[None, :] < nbytes[:, None]].tobytes(), offsets


def _payload_values(bin_group: np.ndarray, ords: np.ndarray, tail: np.ndarray | None, n_groups: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per group [version, n, zigzag ordinal deltas…, tail…] laid end to end; and each group's value offset."""
    starts, ends = _group_bounds(bin_group, n_groups)
    n = ends - starts
    per_group = 2 + n * (1 if tail is None else 2)
    base = np.concatenate(([0], np.cumsum(per_group)))
    out = np.zeros(int(base[-1]), dtype=np.uint64)
    out[base[:-1]] = _FORMAT_VERSION
    out[base[:-1] + 1] = n.astype(np.uint64)
    o = ords.astype(np.int64)
    prev = np.concatenate(([0], o[:-1]))
    prev[starts[n > 0]] = 0
    rank = np.arange(o.size) - np.repeat(starts, n)
    pos = np.repeat(base[:-1] + 2, n) + rank
    out[pos] = _zigzag(o - prev)
    if tail is not None:
        out[pos + np.repeat(n, n)] = tail
    return out, base


def encode_counts(bin_group: np.ndarray, ords: np.ndarray, counts: np.ndarray, n_groups: int, *,
                  compress: bool = True) -> list[str]:
    """:meth:`LogSketch.to_compact` of every group of a (group, ordinal)-sorted bin table, same bytes.

    ``compress=False`` writes zlib *stored* blocks (same format, any inflater reads it): about twice the
    size but ~15× cheaper per sketch, for the many small per-instance sketches.
    """
    keep = counts > 0
    bin_group, ords = bin_group[keep], ords[keep]
    values, base = _payload_values(bin_group, ords, np.rint(counts[keep]).astype(np.uint64), n_groups)
    stream, offsets = _varint_stream(values)
    cut = offsets[base].tolist()
    b64, deflate = base64.b64encode, (_deflate if compress else _store)
    return [b64(deflate(stream[a:b])).decode("ascii") for a, b in zip(cut[:-1], cut[1:], strict=True)]


def encode_weights(bin_group: np.ndarray, ords: np.ndarray, weights: np.ndarray, n_groups: int) -> list[str]:
    """:meth:`LogSketch.weights_to_compact` of every group (same layout)."""
    keep = weights > 0
    bin_group, ords, weights = bin_group[keep], ords[keep], weights[keep]
    values, base = _payload_values(bin_group, ords, None, n_groups)
    stream, offsets = _varint_stream(values)
    cut = offsets[base].tolist()
    starts, ends = _group_bounds(bin_group, n_groups)
    scale = np.ones(n_groups)
    has = ends > starts
    scale[has] = np.maximum.reduceat(weights, starts[has]) if has.any() else scale[has]
    half = (weights / np.repeat(scale, ends - starts)).astype("<f2").tobytes()
    out = []
    for g, (a, b) in enumerate(zip(cut[:-1], cut[1:], strict=True)):
        head = stream[a:b]
        blob = (len(head).to_bytes(4, "little") + head + np.float64(scale[g]).tobytes()
                + half[2 * int(starts[g]):2 * int(ends[g])])
        out.append(base64.b64encode(_deflate(blob)).decode("ascii"))
    return out


def decode_counts(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk :meth:`LogSketch.from_compact`: (group, ordinal, count) bins sorted by (group, ordinal)."""
    blobs = [zlib.decompress(base64.b64decode(t)) for t in texts]
    values = _read_varints(b"".join(blobs))
    # Walk the headers: group g holds [version, n, n deltas, n counts].
    vals = values.tolist() if values.size < 4096 else None
    ns, heads, p = [], [], 0
    for _ in texts:
        version = vals[p] if vals is not None else int(values[p])
        n = vals[p + 1] if vals is not None else int(values[p + 1])
        if version != _FORMAT_VERSION:
            raise ValueError("not a LogSketch (unknown format version)")
        heads.append(p)
        ns.append(n)
        p += 2 + 2 * n
    n_arr = np.asarray(ns, dtype=np.int64)
    head = np.asarray(heads, dtype=np.int64)
    rank = np.arange(int(n_arr.sum())) - np.repeat(np.concatenate(([0], np.cumsum(n_arr)[:-1])), n_arr)
    delta_pos = np.repeat(head + 2, n_arr) + rank
    deltas = _unzigzag(values[delta_pos])
    ords = _segment_cumsum(deltas, n_arr).astype(np.int32)
    counts = values[delta_pos + np.repeat(n_arr, n_arr)].astype(np.float64)
    return np.repeat(np.arange(len(texts), dtype=np.int64), n_arr), ords, counts


def decode_weights(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk :meth:`LogSketch.weights_from_compact` (decayed sketches): (group, ordinal, weight)."""
    if not texts:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
    heads, scales, halves = [], [], []
    for text in texts:
        blob = zlib.decompress(base64.b64decode(text))
        head_len = int.from_bytes(blob[:4], "little")
        heads.append(blob[4:4 + head_len])
        scales.append(blob[4 + head_len:12 + head_len])
        halves.append(blob[12 + head_len:])
    values = _read_varints(b"".join(heads))
    # Walk the headers: sketch g holds [version, n, n deltas].
    ns, starts, p = [], [], 0
    listed = values.tolist()
    for _ in texts:
        if listed[p] != _FORMAT_VERSION:
            raise ValueError("not a weighted LogSketch (unknown format version)")
        ns.append(listed[p + 1])
        starts.append(p + 2)
        p += 2 + listed[p + 1]
    n_arr = np.asarray(ns, dtype=np.int64)
    rank = np.arange(int(n_arr.sum())) - np.repeat(np.concatenate(([0], np.cumsum(n_arr)[:-1])), n_arr)
    deltas = _unzigzag(values[np.repeat(np.asarray(starts, dtype=np.int64), n_arr) + rank])
    ords = _segment_cumsum(deltas, n_arr).astype(np.int32)
    scale = np.frombuffer(b"".join(scales), dtype="<f8")
    weights = np.frombuffer(b"".join(halves), dtype="<f2").astype(np.float64)
    if weights.size != ords.size or scale.size != len(texts):
        raise ValueError("not a weighted LogSketch (truncated)")
    return np.repeat(np.arange(len(texts), dtype=np.int64), n_arr), ords, weights * np.repeat(scale, n_arr)


def _segment_cumsum(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    if total.size == 0:
        return total
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    nonempty = lengths > 0
    before = np.concatenate(([0], total[:-1]))[starts[nonempty]]
    offset = np.zeros(values.size, dtype=total.dtype)
    offset[starts[nonempty]] = np.diff(np.concatenate(([0], before)))
    return total - np.cumsum(offset)
