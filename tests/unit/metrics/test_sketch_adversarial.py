"""The sketch against the reference ``ddsketch`` package and hostile input (the plain cases are in test_sketch.py).

* bucket keys: the same as ``DDSketch.add`` for values on and one ulp around every bucket edge, powers of gamma,
  2 and 10, 1e-300 … 1e300, subnormals, DDSketch's ``min_possible`` itself, negatives;
* the converted sketch (``to_ddsketch``): bin for bin what DDSketch builds value by value, its quantiles the
  *lower* order statistic within 1 % (ours the *linear* one), through ddsketch's protobuf too;
* merge: exactly the sketch of the union, associative and commutative, bit for bit;
* codecs: counts exact up to 2**64 − 1 and refused beyond; float weights to the documented half precision;
  garbage, truncated or oversized text refused with a :class:`SketchFormatError` (an InputError) naming
  which sketch of the batch and what is wrong, never a numpy error or a wrong count;
* quantiles of the fingerprint (both build paths) within 1 % of numpy's linear quantiles on hostile shapes, and
  the two shapes where no relative bound can hold (mixed signs interpolated across 0, subnormals), bounded as
  the module says.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb.proto import DDSketchProto
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shadowing.errors import InputError
from shadowing.metrics.sketch import (
    ALPHA,
    MIN_INDEXABLE,
    OFFSET,
    LogSketch,
    SketchFormatError,
    decode_counts,
    decode_weights,
    encode_counts,
    encode_weights,
    grouped_quantiles,
    ordinals,
)

MAPPING = LogarithmicMapping(ALPHA)
TINY = np.finfo(np.float64).tiny


def reference_ordinal(value: float) -> int:
    """The ordinal DDSketch.add gives ``value``: its store (sign) and LogarithmicMapping.key."""
    if value > MAPPING.min_possible:
        return MAPPING.key(value) + OFFSET
    if value < -MAPPING.min_possible:
        return -(MAPPING.key(-value) + OFFSET)
    return 0


def bucket_edges() -> np.ndarray:
    """Every bucket edge DDSketch computes (gamma**k as its mapping evaluates it), one ulp below and above."""
    edges = np.array([MAPPING._pow_gamma(k) for k in range(-35_430, 35_488)])  # 35_488: beyond float64
    edges = edges[edges > 0]
    values = np.concatenate((edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf)))
    return values[(values > MAPPING.min_possible) & (values < MAPPING.max_possible)]


def special_values() -> np.ndarray:
    powers = np.concatenate((1.0 * MAPPING.gamma ** np.arange(-300.0, 301.0), 2.0 ** np.arange(-1074.0, 1024.0),
                             10.0 ** np.arange(-300.0, 301.0)))
    tiny = np.array([0.0, -0.0, 5e-324, 1e-310, TINY, MIN_INDEXABLE, np.nextafter(MIN_INDEXABLE, 0),
                     np.nextafter(MIN_INDEXABLE, 1), 1e-300, 1e300, np.finfo(np.float64).max])
    return np.concatenate((powers, tiny, np.arange(1.0, 10_001.0), np.arange(1, 10_001) / 100))


# --- bucket keys ---------------------------------------------------------------------------------------------

def test_keys_are_ddsketchs_on_and_around_every_bucket_edge() -> None:
    values = bucket_edges()
    assert values.size > 200_000
    got = ordinals(values)
    expected = np.array([reference_ordinal(float(v)) for v in values])
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, f"{wrong.size} keys differ, e.g. {values[wrong[:3]].tolist()}"
    neg = ordinals(-values[::7])
    assert np.array_equal(neg, [reference_ordinal(float(v)) for v in -values[::7]])


def test_keys_of_powers_integers_subnormals_and_the_smallest_indexable_value() -> None:
    values = special_values()
    values = np.concatenate((values, -values))
    got = ordinals(values)
    expected = np.array([reference_ordinal(float(v)) for v in values])
    assert np.array_equal(got, expected), values[got != expected][:5]
    # DDSketch's min_possible itself counts as a zero (add() indexes strictly above it); one ulp above is keyed
    assert ordinals(np.array([MIN_INDEXABLE, -MIN_INDEXABLE, 1e-310])).tolist() == [0, 0, 0]
    assert ordinals(np.array([np.nextafter(MIN_INDEXABLE, 1)]))[0] > 0


# --- to_ddsketch -------------------------------------------------------------------------------------------

def _bins(store) -> dict[int, float]:  # type: ignore[no-untyped-def]
    return {i + store.offset: c for i, c in enumerate(store.bins) if c}


mixed_values = st.lists(st.one_of(
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_subnormal=True),
    st.sampled_from([0.0, 5e-324, MIN_INDEXABLE, -MIN_INDEXABLE, 1.0, MAPPING.gamma, 1e-300])),
    min_size=1, max_size=200)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(mixed_values)
def test_converted_sketch_is_ddsketch_built_value_by_value(values: list[float]) -> None:
    reference = DDSketch(ALPHA)
    for v in values:
        reference.add(v)
    mine = LogSketch.from_values(np.array(values)).to_ddsketch()
    assert _bins(mine._store) == _bins(reference._store)
    assert _bins(mine._negative_store) == _bins(reference._negative_store)
    assert mine._zero_count == reference._zero_count and mine.count == reference.count
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert mine.get_quantile_value(q) == reference.get_quantile_value(q)


def test_edge_values_build_the_same_ddsketch() -> None:
    values = bucket_edges()[::5]
    reference = DDSketch(ALPHA)
    for v in values.tolist():
        reference.add(v)
    mine = LogSketch.from_values(values).to_ddsketch()
    assert _bins(mine._store) == _bins(reference._store)


def test_converted_quantiles_are_the_lower_order_statistic_and_survive_protobuf() -> None:
    rng = np.random.default_rng(4)
    for values in (rng.lognormal(0, 4, 5001), np.concatenate((-rng.pareto(1.0, 300), np.zeros(50),
                                                                rng.gamma(2.0, 30.0, 2000))),
                   np.concatenate((np.full(3000, 1.0), np.full(3000, 1e6)))):
        sketch = LogSketch.from_values(values)
        dd = sketch.to_ddsketch(minimum=float(values.min()), maximum=float(values.max()), total=float(values.sum()))
        assert dd.sum == pytest.approx(values.sum()) and dd._min == values.min() and dd._max == values.max()
        back = DDSketchProto.from_proto(DDSketchProto.to_proto(dd))
        assert back.count == values.size
        n = values.size
        for q in np.linspace(0, 1, 41):
            lower = np.quantile(values, q, method="lower")
            for got in (dd.get_quantile_value(q), back.get_quantile_value(q)):
                assert abs(got - lower) <= ALPHA * abs(lower) * (1 + 1e-9)
            if float(q * (n - 1)).is_integer():  # one order statistic: ours reads the same bucket
                ours = sketch.quantiles([q])[0]
                assert ours == pytest.approx(dd.get_quantile_value(q), rel=1e-12)


def test_an_empty_sketch_converts_to_an_empty_ddsketch() -> None:
    dd = LogSketch().to_ddsketch()
    assert dd.count == 0 and dd.get_quantile_value(0.5) is None
    assert LogSketch().quantiles([0.5, 0.99]) == [None, None]


# --- merge ---------------------------------------------------------------------------------------------

def _exact(a: LogSketch, b: LogSketch) -> bool:
    keep_a, keep_b = a.counts != 0, b.counts != 0
    return np.array_equal(a.ords[keep_a], b.ords[keep_b]) and np.array_equal(a.counts[keep_a], b.counts[keep_b])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(mixed_values, mixed_values, mixed_values)
def test_merge_is_the_union_exactly_associative_and_commutative(a: list[float], b: list[float],
                                                               c: list[float]) -> None:
    sa, sb, sc = (LogSketch.from_values(np.array(x)) for x in (a, b, c))
    assert _exact(sa.merge(sb), LogSketch.from_values(np.array(a + b)))
    assert _exact(sa.merge(sb), sb.merge(sa))
    assert _exact(sa.merge(sb).merge(sc), sa.merge(sb.merge(sc)))
    assert _exact(sa.merge(sb).merge(sc), LogSketch.from_values(np.array(a + b + c)))
    # and through the compact form, which is what folds merge
    round_trip = LogSketch.from_compact(sa.to_compact()).merge(LogSketch.from_compact(sb.to_compact()))
    assert _exact(round_trip, LogSketch.from_values(np.array(a + b)))


# --- codecs: counts and weights ------------------------------------------------------------------------------

def test_counts_round_trip_exactly_beyond_2_32_per_bucket_and_2_53_in_total() -> None:
    ords = ordinals(np.array([-3.0, 0.0, 1.0, 2.0, 1e300]))
    counts = np.array([2.0**32 + 1, 2.0**53, 2.0**53 - 1, 2.0**63, 2.0**64 - 2048])  # all exact float64
    sketch = LogSketch(ords, counts)
    assert np.array_equal(LogSketch.from_compact(sketch.to_compact()).counts, counts)
    group = np.zeros(ords.size, dtype=np.int64)
    for compress in (True, False):
        _, o, c = decode_counts(encode_counts(group, ords, counts, 1, compress=compress))
        assert np.array_equal(o, ords) and np.array_equal(c, counts)


@pytest.mark.parametrize("count", [2.0**64, 1e30, math.inf, math.nan])
def test_counts_no_varint_holds_are_refused_not_wrapped(count: float) -> None:
    ords = ordinals(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="does not fit"):
        LogSketch(ords, np.array([count, 3.0])).to_compact()
    with pytest.raises(ValueError, match="does not fit"):
        encode_counts(np.zeros(2, dtype=np.int64), ords, np.array([3.0, count]), 1)


def test_non_finite_weights_are_refused() -> None:
    ords = ordinals(np.array([1.0, 2.0]))
    for w in (math.inf, math.nan):
        with pytest.raises(ValueError, match="not finite"):
            LogSketch(ords, np.array([1.0, w])).weights_to_compact()
        with pytest.raises(ValueError, match="not finite"):
            encode_weights(np.zeros(2, dtype=np.int64), ords, np.array([w, 1.0]), 1)


def test_weights_keep_the_documented_half_precision() -> None:
    """Relative error ≤ 2**-11 for weights ≥ 2**-14 of the sketch's largest; absolute ≤ 2**-25 of it below."""
    rng = np.random.default_rng(9)
    rel = np.concatenate((2.0 ** -rng.uniform(0, 40, 3000), [1.0, 2.0**-14, 2.0**-25, 2.0**-26]))
    for scale in (1e-200, 3.7, 1e250):
        weights = rel * scale
        ords = np.arange(weights.size, dtype=np.int32) + OFFSET
        back = LogSketch.weights_from_compact(LogSketch(ords, weights).weights_to_compact()).counts
        _, _, bulk = decode_weights(encode_weights(np.zeros(ords.size, dtype=np.int64), ords, weights, 1))
        assert np.array_equal(back, bulk)
        big = rel >= 2.0**-14
        assert np.all(np.abs(back[big] - weights[big]) <= 2.0**-11 * weights[big])
        assert np.all(np.abs(back[~big] - weights[~big]) <= 2.0**-25 * scale * (1 + 1e-12))


