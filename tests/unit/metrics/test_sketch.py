"""The numpy sketch: ≤ 1 % relative error against numpy's exact quantiles, exact merge, DDSketch-compatible."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from shadowing.metrics.frame import read_metrics
from shadowing.metrics.sketch import (
    _ORD_HIGH,
    _ORD_LOW,
    ALPHA,
    OFFSET,
    LogSketch,
    _read_varints,
    _varints,
    decode_counts,
    decode_weights,
    encode_counts,
    encode_weights,
    ordinals,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "metrics" / "nab_realAWSCloudwatch"
QS = [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]


def relative_errors(values: np.ndarray) -> np.ndarray:
    sketch = LogSketch.from_values(values)
    got = np.array(sketch.quantiles(QS, float(values.min()), float(values.max())), dtype=float)
    exact = np.quantile(values, QS)
    return np.abs(got - exact) / np.where(exact == 0, 1.0, np.abs(exact))


def _traces(folder: Path) -> list[np.ndarray]:
    cols = read_metrics(folder)
    return [cols.values[cols.instance == i] for i in range(len(cols.instances))]


def test_quantiles_within_one_percent_on_real_traces() -> None:
    traces = _traces(FIXTURES)
    assert len(traces) == 3
    for values in traces:
        assert relative_errors(values).max() <= ALPHA + 1e-12


def test_quantiles_within_one_percent_on_all_shared_traces() -> None:
    if not SHARED.exists():
        pytest.skip("shared NAB traces not present")
    worst = max(relative_errors(v).max() for v in _traces(SHARED))
    assert worst <= ALPHA + 1e-12


values_strategy = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)),
    min_size=1, max_size=300).map(lambda v: np.array(v, dtype=float))


@settings(max_examples=150, deadline=None)
@given(values_strategy)
def test_relative_error_and_order_property(values: np.ndarray) -> None:
    assert relative_errors(values).max() <= ALPHA + 1e-9
    s = LogSketch.from_values(values)
    p = s.quantiles([0.5, 0.9, 0.95, 0.99, 1.0], float(values.min()), float(values.max()))
    assert all(a <= b for a, b in zip(p, p[1:], strict=False))
    assert p[-1] == values.max()


@settings(max_examples=100, deadline=None)
@given(values_strategy, values_strategy)
def test_merge_equals_sketch_of_concatenation(a: np.ndarray, b: np.ndarray) -> None:
    assert LogSketch.from_values(a).merge(LogSketch.from_values(b)) == LogSketch.from_values(np.concatenate([a, b]))


def test_zeros_negatives_and_tiny_values_have_their_own_buckets() -> None:
    values = np.array([-5.0, -1e-6, 0.0, 0.0, 1e-300, 1e-6, 3.0])
    o = ordinals(values)
    assert (np.diff(o) > 0).all() or (np.diff(o) >= 0).all()
    assert o[2] == o[3] == 0 and o[0] < o[1] < 0 < o[4] < o[5] < o[6]
    s = LogSketch.from_values(values)
    assert s.quantiles([0.5], -5.0, 3.0)[0] == 0.0


def test_compact_round_trip_and_ddsketch_agreement() -> None:
    values = _traces(FIXTURES)[0]
    sketch = LogSketch.from_values(values)
    assert LogSketch.from_compact(sketch.to_compact()) == sketch
    assert len(sketch.to_compact()) < 1200
    reference = sketch.to_ddsketch()
    from ddsketch import DDSketch

    added = DDSketch(ALPHA)
    for v in values[:2000]:
        added.add(float(v))
    part = LogSketch.from_values(values[:2000]).to_ddsketch()
    for q in (0.5, 0.9, 0.99):
        assert part.get_quantile_value(q) == pytest.approx(added.get_quantile_value(q), rel=1e-12)
    assert reference.count == values.size


def test_decayed_weights_round_trip_to_half_precision() -> None:
    sketch = LogSketch.from_values(np.arange(1.0, 500.0), weights=np.exp2(-np.arange(499.0) / 100))
    back = LogSketch.weights_from_compact(sketch.weights_to_compact())
    assert np.array_equal(back.ords, sketch.ords)
    assert np.allclose(back.counts, sketch.counts, rtol=2e-3, atol=1e-6 * sketch.counts.max())


def test_bulk_codecs_round_trip_like_one_by_one() -> None:
    from shadowing.metrics.sketch import decode_counts, decode_weights, encode_counts, encode_weights

    rng = np.random.default_rng(7)
    sketches: dict[int, LogSketch] = {}
    for g in range(40):
        if g % 9 == 4:
            continue  # empty groups encode as empty sketches
        values = rng.gamma(2.0, 10.0 ** rng.integers(-2, 8), int(rng.integers(1, 2000)))
        if g % 5 == 0:
            values = np.concatenate((values, -values[:7], np.zeros(3)))  # negative and zero stores too
        sketches[g] = LogSketch.from_values(values)
    group = np.concatenate([np.full(s.ords.size, g) for g, s in sketches.items()])
    ords = np.concatenate([s.ords for s in sketches.values()])
    counts = np.concatenate([s.counts for s in sketches.values()])
    weights = counts * rng.random(counts.size)
    texts, wtexts = encode_counts(group, ords, counts, 40), encode_weights(group, ords, weights, 40)
    for g in range(40):
        one = sketches.get(g, LogSketch())
        assert LogSketch.from_compact(texts[g]) == one
        assert texts[g] == one.to_compact()
        mine, ref = LogSketch.weights_from_compact(wtexts[g]), LogSketch.weights_from_compact(
            LogSketch(one.ords, weights[group == g]).weights_to_compact())
        assert np.array_equal(mine.ords, ref.ords) and np.array_equal(mine.counts, ref.counts)
    g2, o2, c2 = decode_counts(texts)
    assert np.array_equal(g2, group) and np.array_equal(o2, ords) and np.array_equal(c2, counts)
    wg, wo, ww = decode_weights(wtexts)
    assert np.array_equal(wg, group) and np.array_equal(wo, ords)
    assert np.allclose(ww, weights, rtol=1e-3)


# --- bulk codecs against a slow reference (the format as first written: one sketch at a time, pure Python) ----

def _ref_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _ref_zigzag(delta: int) -> int:
    return 2 * delta if delta >= 0 else -2 * delta - 1


def _ref_head(ords: list[int]) -> bytes:
    deltas = [o - p for o, p in zip(ords, [0, *ords][:-1], strict=True)]
    return b"".join(_ref_varint(v) for v in [1, len(ords), *map(_ref_zigzag, deltas)])


def _ref_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 10, 2)
    return c.compress(data) + c.flush()


def _ref_counts(ords: np.ndarray, counts: np.ndarray, *, compress: bool) -> str:
    keep = counts > 0
    payload = _ref_head(ords[keep].tolist()) + b"".join(
        _ref_varint(int(c)) for c in np.rint(counts[keep]).astype(np.uint64).tolist())
    return base64.b64encode(_ref_deflate(payload) if compress else zlib.compress(payload, 0)).decode("ascii")


def _ref_weights(ords: np.ndarray, weights: np.ndarray) -> str:
    keep = weights > 0
    w = weights[keep]
    scale = float(w.max()) if w.size else 1.0
    head = _ref_head(ords[keep].tolist())
    blob = (len(head).to_bytes(4, "little") + head + struct.pack("<d", scale)
            + b"".join(struct.pack("<e", float(np.float16(x / scale))) for x in w.tolist()))
    return base64.b64encode(_ref_deflate(blob)).decode("ascii")


# Ordinals span all three stores (negative, zero, positive) from the smallest to the largest keys; counts up
# to 2**60 (multi-byte and > 2**32 varints), zero counts (dropped) included.
_ORD = st.one_of(st.just(0), st.integers(_ORD_LOW, _ORD_HIGH), st.integers(-_ORD_HIGH, -_ORD_LOW))
_COUNT = st.one_of(st.integers(0, 3), st.integers(0, 300), st.integers(0, 2**60)).map(float)
_GROUP = st.lists(st.tuples(_ORD, _COUNT), max_size=40, unique_by=lambda t: t[0]).map(sorted)
_TABLE = st.lists(_GROUP, max_size=12)


def _bins(groups: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    group = np.array([g for g, bins in enumerate(groups) for _ in bins], dtype=np.int64)
    ords = np.array([o for bins in groups for o, _ in bins], dtype=np.int32)
    counts = np.array([c for bins in groups for _, c in bins], dtype=np.float64)
    return group, ords, counts


@settings(max_examples=200, deadline=None)
@given(_TABLE, st.booleans())
def test_encode_counts_gives_the_reference_bytes_and_decodes_back(groups: list, compress: bool) -> None:
    group, ords, counts = _bins(groups)
    texts = encode_counts(group, ords, counts, len(groups), compress=compress)
    assert texts == [_ref_counts(ords[group == g], counts[group == g], compress=compress)
                     for g in range(len(groups))]
    keep = counts > 0
    g2, o2, c2 = decode_counts(texts)
    assert np.array_equal(g2, group[keep]) and np.array_equal(o2, ords[keep])
    assert np.array_equal(c2, np.rint(counts[keep]).astype(np.uint64).astype(np.float64))
    for g, text in enumerate(texts):  # the one-by-one codec agrees
        assert LogSketch.from_compact(text) == LogSketch(o2[g2 == g], c2[g2 == g])
        assert LogSketch(o2[g2 == g], c2[g2 == g]).to_compact() == _ref_counts(o2[g2 == g], c2[g2 == g],
                                                                                compress=True)


@settings(max_examples=150, deadline=None)
@given(_TABLE, st.floats(min_value=1e-6, max_value=1e6))
def test_encode_weights_gives_the_reference_bytes_and_decodes_back(groups: list, factor: float) -> None:
    group, ords, counts = _bins(groups)
    weights = counts / (counts.max() if counts.size and counts.max() > 0 else 1.0) * factor
    texts = encode_weights(group, ords, weights, len(groups))
    assert texts == [_ref_weights(ords[group == g], weights[group == g]) for g in range(len(groups))]
    keep = weights > 0
    g2, o2, w2 = decode_weights(texts)
    assert np.array_equal(g2, group[keep]) and np.array_equal(o2, ords[keep])
    # Weights come back as float16 fractions of their sketch's largest one, times that scale.
    scale = np.array([weights[keep][group[keep] == g].max() for g in range(len(groups))
                      if (group[keep] == g).any()])
    scale = np.repeat(scale, np.bincount(g2)[np.bincount(g2) > 0])
    assert np.array_equal(w2, (weights[keep] / scale).astype(np.float16).astype(np.float64) * scale)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=50))
def test_varints_round_trip_up_to_64_bits(values: list[int]) -> None:
    data = _varints(np.array(values, dtype=np.uint64))
    assert data == b"".join(_ref_varint(v) for v in values)
    got, _ = _read_varints(np.frombuffer(data, dtype=np.uint8))
    assert got.tolist() == values


def test_decoders_read_other_valid_zlib_and_base64_forms() -> None:
    """Strings written another way (default zlib level, wrapped base64) still decode, through the slow path."""
    ords, counts = np.array([-OFFSET - 5, 0, OFFSET + 3, OFFSET + 7]), np.array([1.0, 2**40, 300.0, 1.0])
    payload = _ref_head(ords.tolist()) + b"".join(_ref_varint(int(c)) for c in counts.tolist())
    texts = [base64.b64encode(zlib.compress(payload)).decode(), base64.encodebytes(zlib.compress(payload, 0)).decode(),
             _ref_counts(ords, counts, compress=False), LogSketch().to_compact()]
    group, o, c = decode_counts(texts)
    assert group.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert o.tolist() == ords.tolist() * 3 and c.tolist() == counts.tolist() * 3
    group, o, c = decode_counts([texts[0], texts[2]])  # canonical base64: deflated and stored side by side
    assert group.tolist() == [0] * 4 + [1] * 4 and o.tolist() == ords.tolist() * 2
    for bad in ([""], [None], [texts[0], 7]):
        with pytest.raises((zlib.error, TypeError)):
            decode_counts(bad)  # type: ignore[arg-type]
    assert [a.dtype for a in decode_counts([])] == [np.int64, np.int32, np.float64]


def _stored(payload: bytes) -> str:
    return base64.b64encode(zlib.compress(payload, 0)).decode("ascii")


@pytest.mark.parametrize(("text", "error"), [
    ("%%%", zlib.error),  # not base64: nothing to inflate
    ("AAAA", zlib.error),  # three zero bytes: shorter than any zlib stream
    (_stored(b"\x02\x00"), ValueError),  # unknown format version
    (_stored(b"\x01"), ValueError),  # no bin count
    (_stored(b"\x01\x02\x04\x02\x05"), ValueError),  # two bins announced, one count given
    (_stored(b"\x01\x01\x04\x05\x07"), ValueError),  # a value more than announced
    (_stored(b"\x01\x01\x04\x85"), ValueError),  # the last varint is cut
    (_stored(b"\x01\x01" + b"\xff" * 11 + b"\x01\x05"), ValueError),  # an 11-byte varint
    (_stored(b"\x01\x01\x04\x05")[:-4] + "AAA=", zlib.error),  # wrong adler32
    (_stored(b"\x01\x01\x04\x05")[:-1], ValueError),  # base64 cut: bad padding
])
def test_malformed_count_sketches_raise(text: str, error: type[Exception]) -> None:
    good = _ref_counts(np.array([OFFSET + 1, OFFSET + 2]), np.array([3.0, 4.0]), compress=False)
    for texts in ([text], [good, text, good]):
        with pytest.raises(error):
            decode_counts(texts)


def test_malformed_weight_sketches_raise() -> None:
    head = _ref_head([OFFSET + 3, OFFSET + 4])

    def blob(head_len: int, body: bytes) -> str:
        return base64.b64encode(_ref_deflate(head_len.to_bytes(4, "little") + body)).decode("ascii")

    good = _ref_weights(np.array([OFFSET + 3, OFFSET + 4]), np.array([1.0, 0.5]))
    for text in (blob(len(head), head + struct.pack("<d", 1.0) + b"\x00\x3c"),  # one weight for two bins
                 blob(len(head) + 40, head),  # head length beyond the blob
                 blob(len(head), b"\x02" + head[1:] + struct.pack("<d", 1.0) + b"\x00\x3c" * 2)):  # version 2
        with pytest.raises(ValueError):
            decode_weights([good, text])
    assert decode_weights([good])[1].tolist() == [OFFSET + 3, OFFSET + 4]


@pytest.mark.parametrize("bins", [3000, 12_000])  # payloads beyond the bulk single-block limit (and 64 KB)
def test_large_stored_sketches_fall_back_to_zlib_with_the_same_bytes(bins: int) -> None:
    ords = np.arange(bins, dtype=np.int32) * 3 + OFFSET - 1000
    counts = np.full(bins, float(2**40))
    group = np.repeat(np.array([0, 2]), [bins - 5, 5])
    texts = encode_counts(group, ords, counts, 3, compress=False)
    assert texts == [_ref_counts(ords[group == g], counts[group == g], compress=False) for g in range(3)]
    g2, o2, c2 = decode_counts(texts)
    assert np.array_equal(g2, group) and np.array_equal(o2, ords) and np.array_equal(c2, counts)


def test_stored_sketches_without_bulk_framing_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where zlib would frame stored blocks differently, encode_counts falls back to zlib: same strings."""
    from shadowing.metrics import sketch

    group, ords, counts = np.array([0, 0, 2]), np.array([-3, 9, 0], dtype=np.int32), np.array([1.0, 2**33, 7.0])
    bulk = encode_counts(group, ords, counts, 4, compress=False)
    monkeypatch.setattr(sketch, "_BULK_STORED", False)
    assert encode_counts(group, ords, counts, 4, compress=False) == bulk
    assert bulk == [_ref_counts(ords[group == g], counts[group == g], compress=False) for g in range(4)]


