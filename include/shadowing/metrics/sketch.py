"""A mergeable relative-accuracy quantile sketch, DDSketch-compatible, built with numpy in bulk.

Buckets follow DDSketch's logarithmic mapping (relative accuracy ``ALPHA``): a positive value ``x`` falls in
key ``ceil(log_gamma(x))`` with ``gamma = (1 + ALPHA) / (1 - ALPHA)`` and is represented by
``2 * gamma**key / (1 + gamma)``, which is within ``ALPHA`` of every value of the bucket. Negative values
live in a separate store keyed by ``|x|``; zeros, and magnitudes up to ``MIN_INDEXABLE`` (≈ 2.3e-308,
subnormals included), count in the zero counter, as in DDSketch. Keys are computed with DDSketch's own
arithmetic (``log(x) / log(2) * multiplier``), so that values a rounding away from a bucket edge land in the
same bucket as ``ddsketch.DDSketch.add`` puts them.

The hot path never adds values one by one: :func:`ordinals` maps a whole array to bucket ordinals (one
monotone integer per bucket across negative, zero and positive stores) so that callers can count buckets of
millions of values, for thousands of groups at once, with ``np.bincount``. A :class:`LogSketch` is the
per-group result: sorted ordinals and their counts.

Quantiles are read with numpy's default (linear) interpolation between the two order statistics around the
rank, each taken from its bucket, then clamped to the exact min/max: since each order statistic is within
``ALPHA`` of the truth and interpolation is a convex combination, the result is within ``ALPHA`` of
``numpy.quantile`` whenever the two order statistics have the same sign (always for the metrics' domain,
non-negative data). Two cases have no relative bound: an interpolation between a negative and a positive
order statistic (its exact value may be ~0 while the error scales with their magnitudes: the error is then
within ``ALPHA · ((1 − f)|x_lo| + f|x_hi|)``), and magnitudes below ``MIN_INDEXABLE`` (read as 0).

Serialisation: ``base64(zlib(varints))`` of (ordinal delta, count) pairs — a few hundred bytes for a week of
one metric. The bulk codecs (:func:`encode_counts`, :func:`decode_counts`, :func:`encode_weights`,
:func:`decode_weights`) write and read the very same strings for thousands of sketches in a few numpy passes.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from shadowing.errors import InputError

ALPHA = 0.01
# Same arithmetic as ddsketch.mapping.LogarithmicMapping so that keys agree bit for bit: its key is
# ceil(math.log(x, 2) * multiplier), math.log(x, 2) being log(x) / log(2) (NOT log2(x), which differs in the
# last bit for about one value in ten next to a bucket edge), with multiplier = 1 / log1p(mantissa) * log(2).
_GAMMA_MANTISSA = 2 * ALPHA / (1 - ALPHA)
GAMMA = 1 + _GAMMA_MANTISSA
_LN2 = math.log(2)
MULTIPLIER = 1 / math.log1p(_GAMMA_MANTISSA) * _LN2
_LOG2_GAMMA = 1.0 / MULTIPLIER
# Positive keys are shifted by OFFSET to keep ordinals of the three stores apart; |key| ≤ ~35,800 for any
# finite float64 at ALPHA = 1 %, so 2**17 leaves room.
OFFSET = 1 << 17
# Smallest |x| indexed (DDSketch's min_possible): a magnitude up to it (inclusive) counts as zero.
MIN_INDEXABLE = np.finfo(np.float64).tiny * GAMMA
_FORMAT_VERSION = 1
# No sketch we write inflates beyond 2 MB (every finite float64 bucket of both signs, 13 bytes each): a text
# inflating beyond this is not one of ours, and is refused before it can take the memory.
_MAX_PAYLOAD = 1 << 22


class SketchFormatError(InputError, ValueError, zlib.error):
    """A sketch string that is not one this module writes, naming which one of the batch and what is wrong.

    Also a ValueError and a zlib.error: what the decoders raised before, so callers catching those still do.
    ``index`` is the 0-based position of the sketch in the decoded batch (for callers to name its owner).
    """

    def __init__(self, message: str, *, index: int, count: int) -> None:
        super().__init__(message, field=f"sketch {index + 1} of {count}" if count > 1 else "sketch")
        self.index, self.reason = index, message


def _bad(what: str, reason: str, index: int, count: int) -> SketchFormatError:
    return SketchFormatError(f"not a {what}: {reason}", index=index, count=count)


def keys(magnitudes: np.ndarray) -> np.ndarray:
    """DDSketch keys of magnitudes above MIN_INDEXABLE (``ceil(log_gamma(x))``), int32.

    DDSketch's own operations, in bulk: log(x) / log(2) · multiplier (numpy's log is also faster than its
    log2 here). Keys match ``LogarithmicMapping.key`` wherever numpy's vector log equals the C library's; a
    value that is also within an ulp of a bucket edge is the only one that could then land one bucket over.
    """
    t = np.log(np.asarray(magnitudes, dtype=np.float64))
    t /= _LN2
    t *= MULTIPLIER
    np.ceil(t, out=t)
    return t.astype(np.int32)


# The ordinals any finite float64 can have: ± those of the smallest indexable magnitude and of the largest
# float. A stored ordinal outside them, other than 0, is not one this module wrote.
_ORD_LOW, _ORD_HIGH = (keys(np.array([np.nextafter(MIN_INDEXABLE, np.inf), np.finfo(np.float64).max]))
                       + OFFSET).tolist()


def ordinals(values: np.ndarray) -> np.ndarray:
    """Bucket ordinal of each (finite) value: monotone in value, 0 for zeros and magnitudes up to
    MIN_INDEXABLE, ±(key + OFFSET) otherwise (int32)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape, dtype=np.int32)
    pos = values > MIN_INDEXABLE  # strictly, as DDSketch.add: MIN_INDEXABLE itself is a zero
    if pos.all():
        return keys(values) + OFFSET
    out[pos] = keys(values[pos]) + OFFSET
    neg = values < -MIN_INDEXABLE
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
    if weighted and n_groups > 1:
        # Decayed weights of groups differ by many orders of magnitude (a service silent for weeks next to a
        # busy one): in one cumulative sum over all groups, a small group's steps would vanish in the rounding
        # of the big ones before it. Each group's weights are scaled to sum to 1 first (quantiles of weights
        # do not depend on their scale), so every group keeps the same resolution.
        scale = np.divide(1.0, totals, out=np.zeros(n_groups), where=totals > 0)
        counts = counts * scale[group_of_bin]
        totals = np.bincount(group_of_bin, weights=counts, minlength=n_groups)
    cum = np.cumsum(counts)
    base = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
    ords = np.asarray(bin_ordinals)
    present = np.flatnonzero(totals > 0)
    n = totals[present]
    end = base[present] + (n * (1 - 1e-12) if weighted else n - 0.5)
    last_bin = np.searchsorted(cum, end, side="left")
    first_bin = np.searchsorted(cum, base[present] + (n * 1e-12 if weighted else 0.5), side="left")
    # Rounding of the running sum never takes a group's quantile from a neighbouring group's bins: decayed
    # weights, or counts once the running sum passes 2**53 (then cum and base round differently).
    own_first = np.searchsorted(group_of_bin, present, side="left")
    own_last = np.searchsorted(group_of_bin, present, side="right") - 1
    first_bin = np.clip(first_bin, own_first, own_last)
    last_bin = np.clip(last_bin, own_first, own_last)
    for j, q in enumerate(quantiles):
        if weighted:
            idx = np.searchsorted(cum, base[present] + q * n, side="left")
            value = representatives(ords[np.clip(idx, first_bin, last_bin)])
        else:
            rank = q * (n - 1)
            r_lo, r_hi = np.floor(rank), np.ceil(rank)
            # First bin whose cumulative count exceeds the (0-based) rank: that bin holds the order statistic.
            i_lo = np.searchsorted(cum, base[present] + r_lo, side="right")
            i_hi = np.searchsorted(cum, base[present] + r_hi, side="right")
            i_lo, i_hi = np.clip(i_lo, first_bin, last_bin), np.clip(i_hi, first_bin, last_bin)
            # Representatives of the chosen bins only (not of every bin: most are never read).
            v_lo, v_hi = representatives(ords[i_lo]), representatives(ords[i_hi])
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
    """Zigzag-decoded signed integers, int32 from uint32 (no widening), else int64."""
    if values.dtype == np.uint32:
        return ((values >> 1) ^ np.negative(values & 1)).view(np.int32)
    v = values.astype(np.uint64)
    return ((v >> 1) ^ np.negative(v & 1)).view(np.int64)