# Ordinals encoders write: negative, zero and positive stores, up to the largest keys.
_VALID_ORDINALS = np.r_[np.arange(-OFFSET - 35_000, -OFFSET - 30_000), 0, np.arange(OFFSET - 30_000, OFFSET + 35_000)]


def test_ten_thousand_sketches_in_one_encode() -> None:
    rng = np.random.default_rng(2)
    n_groups = 10_000
    sizes = rng.integers(0, 30, n_groups)
    sizes[::9] = 0
    group = np.repeat(np.arange(n_groups), sizes)
    ords = np.concatenate([np.sort(rng.choice(_VALID_ORDINALS, k, replace=False))
                           for k in sizes]).astype(np.int32)
    counts = rng.integers(1, 2**45, ords.size).astype(np.float64)
    weights = counts * rng.random(ords.size)
    for compress in (True, False):
        texts = encode_counts(group, ords, counts, n_groups, compress=compress)
        assert len(texts) == n_groups
        g, o, c = decode_counts(texts)
        assert np.array_equal(g, group) and np.array_equal(o, ords) and np.array_equal(c, counts)
        for k in (0, 1, 4_999, 9_998):
            assert LogSketch.from_compact(texts[k]) == LogSketch(ords[group == k], counts[group == k])
    g, o, w = decode_weights(encode_weights(group, ords, weights, n_groups))
    assert np.array_equal(g, group) and np.array_equal(o, ords)
    largest = np.maximum.reduceat(weights, np.searchsorted(group, np.unique(group)))[np.searchsorted(
        np.unique(group), group)]
    assert np.all(np.abs(w - weights) <= np.maximum(2.0**-11 * weights, 2.0**-25 * largest))