def _ref_accepts(payload: bytes) -> int | None:
    """Bin count of a well-formed count payload (complete varints of ≤ 10 bytes, [1, n, n deltas, n counts])."""
    values, value, shift, size = [], 0, 0, 0
    for byte in payload:
        value, shift, size = value | (byte & 0x7F) << shift, shift + 7, size + 1
        if size > 10:
            return None
        if byte < 0x80:
            values.append(value & (2**64 - 1))
            value, shift, size = 0, 0, 0
    if size or len(values) < 2 or values[0] != 1 or len(values) != 2 + 2 * values[1]:
        return None
    # ordinals (zigzag deltas) strictly increasing, each 0 or within ± [_ORD_LOW, _ORD_HIGH]
    ords, ordinal = [], 0
    for k, v in enumerate(values[2:2 + values[1]]):
        delta = v >> 1 if v % 2 == 0 else -(v >> 1) - 1
        if k and delta <= 0:
            return None
        ordinal += delta
        ords.append(ordinal)
    if any(o != 0 and not _ORD_LOW <= abs(o) <= _ORD_HIGH for o in ords):
        return None
    return values[1]


_PAYLOAD = st.one_of(
    st.binary(max_size=24),  # mostly malformed
    st.tuples(st.lists(_ORD, max_size=4, unique=True).map(sorted), st.lists(st.integers(0, 2**64 - 1), min_size=4,
                                                                            max_size=4)).map(  # well formed
        lambda t: _ref_head(t[0]) + b"".join(_ref_varint(c) for c in t[1][:len(t[0])])),
    st.integers(0, 4).flatmap(lambda n: st.tuples(  # [1, n, values…]: well formed when 2n values follow
        st.just(n), st.one_of(st.lists(st.integers(0, 2**70), min_size=2 * n, max_size=2 * n),
                              st.lists(st.integers(0, 2**70), max_size=9)))).map(
        lambda t: b"".join(_ref_varint(v) for v in [1, t[0], *t[1]])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PAYLOAD, min_size=1, max_size=4))
def test_any_stored_payload_decodes_exactly_when_well_formed(payloads: list[bytes]) -> None:
    """Arbitrary payloads in valid zlib/base64: decode_counts returns iff every one is well formed, else
    raises ValueError (never IndexError & co.), and then gives each sketch its announced number of bins."""
    texts = [_stored(p) for p in payloads]
    expected = [_ref_accepts(p) for p in payloads]
    event("well formed" if None not in expected else "malformed")
    if None in expected:
        with pytest.raises(ValueError):
            decode_counts(texts)
    else:
        group, _, _ = decode_counts(texts)
        assert np.bincount(group, minlength=len(texts)).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=30), _PAYLOAD.map(lambda p: len(p).to_bytes(4, "little") + p
                                                                 + struct.pack("<d", 2.0) + b"\x00\x3c" * 2)),
                min_size=1, max_size=3))
def test_any_weight_blob_decodes_or_raises_value_error(blobs: list[bytes]) -> None:
    texts = [base64.b64encode(_ref_deflate(b)).decode("ascii") for b in blobs]
    try:
        group, ords, weights = decode_weights(texts)
    except ValueError:
        return
    assert group.size == ords.size == weights.size and np.all(weights == 2.0)
