"""Gzip logs as delivered to S3: whole, several members, padded, cut off mid-upload (complete lines kept, a
warning naming file, byte and line), or corrupt (refused naming the file) — for every reader that takes them."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowing.dependencies.accesslogs import parse_access_file
from shadowing.dependencies.discovery import parse_discovery_file
from shadowing.dependencies.gzipped import read_gzip
from shadowing.dependencies.inventory import inventory_from_records
from shadowing.errors import InputError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "deps"
TEXT = b"".join(b"line %05d of a delivered log, some words to compress\n" % i for i in range(4000))


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def test_whole_members_and_zero_padding_read_as_their_text(tmp_path: Path) -> None:
    path = tmp_path / "log.gz"
    path.write_bytes(gzip.compress(TEXT[:1000]) + gzip.compress(TEXT[1000:]) + b"\0" * 16)
    assert read_gzip(path) == read_gzip(path).__class__(TEXT, None)


@pytest.mark.parametrize("lost", [4000, 300, 9])  # compressed bytes cut off the end (9: only the trailer)
def test_a_cut_off_stream_keeps_its_complete_lines(tmp_path: Path, lost: int) -> None:
    packed = gzip.compress(TEXT, mtime=0)
    assert len(packed) > 2 * lost
    path = tmp_path / "log.gz"
    path.write_bytes(packed[:-lost])
    result = read_gzip(path)
    kept = result.data.count(b"\n")
    assert result.data == b"".join(lines_of(TEXT)[:kept])  # a prefix of whole lines
    assert kept == 4000 if lost == 9 else 0 < kept < 4000
    assert result.warning is not None
    assert str(path) in result.warning and f"compressed byte {len(packed) - lost}" in result.warning
    assert f"kept lines 1–{kept} " in result.warning
    assert (f"the cut falls after line {kept}" if lost == 9 else f"dropped the partial line {kept + 1} ") \
        in result.warning


def test_a_cut_in_the_second_member_keeps_the_first_whole(tmp_path: Path) -> None:
    first, second = gzip.compress(TEXT[:5000]), gzip.compress(TEXT[5000:])
    path = tmp_path / "log.gz"
    path.write_bytes(first + second[:len(second) // 2])
    result = read_gzip(path)
    assert result.data.startswith(TEXT[:5000]) and TEXT.startswith(result.data) and len(result.data) > 5000
    assert result.warning and "cut off" in result.warning


@pytest.mark.parametrize("cut", [1, 2, 5, 9])
def test_a_cut_inside_the_header_keeps_nothing_and_says_so(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "log.gz"
    path.write_bytes(gzip.compress(TEXT)[:cut])
    result = read_gzip(path)
    assert result.data == b""
    assert result.warning and "no complete line to keep" in result.warning


@pytest.mark.parametrize("mangle, reason", [
    (lambda packed: packed[:20] + bytes(range(256)) * 8, "not a readable gzip file"),
    (lambda packed: packed[:-8] + b"\0\0\0\0" + packed[-4:], "not a readable gzip file"),
    (lambda packed: packed + b"more words", "after its end"),
])
def test_a_corrupt_stream_is_refused_naming_the_file(tmp_path: Path, mangle: object, reason: str) -> None:
    path = tmp_path / "log.gz"
    path.write_bytes(mangle(gzip.compress(TEXT)))  # type: ignore[operator]
    with pytest.raises(InputError) as caught:
        read_gzip(path)
    assert caught.value.source == str(path) and reason in str(caught.value)


def test_a_cut_off_gzip_discovery_log_gives_the_lookups_before_the_cut(tmp_path: Path) -> None:
    inventory = inventory_from_records([{"ip": "10.0.0.1", "service": "web"}])
    lines = [f"2024-01-01T00:{i // 60:02d}:{i % 60:02d} GET /v1/health/service/api?passing from=10.0.0.1:5555\n"
             for i in range(600)]
    packed = gzip.compress("".join(lines).encode(), mtime=0)
    path = tmp_path / "discovery.log.gz"
    path.write_bytes(packed[:len(packed) // 2])
    result = parse_discovery_file(path, inventory)
    kept = result.stats["lookups"]
    assert 0 < kept < 600 and result.stats["lines"] == kept
    assert [(r.caller, r.target, r.count) for r in result.references] == [("web", "api", kept)]
    assert any(str(path) in w and f"kept lines 1–{kept} " in w for w in result.warnings), result.warnings


def test_gzip_access_logs_read_as_their_text_and_a_cut_off_one_keeps_its_complete_lines(tmp_path: Path) -> None:
    inventory = inventory_from_records([{"ip": "10.44.1.23", "service": "sleep"},
                                        {"ip": "10.44.1.27", "service": "httpbin"}])
    plain = FIXTURES / "flowlogs" / "envoy-istio" / "istio-access-log-examples.log"
    expected = parse_access_file(plain, inventory)
    packed = tmp_path / "access.log.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    result = parse_access_file(packed, inventory)
    assert result.references == expected.references and result.stats == expected.stats
    assert result.warnings == []
    body = gzip.compress(plain.read_bytes() + b"[2020-11-25T21:26:18.409Z] \"GET /status/418 HTTP/1.1\" 418", mtime=0)
    packed.write_bytes(body[:-8])  # the CRC and length trailer lost, and with them the end of the last line
    result = parse_access_file(packed, inventory)
    assert result.references == expected.references and result.stats == expected.stats
    assert len(result.warnings) == 1 and str(packed) in result.warnings[0] and "partial line" in result.warnings[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40),
                      min_size=1, max_size=200),
       members=st.integers(1, 3), cut=st.floats(0.0, 1.0))
def test_any_prefix_of_a_gzip_file_reads_as_whole_lines_of_its_text(tmp_path: Path, lines: list[str], members: int,
                                                                   cut: float) -> None:
    text = "".join(f"{line}\n" for line in lines).encode()
    step = -(-len(lines) // members)  # members of whole lines, as concatenated deliveries are
    parts = [gzip.compress("".join(f"{line}\n" for line in lines[i:i + step]).encode())
             for i in range(0, len(lines), step)]
    packed = b"".join(parts)
    boundaries = {sum(len(part) for part in parts[:k]) for k in range(1, len(parts) + 1)}  # whole members end
    path = tmp_path / "prefix.gz"
    size = int(len(packed) * cut)
    path.write_bytes(packed[:size])
    result = read_gzip(path)
    assert text.startswith(result.data) and (not result.data or result.data.endswith(b"\n"))
    assert (result.warning is None) == (size in boundaries)  # a cut between members leaves a valid gzip file
    if size == len(packed):
        assert result.data == text