# --- codecs: hostile text ----------------------------------------------------------------------------------

def _stored(payload: bytes) -> str:
    return base64.b64encode(zlib.compress(payload, 0)).decode("ascii")


def _varints(*values: int) -> bytes:
    out = bytearray()
    for v in values:
        while True:
            out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
            v >>= 7
            if not v:
                break
    return bytes(out)


GOOD = LogSketch.from_values(np.array([1.0, 2.0, 2.0, 50.0])).to_compact()
DEFLATED = base64.b64decode(GOOD)
BOMB = base64.b64encode(zlib.compress(_varints(1, 1, 4) + b"\x00" * (8 << 20))).decode("ascii")

HOSTILE = {
    "not base64": ("hello world!", "not base64"),
    "percent signs": ("%%%", "not base64"),
    "non-ASCII": ("ébc=", "not base64"),
    "not text": (None, "NoneType, not base64 text"),
    "a number": (7, "int, not base64 text"),
    "cut base64": (GOOD[:-1], "not base64"),
    "cut deflate stream": (base64.b64encode(DEFLATED[:-6]).decode("ascii"), "truncated"),
    "bytes after the stream": (base64.b64encode(DEFLATED + b"junk").decode("ascii"), "after its zlib data"),
    "not zlib": (base64.b64encode(b"\x01\x02\x03\x04\x05\x06").decode("ascii"), "not zlib data"),
    "empty text": ("", "truncated"),
    "inflates to 8 MB": (BOMB, "inflates beyond"),
    "empty payload": (_stored(b""), "empty"),
    "fewer bins than announced": (_stored(_varints(1, 3, 10, 2, 5, 7)), "does not match its header"),
    "more values than announced": (_stored(_varints(1, 1, 10, 2, 5)), "does not match its header"),
    "an 11-byte varint": (_stored(b"\x01\x01" + b"\xff" * 10 + b"\x01\x05"), "longer than 10 bytes"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_count_text_raises_a_format_error_naming_the_sketch(name: str) -> None:
    text, reason = HOSTILE[name]
    for texts, where in (([text], "field 'sketch'"), ([GOOD, GOOD, text, GOOD], "field 'sketch 3 of 4'")):
        with pytest.raises(SketchFormatError, match=reason) as info:
            decode_counts(texts)  # type: ignore[arg-type]
        assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
        assert where in str(info.value) and "not a LogSketch" in str(info.value)
        assert info.value.index == len(texts) - 1 - (len(texts) > 1)
    with pytest.raises(SketchFormatError, match=reason):
        LogSketch.from_compact(text)  # type: ignore[arg-type]


def test_whitespace_wrapped_base64_still_decodes() -> None:
    wrapped = base64.encodebytes(DEFLATED).decode("ascii")
    spaced = " ".join(GOOD[i:i + 8] for i in range(0, len(GOOD), 8))
    for text in (wrapped, spaced, GOOD.encode("ascii")):
        assert LogSketch.from_compact(text) == LogSketch.from_compact(GOOD)  # type: ignore[arg-type]


def _weight_blob(head_len: int, body: bytes) -> str:
    return base64.b64encode(zlib.compress(head_len.to_bytes(4, "little") + body)).decode("ascii")


HEAD = _varints(1, 2, 2 * (OFFSET + 3), 2)
HOSTILE_WEIGHTS = {
    "one weight for two bins": (_weight_blob(len(HEAD), HEAD + struct.pack("<d", 1.0) + b"\x00\x3c"),
                                r"2 byte\(s\) of weights for 2 bin"),
    "head beyond the blob": (_weight_blob(len(HEAD) + 40, HEAD), "truncated"),
    "NaN scale": (_weight_blob(len(HEAD), HEAD + struct.pack("<d", math.nan) + b"\x00\x3c" * 2), "scale"),
    "negative scale": (_weight_blob(len(HEAD), HEAD + struct.pack("<d", -2.0) + b"\x00\x3c" * 2), "scale"),
    "infinite weight": (_weight_blob(len(HEAD), HEAD + struct.pack("<d", 1.0) + b"\x00\x7c\x00\x3c"),
                        "not a number"),
    "bytes after the stream": (base64.b64encode(zlib.compress(b"\x00" * 12) + b"x").decode("ascii"),
                               "after its zlib data"),
}


@pytest.mark.parametrize("name", list(HOSTILE_WEIGHTS))
def test_hostile_weight_text_raises_a_format_error_naming_the_sketch(name: str) -> None:
    text, reason = HOSTILE_WEIGHTS[name]
    good = LogSketch(np.array([OFFSET + 3, OFFSET + 4], dtype=np.int32), np.array([1.0, 0.5])).weights_to_compact()
    with pytest.raises(SketchFormatError, match=reason) as info:
        decode_weights([good, text])
    assert info.value.index == 1 and "sketch 2 of 2" in str(info.value) and "weighted LogSketch" in str(info.value)
    with pytest.raises(SketchFormatError, match=reason):
        LogSketch.weights_from_compact(text)


def test_ordinals_no_encoder_writes_are_refused() -> None:
    """A corrupt stored sketch would otherwise give quantiles of values nobody measured (an int32 wrap-around
    turns a bucket of 1e300 into a negative one): refused, naming the sketch."""
    good = LogSketch.from_values(np.array([0.0, 1.0, 2.0, 1e300])).to_compact()
    cases = {
        "unsorted": _varints(1, 2, 2 * (OFFSET + 10), 2 * 5 + 1, 1, 1),  # second ordinal below the first
        "repeated": _varints(1, 2, 2 * (OFFSET + 10), 0, 1, 1),  # the same bucket twice
        "wraps": _varints(1, 3, 2 * 2**30, 2 * 2**30, 2 * 2**30, 1, 1, 1),  # 2**31 wraps to negative
        "between zero and the smallest key": _varints(1, 1, 2 * 7, 1),
        "beyond the largest float": _varints(1, 1, 2 * (OFFSET + 40_000), 1),
        "huge step": _varints(1, 2, 2 * (OFFSET + 10), 2**63, 1, 1),
    }
    for name, payload in cases.items():
        with pytest.raises(SketchFormatError, match="bucket ordinal") as info:
            decode_counts([good, _stored(payload)])
        assert info.value.index == 1 and "sketch 2 of 2" in str(info.value), name
    assert LogSketch.from_compact(good).count == 4


# --- quantiles ---------------------------------------------------------------------------------------------

def test_a_group_past_2_53_never_reads_its_neighbours_bins() -> None:
    ords = ordinals(np.array([1.0, 2.0, 1000.0, 5.0]))
    group = np.array([0, 0, 1, 2])
    for big in ([2.0**60, 3.0], [3.0, 2.0**60], [2.0**62, 2.0**62]):
        q = grouped_quantiles(group, ords, np.array([*big, 5.0, 7.0]), 3, [0.0, 0.5, 0.99, 1.0])
        assert np.allclose(q[1], 1000.0, rtol=ALPHA) and np.allclose(q[2], 5.0, rtol=ALPHA)
        assert np.all((q[0] >= 0.99) & (q[0] <= 2.0 * (1 + ALPHA)))


def test_single_value_and_constant_sketches() -> None:
    for v in (0.0, 1e-300, 3.3, 1e300, -7.0):
        for n in (1, 1000):
            s = LogSketch.from_values(np.full(n, v))
            assert s.quantiles([0.0, 0.5, 0.99, 1.0], v, v) == [v] * 4
            assert all(abs(x - v) <= ALPHA * abs(v) for x in s.quantiles([0.0, 0.5, 1.0]))


def test_non_finite_values_are_left_out_with_their_weights() -> None:
    values = np.array([1.0, np.inf, 2.0, np.nan, -np.inf, 3.0])
    weights = np.array([1.0, 50.0, 1.0, 50.0, 50.0, 1.0])
    assert LogSketch.from_values(values, weights) == LogSketch.from_values(np.array([1.0, 2.0, 3.0]))
    assert LogSketch.from_values(values) == LogSketch.from_values(np.array([1.0, 2.0, 3.0]))


@settings(max_examples=200, deadline=None, derandomize=True)
@example([0.0, -3.0], 0.9999999999999999)  # interpolation's own float error
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=2, max_size=100),
       st.floats(min_value=0, max_value=1))