def _unsigned(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as uint32 when they all fit (half the memory traffic of uint64), else uint64."""
    v = np.asarray(values)
    if v.dtype == np.uint32:
        return v
    if v.size and int(v.max()) >= 1 << 32:
        return v.astype(np.uint64)
    return v.astype(np.uint32)


def _varint_sizes(values: np.ndarray) -> np.ndarray:
    """LEB128 length of each unsigned value (uint8): one byte, plus one per 7-bit threshold reached (only the
    thresholds below the largest value are compared)."""
    sizes = np.ones(values.shape, dtype=np.uint8)
    top = int(values.max()) if values.size else 0
    shift = 7
    while top >> shift:
        sizes += values >= (1 << shift)
        shift += 7
    return sizes


def _put_varints(out: np.ndarray, pos: np.ndarray, values: np.ndarray, sizes: np.ndarray) -> None:
    """Scatter the LEB128 bytes of unsigned ``values`` into the uint8 buffer ``out`` at offsets ``pos``.

    One byte plane at a time, plane k only for the values longer than k bytes: no (values × 10) matrix.
    """
    low = values.astype(np.uint8)  # the low 8 bits: bit 7 is set below only where more bytes follow
    idx = np.flatnonzero(sizes > 1)
    low[idx] |= 0x80
    out[pos] = low
    k = 1
    while idx.size:
        longer = sizes[idx] > k + 1
        out[pos[idx] + k] = ((values[idx] >> (7 * k)) & 0x7F).astype(np.uint8) | (longer.view(np.uint8) << 7)
        idx = idx[longer]
        k += 1


def _varints(values: np.ndarray) -> bytes:
    """LEB128 varints of non-negative integers, end to end."""
    v = _unsigned(values)
    sizes = _varint_sizes(v)
    ends = np.cumsum(sizes, dtype=np.int64)
    out = np.empty(int(ends[-1]) if ends.size else 0, dtype=np.uint8)
    _put_varints(out, ends - sizes, v, sizes)
    return out.tobytes()


def _read_varints(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of the LEB128 varints in the uint8 array ``data`` (uint32 if each is ≤ 4 bytes, else uint64) and
    the indices of its continuation bytes (varint k starts at byte k + the continuation bytes before it).

    Continuation bytes are rare (most values fit 7 bits): a varint is taken to be its last byte, and only the
    longer ones are redone from the sparse continuation bytes. Bytes after the last terminator (a cut varint)
    are not read: callers check their segments end on one.
    """
    last = data < 0x80
    cont = np.flatnonzero(~last)
    if cont.size == 0:
        return data.astype(np.uint32), cont
    if not last[-1]:  # drop a cut varint's bytes
        cont = cont[cont < (np.flatnonzero(last)[-1] if last.any() else -1)]
    # varint index of each continuation byte: its position minus the continuation bytes before it
    owner = cont - np.arange(cont.size)
    new = np.flatnonzero(np.diff(owner, prepend=-1))  # first continuation byte of each long varint
    extra = np.diff(new, append=cont.size)  # its number of continuation bytes
    if extra.size and int(extra.max()) > 9:
        raise _LongVarint(int(cont[new[int(np.argmax(extra > 9))]]))
    wide = np.uint64 if extra.size and int(extra.max()) > 3 else np.uint32
    values = data[last].astype(wide)
    shift = (cont - np.repeat(cont[new], extra)).astype(wide) * wide(7)
    low = np.add.reduceat((data[cont] & 0x7F).astype(wide) << shift, new) if new.size else new.astype(wide)
    long = owner[new]
    values[long] = low | (values[long] << (extra.astype(wide) * wide(7)))
    return values, cont


class _LongVarint(ValueError):
    """A varint longer than 10 bytes (no 64-bit value is), starting at byte ``position``."""

    def __init__(self, position: int) -> None:
        super().__init__(f"varint longer than 10 bytes at byte {position}")
        self.position = position


def _whole_counts(counts: np.ndarray) -> np.ndarray:
    """Positive counts rounded to the uint64 varints they are written as; a count no uint64 holds (≥ 2**64,
    inf, NaN) raises ValueError rather than wrap around to a wrong count."""
    counts = np.rint(np.asarray(counts, dtype=np.float64))
    if counts.size and not float(counts.max()) < 2.0**64:  # NaN fails this too
        bad = counts[~(counts < 2.0**64)]
        raise ValueError(f"a sketch count of {float(bad[0]):g} does not fit the format (a whole number "
                         "< 2**64)")
    return counts.astype(np.uint64)


def _check_weights(weights: np.ndarray) -> None:
    if weights.size and not np.isfinite(weights).all():
        raise ValueError("a decayed sketch weight is not finite")


@dataclass
class LogSketch:
    """One sketch: sorted bucket ordinals and their counts (integers, or decayed float weights)."""

    ords: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    @classmethod
    def from_values(cls, values: np.ndarray, weights: np.ndarray | None = None) -> LogSketch:
        """The sketch of the finite ``values`` (NaN/±inf are left out, with their weights)."""
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            values = values[finite]
            weights = None if weights is None else np.asarray(weights, dtype=np.float64)[finite]
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
        keep = ~(self.counts <= 0)  # NaN kept, to be refused
        ords = self.ords[keep].astype(np.int64)
        counts = _whole_counts(self.counts[keep])
        deltas = np.diff(ords, prepend=0)
        payload = _varints(np.concatenate((np.array([_FORMAT_VERSION, ords.size], dtype=np.uint64),
                                           _zigzag(deltas), counts)))
        return base64.b64encode(_deflate(payload)).decode("ascii")

    @classmethod
    def from_compact(cls, text: str) -> LogSketch:
        """The sketch :meth:`to_compact` wrote (checked as :func:`decode_counts` checks it)."""
        _, ords, counts = decode_counts([text])
        return cls(ords, counts)

    def weights_to_compact(self) -> str:
        """Decayed (float) weights → base64(zlib(ordinal varints, scale, float16 weights relative to it)).

        Half precision halves the size and is plenty for decayed ranks: a weight of at least 2**-14 of the
        sketch's largest comes back within 2**-11 of itself (relative), a smaller one within 2**-25 of the
        largest (absolute; below 2**-25 of it, 0).
        """
        keep = ~(self.counts <= 0)  # NaN kept, to be refused
        ords = self.ords[keep].astype(np.int64)
        weights = self.counts[keep]
        _check_weights(weights)
        scale = float(weights.max()) if weights.size else 1.0
        head = _varints(np.concatenate((np.array([_FORMAT_VERSION, ords.size], dtype=np.uint64),
                                        _zigzag(np.diff(ords, prepend=0)))))
        blob = (len(head).to_bytes(4, "little") + head + np.float64(scale).tobytes()
                + (weights / scale).astype("<f2").tobytes())
        return base64.b64encode(_deflate(blob)).decode("ascii")

    @classmethod
    def weights_from_compact(cls, text: str) -> LogSketch:
        """The sketch :meth:`weights_to_compact` wrote (checked as :func:`decode_weights` checks it)."""
        _, ords, weights = decode_weights([text])
        return cls(ords, weights)

    # --- interoperability ----------------------------------------------------------------------------
    def to_ddsketch(self, *, minimum: float | None = None, maximum: float | None = None,
                    total: float | None = None):  # type: ignore[no-untyped-def]
        """The reference ``ddsketch.DDSketch`` with the same buckets (for checks and its protobuf form).

        Buckets hold no exact min, max or sum: DDSketch's ``sum``/``avg`` read 0 unless ``total`` (the sum of
        the values) is given, and its min/max stay unknown (±inf) unless given. Its quantiles are the *lower*
        order statistic's bucket (``numpy.quantile(method="lower")``, within ALPHA), where :meth:`quantiles`
        interpolates (``method="linear"``).
        """
        from ddsketch import DDSketch

        sketch = DDSketch(ALPHA)
        if minimum is not None:
            sketch._min = float(minimum)
        if maximum is not None:
            sketch._max = float(maximum)
        if total is not None:
            sketch._sum = float(total)
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


# --- bulk codecs: many sketches at once ----------------------------------------------------------------------
# A few numpy passes over all sketches: every sketch's varints are scattered straight to their final offsets in
# one buffer; zlib *stored* framing and base64 are done in bulk too. Per sketch there remain only deflate (for
# the deflated kinds), an adler32 call and the slice of its string.

_STORED_HEAD = 7  # zlib header 0x78 0x01, then one stored block: BFINAL=1/BTYPE=00 byte, LEN, NLEN (LE)
_ADLER = 4  # adler32 of the data, big-endian
# zlib.compress(data, 0) writes up to 65531 bytes (zlib ≥ 1.2.9; 32 KB for older ones) as one final stored
# block; longer payloads (never seen: a sketch is a few KB at most) go through zlib itself.
_STORED_ONE_BLOCK = 16384
_B64_PAD = ord("=")


def _deflate(data: bytes) -> bytes:
    # Sketch payloads are well under a KB: a 1 KB window and small memory level compress them just as well
    # and several times faster than zlib.compress's defaults (any zlib inflater reads the result).
    c = zlib.compressobj(9, zlib.DEFLATED, 10, 2)
    return c.compress(data) + c.flush()


def _store(data: bytes) -> bytes:
    return zlib.compress(data, 0)


def _stored_frame(data: bytes) -> bytes:
    n = len(data)
    return (b"\x78\x01\x01" + n.to_bytes(2, "little") + (n ^ 0xFFFF).to_bytes(2, "little") + data
            + zlib.adler32(data).to_bytes(4, "big"))


# The bulk framing stands in for zlib.compress(data, 0) only where this zlib writes exactly those bytes.
_BULK_STORED = all(_stored_frame(d) == _store(d) for d in (b"", b"LogSketch", bytes(range(256)) * 20))


@dataclass
class _Packed:
    """All groups' varint payloads in one buffer, each inside its own blob (free room before/after it)."""

    buf: np.ndarray  # uint8, blobs end to end (each padded to the alignment with zeros)
    blob: np.ndarray  # int64 (n_groups + 1): offset of each blob, then the total
    payload: np.ndarray  # int64: offset of each group's payload
    length: np.ndarray  # int64: its byte count
    first: np.ndarray  # int64: each group's first bin
    n: np.ndarray  # int64: its bin count


def _pack(bin_group: np.ndarray, ords: np.ndarray, tail: np.ndarray | None, n_groups: int, *,
          head_room: int = 0, tail_room: int = 0, align: int = 1) -> _Packed:
    """Per group the varints [version, n, zigzag ordinal deltas…, tail…] (bins sorted by group, ordinal)."""
    bin_group = np.asarray(bin_group)
    ids = np.arange(n_groups)
    first = np.searchsorted(bin_group, ids, side="left")
    n = np.searchsorted(bin_group, ids, side="right") - first
    nonempty = n > 0
    lead = first[nonempty]
    o = np.asarray(ords)
    # int32 arithmetic (half the memory traffic) when no delta can overflow it; ordinals are within ±2**18.
    narrow = o.dtype.itemsize <= 4 and (o.size == 0 or max(-int(o.min()), int(o.max())) < 1 << 29)
    o = o.astype(np.int32 if narrow else np.int64, copy=False)
    deltas = np.empty_like(o)
    if o.size:
        deltas[0] = o[0]
        np.subtract(o[1:], o[:-1], out=deltas[1:])
        deltas[lead] = o[lead]  # each group's first ordinal is relative to 0
    bits = 8 * deltas.itemsize - 1
    parts = [((deltas << 1) ^ (deltas >> bits)).view(np.uint32 if narrow else np.uint64)]  # zigzag
    if tail is not None:
        parts.append(_unsigned(tail))
    sizes = [_varint_sizes(p) for p in parts]
    sums = [_group_sums(size, lead, nonempty) for size in sizes]
    n_size = _varint_sizes(n)
    head = 1 + n_size.astype(np.int64)  # the version (1) is one byte
    length = head + sum(sums)
    padded = -(-(head_room + length + tail_room) // align) * align
    blob = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(padded, out=blob[1:])
    payload = blob[:-1] + head_room
    buf = np.zeros(int(blob[-1]), dtype=np.uint8)
    buf[payload] = _FORMAT_VERSION
    _put_varints(buf, payload + 1, n, n_size)
    at = payload + head
    for part, size, total in zip(parts, sizes, sums, strict=True):
        _put_varints(buf, _positions(size, lead, at[nonempty], total[nonempty], int(blob[-1])), part, size)
        at = at + total
    return _Packed(buf, blob, payload, length, first, n)


def _group_sums(sizes: np.ndarray, lead: np.ndarray, nonempty: np.ndarray) -> np.ndarray:
    """Bytes of each group's values (groups tile the bins; ``lead`` is the first bin of each nonempty one)."""
    out = np.zeros(nonempty.size, dtype=np.int64)
    if lead.size:
        out[nonempty] = np.add.reduceat(sizes, lead, dtype=np.int64)
    return out


def _positions(sizes: np.ndarray, lead: np.ndarray, start: np.ndarray, total: np.ndarray, limit: int
               ) -> np.ndarray:
    """Offset of each value: an exclusive running sum of ``sizes`` that jumps to ``start`` at every ``lead``.

    One cumulative sum over the bins, plus one jump per group, instead of a per-bin lookup of group offsets.
    """
    steps = np.empty(sizes.size, dtype=np.int32 if limit < 1 << 31 else np.int64)
    if sizes.size:
        steps[0] = 0
        steps[1:] = sizes[:-1]
        plain = np.concatenate(([0], np.cumsum(total[:-1])))  # where the plain running sum is at each lead
        shift = start - plain
        steps[lead] += np.diff(shift, prepend=0).astype(steps.dtype)
    return np.cumsum(steps, out=steps)


def _each_payload(packed: _Packed, wrap: Callable[[bytes], bytes]) -> list[str]:
    """base64(wrap(payload)) per group, one by one (deflate cannot be done in bulk)."""
    data = packed.buf.tobytes()
    b64 = base64.b64encode
    return [b64(wrap(data[a:a + m])).decode("ascii")
            for a, m in zip(packed.payload.tolist(), packed.length.tolist(), strict=True)]


def _frame_stored(packed: _Packed) -> None:
    """Write zlib.compress(payload, 0)'s framing around every payload, in place (head room 7, tail room 4)."""
    buf, at, m = packed.buf, packed.payload - _STORED_HEAD, packed.length
    buf[at] = 0x78
    buf[at + 1] = 0x01
    buf[at + 2] = 0x01
    buf[at + 3] = m & 0xFF
    buf[at + 4] = m >> 8
    buf[at + 5] = ~m & 0xFF
    buf[at + 6] = (~m >> 8) & 0xFF
    view, adler32 = memoryview(buf), zlib.adler32
    checks = np.fromiter((adler32(view[a:a + k]) for a, k in zip(packed.payload.tolist(), m.tolist(), strict=True)),
                         dtype=np.int64, count=m.size)
    end = packed.payload + m
    for k in range(_ADLER):
        buf[end + k] = (checks >> (24 - 8 * k)) & 0xFF


def _base64_blobs(packed: _Packed, blob_len: np.ndarray) -> list[str]:
    """base64 of every blob with a single b2a_base64 call: blobs start at multiples of 3, so each one's text is
    a slice of the whole one, except that its zero padding bytes read as 'A' instead of '='."""
    text = bytearray(binascii.b2a_base64(packed.buf, newline=False))
    chars = np.frombuffer(text, dtype=np.uint8)
    start = packed.blob[:-1] // 3 * 4
    stop = start + (blob_len + 2) // 3 * 4
    pad = -blob_len % 3
    chars[stop[pad > 0] - 1] = _B64_PAD
    chars[stop[pad == 2] - 2] = _B64_PAD
    whole = text.decode("ascii")
    return [whole[a:b] for a, b in zip(start.tolist(), stop.tolist(), strict=True)]


def encode_counts(bin_group: np.ndarray, ords: np.ndarray, counts: np.ndarray, n_groups: int, *,
                  compress: bool = True) -> list[str]:
    """:meth:`LogSketch.to_compact` of every group of a (group, ordinal)-sorted bin table, same bytes.

    ``compress=False`` writes zlib *stored* blocks (same format, any inflater reads it): about twice the
    size but built in bulk, for the many small per-instance sketches.
    """
    keep = ~(counts <= 0)  # NaN kept, to be refused
    if not keep.all():
        bin_group, ords, counts = bin_group[keep], ords[keep], counts[keep]
    tail = np.rint(counts)
    if tail.size and not float(tail.max()) < 2.0**64:  # also NaN
        _whole_counts(tail)  # raises, naming the count
    tail = tail.astype(np.uint32 if not tail.size or tail.max() < 1 << 32 else np.uint64)
    if compress or not _BULK_STORED:
        return _each_payload(_pack(bin_group, ords, tail, n_groups), _deflate if compress else _store)
    packed = _pack(bin_group, ords, tail, n_groups, head_room=_STORED_HEAD, tail_room=_ADLER, align=3)
    if packed.length.size and int(packed.length.max()) > _STORED_ONE_BLOCK:
        return _each_payload(packed, _store)
    _frame_stored(packed)
    return _base64_blobs(packed, _STORED_HEAD + packed.length + _ADLER)


def encode_weights(bin_group: np.ndarray, ords: np.ndarray, weights: np.ndarray, n_groups: int) -> list[str]:
    """:meth:`LogSketch.weights_to_compact` of every group (same bytes): head length, varints, scale, float16."""
    keep = ~(weights <= 0)  # NaN kept, to be refused
    if not keep.all():
        bin_group, ords, weights = bin_group[keep], ords[keep], weights[keep]
    _check_weights(weights)
    packed = _pack(bin_group, ords, None, n_groups)
    first, n = packed.first, packed.n
    scale = np.ones(n_groups)
    has = n > 0
    if has.any():
        scale[has] = np.maximum.reduceat(weights, first[has])
    half = (weights / np.repeat(scale, n)).astype("<f2").tobytes()
    data, b64 = packed.buf.tobytes(), base64.b64encode
    head_len = packed.length.astype("<u4").tobytes()
    out = []
    for g, (a, m, f, k) in enumerate(zip(packed.payload.tolist(), packed.length.tolist(), first.tolist(),
                                         n.tolist(), strict=True)):
        blob = head_len[4 * g:4 * g + 4] + data[a:a + m] + scale[g].tobytes() + half[2 * f:2 * (f + k)]
        out.append(b64(_deflate(blob)).decode("ascii"))
    return out


def _unbase64(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """All texts base64-decoded with one a2b_base64 call: (bytes, start and length of each text's).

    Each canonical text is 4k characters ending in at most two '=': read as 'A' they decode to 3k bytes whose
    padding ones are dropped. None (decode one by one) when some text is not like that.
    """
    try:
        joined = "".join(texts)
        chars = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    except (TypeError, ValueError):
        return None
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    if (lens % 4).any():
        return None
    end = np.cumsum(lens)
    pad = np.zeros(lens.size, dtype=np.int64)
    full = np.flatnonzero(lens)
    last = chars[end[full] - 1] == _B64_PAD
    pad[full] = last * (1 + (chars[end[full] - 2] == _B64_PAD))
    if np.count_nonzero(chars == _B64_PAD) != int(pad.sum()):
        return None  # '=' elsewhere than at the end of a text
    try:
        raw = binascii.a2b_base64(joined.replace("=", "A"), strict_mode=True)
    except binascii.Error:
        return None
    return np.frombuffer(raw, dtype=np.uint8), (end - lens) // 4 * 3, lens // 4 * 3 - pad


def _debase64(text: object, index: int, count: int, what: str) -> bytes:
    """base64 ``text`` (line breaks and spaces allowed, as base64.encodebytes writes) → bytes."""
    if not isinstance(text, str | bytes):
        raise _bad(what, f"{type(text).__name__}, not base64 text", index, count)
    try:
        return base64.b64decode(b"".join(text.split()) if isinstance(text, bytes) else "".join(text.split()),
                                validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise _bad(what, f"not base64 text ({exc})", index, count) from None


def _decompress(raw: bytes | memoryview, index: int, count: int, what: str) -> bytes:
    """One whole zlib stream → its content, at most _MAX_PAYLOAD bytes, nothing after it."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, _MAX_PAYLOAD)
    except zlib.error as exc:
        raise _bad(what, f"not zlib data ({exc})", index, count) from None
    if inflater.unconsumed_tail:
        raise _bad(what, f"inflates beyond {_MAX_PAYLOAD} bytes", index, count)
    if not inflater.eof:
        raise _bad(what, "truncated (the zlib data is cut)", index, count)
    if inflater.unused_data:
        raise _bad(what, f"{len(inflater.unused_data)} byte(s) after its zlib data", index, count)
    return out


def _inflate(texts: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Every text's zlib content end to end (uint8) and where each starts (plus the total).

    Blobs in zlib.compress(data, 0)'s framing are unwrapped here (adler32 checked); any other one (deflated,
    or not base64 we can decode in bulk) goes through base64/zlib one by one. A text that is not base64 of a
    zlib stream raises :class:`SketchFormatError` naming it.
    """
    total = len(texts)
    decoded = _unbase64(texts)
    if decoded is None:
        pieces: list[bytes | memoryview] = [_decompress(_debase64(t, i, total, what), i, total, what)
                                            for i, t in enumerate(texts)]
    else:
        raw, start, size = decoded
        m = size - _STORED_HEAD - _ADLER
        fits = np.flatnonzero(m >= 0)  # long enough for the framing: check it where it would be
        at, k = start[fits], m[fits]
        stored = np.zeros(size.size, dtype=bool)
        stored[fits] = ((raw[at] == 0x78) & (raw[at + 1] == 0x01) & (raw[at + 2] == 0x01)
                        & (raw[at + 3] + (raw[at + 4].astype(np.int64) << 8) == k)
                        & (raw[at + 5] + (raw[at + 6].astype(np.int64) << 8) == k ^ 0xFFFF))
        want = np.zeros(size.size, dtype=np.int64)  # the adler32 each blob ends with
        for byte in range(_ADLER):
            want[fits] = (want[fits] << 8) | raw[at + _STORED_HEAD + k + byte]
        view, adler32 = memoryview(raw), zlib.adler32
        pieces = []
        for i, (a, b, k, ok, check) in enumerate(zip(start.tolist(), size.tolist(), m.tolist(), stored.tolist(),
                                                     want.tolist(), strict=True)):
            if ok:
                piece = view[a + _STORED_HEAD:a + _STORED_HEAD + k]
                if adler32(piece) == check:
                    pieces.append(piece)
                    continue
            pieces.append(_decompress(view[a:a + b], i, total, what))
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)), out=offsets[1:])
    return np.frombuffer(b"".join(pieces), dtype=np.uint8), offsets


def _unpack(data: np.ndarray, offsets: np.ndarray, tail_per_bin: int, what: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments [version, n, n zigzag deltas, tail_per_bin·n values] of ``data`` → (group, ordinal, tail, n).

    Each segment's header is at its first value (segments are whole varints); a segment holding anything
    but exactly that raises :class:`SketchFormatError` naming the first such segment.
    """
    seg_start, seg_end = offsets[:-1], offsets[1:]
    total = int(seg_start.size)

    def refuse(bad: np.ndarray, reason: str) -> None:
        if bad.any():
            raise _bad(what, reason, int(np.argmax(bad)), total)

    try:
        values, cont = _read_varints(data)
    except _LongVarint as exc:
        raise _bad(what, "a varint longer than 10 bytes", int(np.searchsorted(offsets, exc.position,
                                                                             side="right")) - 1, total) from None
    if seg_start.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint64), np.zeros(0, np.int64)
    first = seg_start - np.searchsorted(cont, seg_start)  # value index of each segment's header
    count = seg_end - np.searchsorted(cont, seg_end) - first
    refuse(seg_end == seg_start, "empty")
    refuse(data[seg_end - 1] >= 0x80, "truncated (its last varint is cut)")
    refuse(count < 2, "truncated (no bin count)")
    refuse(values[first] != _FORMAT_VERSION, "unknown format version")
    n = values[first + 1].astype(np.int64)
    refuse((n < 0) | (n > count) | (count != 2 + (1 + tail_per_bin) * n), "length does not match its header")
    # Role of every value (0 header, 1 delta, 2 tail): segment g is 2 × 0, n × 1, tail_per_bin·n × 2.
    role = np.repeat(np.tile(np.array([0, 1, 2], dtype=np.int8), n.size),
                     np.stack((np.full(n.size, 2), n, tail_per_bin * n), axis=1).ravel())
    deltas = _unzigzag(values[role == 1])
    group = np.repeat(np.arange(n.size, dtype=np.int64), n)
    # Each group's first delta is its first ordinal: restart the running sum there, i.e. take off the sum
    # reached at the end of the group before (its last ordinal).
    lead = (np.cumsum(n) - n)[n > 0]
    # Encoders write each group's ordinals strictly increasing, each 0 or ±[_ORD_LOW, _ORD_HIGH]: a step of
    # zero or less, or beyond the whole range, is not ours (and a huge one would wrap the running sum).
    # (A group's first delta is its first ordinal, checked with the others below.)
    bad = deltas <= 0
    bad[lead] = False
    bad |= deltas > 2 * _ORD_HIGH
    if bad.any():
        refuse(np.bincount(group[bad], minlength=n.size) > 0, "its bucket ordinals are not strictly increasing "
               "steps within the float64 range")
    if lead.size > 1:
        deltas[lead[1:]] -= np.add.reduceat(deltas, lead)[:-1]
    ords64 = np.cumsum(deltas, dtype=np.int64)
    mag = np.abs(ords64)
    bad = (mag > _ORD_HIGH) | ((mag < _ORD_LOW) & (ords64 != 0))
    if bad.any():
        refuse(np.bincount(group[bad], minlength=n.size) > 0, "a bucket ordinal beyond any float64's")
    ords = ords64.astype(np.int32)
    tail = values[role == 2] if tail_per_bin else np.zeros(0, dtype=np.uint64)
    return group, ords, tail, n


def decode_counts(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk :meth:`LogSketch.from_compact`: (group, ordinal, count) bins sorted by (group, ordinal)."""
    data, offsets = _inflate(texts, "LogSketch")
    group, ords, counts, _ = _unpack(data, offsets, 1, "LogSketch")
    return group, ords, counts.astype(np.float64)


def decode_weights(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk :meth:`LogSketch.weights_from_compact` (decayed sketches): (group, ordinal, weight)."""
    if not texts:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
    what, total = "weighted LogSketch", len(texts)
    data, offsets = _inflate(texts, what)
    view = memoryview(data)
    heads, scales, halves = [], [], []
    for i, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
        head_len = int.from_bytes(view[a:a + 4], "little")
        if a + 12 + head_len > b:
            raise _bad(what, "truncated (shorter than its header length and scale)", i, total)
        heads.append(view[a + 4:a + 4 + head_len])
        scales.append(view[a + 4 + head_len:a + 12 + head_len])
        halves.append(view[a + 12 + head_len:b])
    head_offsets = np.zeros(len(heads) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, heads), dtype=np.int64, count=len(heads)), out=head_offsets[1:])
    group, ords, _, n = _unpack(np.frombuffer(b"".join(heads), dtype=np.uint8), head_offsets, 0, what)
    for i, (h, k) in enumerate(zip(halves, n.tolist(), strict=True)):
        if len(h) != 2 * k:
            raise _bad(what, f"{len(h)} byte(s) of weights for {k} bin(s)", i, total)
    scale = np.frombuffer(b"".join(scales), dtype="<f8")
    weights = np.frombuffer(b"".join(halves), dtype="<f2").astype(np.float64)
    bad = ~(np.isfinite(scale) & (scale > 0)) & (n > 0)
    if bad.any():
        raise _bad(what, f"its scale {float(scale[np.argmax(bad)])!r} is not a positive number",
                   int(np.argmax(bad)), total)
    if not np.isfinite(weights).all():
        raise _bad(what, "a weight is not a number", int(group[np.argmax(~np.isfinite(weights))]), total)
    return group, ords, weights * scale[group]