def test_mixed_signs_stay_within_alpha_of_the_straddled_order_statistics(values: list[float], q: float) -> None:
    """No relative bound across 0 (the exact value may be ~0); the module's absolute bound holds."""
    v = np.sort(np.array(values))
    got = LogSketch.from_values(v).quantiles([q], float(v[0]), float(v[-1]))[0]
    rank = q * (v.size - 1)
    lo, hi = v[math.floor(rank)], v[math.ceil(rank)]
    f = rank - math.floor(rank)
    exact = np.quantile(v, q)
    # plus the float error of interpolating itself (numpy's and ours: a few ulps of the operands)
    noise = 8 * np.finfo(np.float64).eps * max(abs(lo), abs(hi))
    assert abs(got - exact) <= ALPHA * ((1 - f) * abs(lo) + f * abs(hi)) * (1 + 1e-9) + noise + 1e-300


def test_subnormals_read_as_zero_the_one_relative_bound_that_cannot_hold() -> None:
    values = np.concatenate((np.zeros(40), np.full(60, 1e-310)))
    assert LogSketch.from_values(values).quantiles([0.5], 0.0, 1e-310) == [0.0]  # exact: 1e-310


# --- the fingerprint's quantiles (both build paths) on hostile shapes -------------------------------------

QS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
N = 1500


def _shapes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "two-far-clusters": np.where(rng.random(N) < 0.5, rng.uniform(1e-3, 2e-3, N), rng.uniform(1e6, 2e6, N)),
        "clusters-at-p95": np.where(rng.random(N) < 0.95, 1.0, 1e9),
        "heavy-tail": rng.pareto(0.3, N),
        "zeros-then-large": np.where(np.arange(N) < N - 8, 0.0, rng.uniform(1e3, 1e12, N)),
        "constant": np.full(N, 37.123),
        "one-spike": np.where(np.arange(N) == 700, 1e9, 5.0),
        "tiny": rng.uniform(1e-12, 3e-12, N),
        "huge": rng.uniform(1e80, 9e80, N),
    }


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2025-01-06", tz="UTC") + pd.to_timedelta(np.arange(N) * 60, unit="s")
    parts = []
    for svc, values in _shapes(rng).items():
        for k in range(2):
            parts.append(pd.DataFrame({"timestamp": ts, "region": "eu-west-1", "service": svc,
                                       "instance_id": f"{svc}-{k}", "metric": "network_in_bytes",
                                       "value": rng.permutation(values) if k else values}))
    return pd.concat(parts, ignore_index=True)


def _worst(fp: dict, df: pd.DataFrame) -> tuple[float, str]:
    worst, where = 0.0, ""
    for svc, rows in df.groupby("service"):
        entry = fp["services"][svc]
        totals = rows.groupby("timestamp")["value"].sum().to_numpy()
        for label, e, values in (("pooled", entry["metrics"]["network_in_bytes"], rows["value"].to_numpy()),
                                 ("aggregate", entry["aggregate"]["network_in_bytes"], totals)):
            for name, q in QS.items():
                exact = float(np.quantile(values, q))
                err = abs(e[name] - exact) / abs(exact) if exact else abs(e[name])
                if err > worst:
                    worst, where = err, f"{svc} {label} {name}: {e[name]!r} vs {exact!r}"
    return worst, where


def test_fingerprint_quantiles_within_one_percent_on_hostile_shapes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowing.capacity import fingerprint
    from shadowing.metrics.frame import from_pandas

    df = _frame(5)
    worst, where = _worst(fingerprint.build(from_pandas(df)), df)
    assert worst <= ALPHA + 1e-12, where
    path = tmp_path / "shapes.parquet"
    df.to_parquet(path, index=False)

    def no_fallback(*args: object, **kwargs: object) -> None:
        raise AssertionError("the streamed path fell back to build()")

    monkeypatch.setattr(fingerprint, "build", no_fallback)
    worst, where = _worst(fingerprint.build_file(path, stream_min_rows=0), df)
    assert worst <= ALPHA + 1e-12, where


def test_dense_path_keys_edge_values_like_ddsketch() -> None:
    from shadowing.capacity import batch

    values = bucket_edges()
    values = values[(values > 1.0) & (values < 1e6)][:3000].reshape(1, -1)
    grid = 1.7e9 + 60.0 * np.arange(values.shape[1])
    dense = batch.compute_dense(values, grid, reference_time=grid[-1] + 60, ewma_half_life=3600,
                                decay_half_life=86400).batch
    expected: dict[int, float] = {}
    for v in values[0].tolist():
        expected[reference_ordinal(v)] = expected.get(reference_ordinal(v), 0.0) + 1
    assert dict(zip(dense.bin_ord.tolist(), dense.bin_count.tolist(), strict=True)) == expected
