"""Runs of a dictionary-encoded Parquet text column, read from its pages without one value per row.

A tidy file repeats each name (service, instance, metric) over a whole series, and Parquet writers store
such a column as a dictionary page plus data pages of RLE runs: a few kilobytes for a million rows. pyarrow
still decodes it into one dictionary index per row (about 3 ns a row: 0.12 s per column at 30M rows, more
than the value column costs), only for the reader to look for where the index changes. This module walks
the column chunk's pages itself (thrift page headers, pyarrow's codecs for decompression, the RLE /
bit-packed hybrid) and returns the runs directly.

Only the common case is taken: a PLAIN dictionary page, RLE_DICTIONARY data pages (v1 or v2), no nulls, no
repetition, a codec pyarrow decompresses with the same framing (uncompressed, Snappy, gzip, Brotli, zstd).
Anything else (or anything unexpected in the bytes) returns None and the caller decodes with pyarrow.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

_CODECS = {"SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "ZSTD": "zstd"}
_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 1, 2, 3
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY = 0, 2, 3, 8
# Give up (let pyarrow decode) when a chunk has more runs than this share of its rows: not a run column.
_MAX_RUN_SHARE = 1 / 16


class _Unsupported(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:  # most are one byte
        return byte, pos + 1
    out, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = buf[pos]
        out |= (byte & 0x7F) << shift
        if byte < 0x80:
            return out, pos + 1
        shift += 7
        if shift > 63:
            raise _Unsupported("varint too long")


def _skip(buf: bytes, pos: int, kind: int) -> int:
    """Past one thrift compact value of type ``kind`` (the page header fields this module does not read)."""
    if kind in (1, 2):  # bool, carried in the field header
        return pos
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):
        return _varint(buf, pos)[1]
    if kind == 7:
        return pos + 8
    if kind == 8:
        size, pos = _varint(buf, pos)
        return pos + size
    if kind in (9, 10):
        head = buf[pos]
        pos += 1
        size, element = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        for _ in range(size):
            pos = pos + 1 if element in (1, 2) else _skip(buf, pos, element)  # a bool element is one byte
        return pos
    if kind == 11:
        size, pos = _varint(buf, pos)
        if size:
            types = buf[pos]
            pos += 1
            for _ in range(size):
                pos = _skip(buf, _skip(buf, pos, types >> 4), types & 0x0F)
        return pos
    if kind == 12:
        return _struct(buf, pos, None)[1]
    raise _Unsupported(f"thrift type {kind}")


# PageHeader fields read (by id): 1 type, 2 uncompressed size, 3 compressed size, 5 data page header,
# 7 dictionary page header, 8 data page v2 header; all their integer fields; nothing else is decoded.
_READ = {1: None, 2: None, 3: None, 5: {1, 2, 3}, 7: {1, 2}, 8: {1, 2, 4, 5, 6, 7}}


def _struct(buf: bytes, pos: int, wanted: Any) -> tuple[dict[int, Any], int]:
    """A thrift compact struct at ``pos``: {field id: value} for the ``wanted`` ids (a dict of nested wants,
    a set of integer fields, or None to skip everything), and the position after it."""
    fields: dict[int, Any] = {}
    last = 0
    while True:
        head = buf[pos]
        pos += 1
        if head == 0:
            return fields, pos
        delta, kind = head >> 4, head & 0x0F
        if delta:
            last += delta
        else:
            raw, pos = _varint(buf, pos)
            last = (raw >> 1) ^ -(raw & 1)
        if wanted is None or last not in wanted:
            pos = _skip(buf, pos, kind)
        elif kind in (1, 2):
            fields[last] = kind == 1
        elif kind in (4, 5, 6):
            raw, pos = _varint(buf, pos)
            fields[last] = (raw >> 1) ^ -(raw & 1)
        elif kind == 12 and isinstance(wanted, dict):
            fields[last], pos = _struct(buf, pos, wanted[last])
        else:
            pos = _skip(buf, pos, kind)


def _unpack(raw: np.ndarray, width: int, count: int) -> np.ndarray:
    """``count`` little-endian bit-packed integers of ``width`` bits."""
    if width == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(raw, bitorder="little")[:count * width].reshape(count, width)
    return bits.astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))


def _hybrid(data: bytes, pos: int, width: int, n: int, values: list[int], lengths: list[int], limit: int) -> None:
    """Append the RLE / bit-packed hybrid runs of ``n`` values at ``pos`` to values/lengths (one entry per RLE
    run, one per literal value)."""
    width_bytes = (width + 7) // 8
    got = 0
    while got < n:
        if pos >= len(data):
            raise _Unsupported("page ends early")
        header, pos = _varint(data, pos)
        if header & 1:  # bit-packed groups of 8 values
            count = (header >> 1) * 8
            size = (header >> 1) * width
            raw = np.frombuffer(data, dtype=np.uint8, count=size, offset=pos)
            pos += size
            literal = _unpack(raw, width, count)[:n - got]
            values.extend(literal.tolist())
            lengths.extend([1] * literal.size)
            got += literal.size
        else:
            count = header >> 1
            if count > n - got or count == 0:
                raise _Unsupported("RLE run past the page's values")  # writers never pad RLE runs
            values.append(int.from_bytes(data[pos:pos + width_bytes], "little"))
            pos += width_bytes
            lengths.append(count)
            got += count
        if len(lengths) > limit:
            raise _Unsupported("not a run column")


def _all_defined(data: bytes, pos: int, n: int) -> bool:
    header, at = _varint(data, pos)
    if header == n << 1 and data[at] == 1:  # one RLE run of "defined": the usual page without nulls
        return True
    values: list[int] = []
    lengths: list[int] = []
    _hybrid(data, pos, 1, n, values, lengths, n)
    return all(v == 1 for v in values)


def dictionary_runs(fd: int, chunk: Any, column: Any, first_row: int) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """(run starts as rows from ``first_row``, the names the runs use, each run's index into them) of a column
    chunk, or None when this module does not take the chunk (the caller decodes it with pyarrow).

    ``fd``: the file, read with pread (safe from several threads); ``chunk``: the column chunk's metadata
    (``pyarrow.parquet.ColumnChunkMetaData``); ``column``: its schema column (``ColumnSchema``).
    """
    try:
        return _dictionary_runs(fd, chunk, column, first_row)
    except Exception:  # noqa: BLE001 - bytes this module cannot take (or a codec's own errors): pyarrow reads them
        return None


def _dictionary_runs(fd: int, chunk: Any, column: Any, first_row: int
                     ) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    if column.max_repetition_level != 0 or column.max_definition_level > 1 or column.physical_type != "BYTE_ARRAY":
        return None
    compression = chunk.compression
    if compression != "UNCOMPRESSED" and compression not in _CODECS:
        return None
    n_rows = int(chunk.num_values)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else None
    if start is None or start <= 0:
        return None
    data = os.pread(fd, int(chunk.total_compressed_size), int(start))
    if len(data) != chunk.total_compressed_size:
        return None
    codec = None
    if compression != "UNCOMPRESSED":
        import pyarrow as pa

        codec = pa.Codec(_CODECS[compression])

    def inflate(body: bytes, size: int) -> bytes:
        if codec is None:
            return body
        out = codec.decompress(body, decompressed_size=size, asbytes=True)
        if len(out) != size:
            raise _Unsupported("page size")
        return out

    dictionary: tuple[bytes, int] | None = None
    values: list[int] = []
    lengths: list[int] = []
    limit = int(n_rows * _MAX_RUN_SHARE) + 64
    seen = 0
    at = 0
    while seen < n_rows:
        header, at = _struct(data, at, _READ)
        kind, size, stored = header.get(1), header.get(2), header.get(3)
        if not isinstance(size, int) or not isinstance(stored, int) or size < 0 or stored < 0:
            return None
        body = data[at:at + stored]
        at += stored
        if len(body) != stored:
            return None
        if kind == _DICTIONARY_PAGE:
            page = header.get(7) or {}
            if dictionary is not None or page.get(2) not in (_PLAIN, _PLAIN_DICTIONARY):
                return None
            dictionary = (inflate(body, size), int(page.get(1, 0)))
        elif kind == _DATA_PAGE:
            page = header.get(5) or {}
            n, encoding = int(page.get(1, 0)), page.get(2)
            if encoding not in (_PLAIN_DICTIONARY, _RLE_DICTIONARY):
                return None
            raw = inflate(body, size)
            pos = 0
            if column.max_definition_level:
                if page.get(3) != _RLE:
                    return None
                levels = int.from_bytes(raw[:4], "little")
                if not _all_defined(raw[4:4 + levels], 0, n):
                    return None  # nulls: pyarrow maps them
                pos = 4 + levels
            _hybrid(raw, pos + 1, raw[pos], n, values, lengths, limit)
        elif kind == _DATA_PAGE_V2:
            page = header.get(8) or {}
            n, nulls, encoding = int(page.get(1, 0)), int(page.get(2, 0)), page.get(4)
            levels, repeats = int(page.get(5, 0)), int(page.get(6, 0))
            if nulls or repeats or encoding not in (_PLAIN_DICTIONARY, _RLE_DICTIONARY):
                return None
            payload = body[levels:]
            raw = inflate(payload, size - levels) if page.get(7, True) else payload
            _hybrid(raw, 1, raw[0], n, values, lengths, limit)
        elif kind == _INDEX_PAGE:
            continue
        else:
            return None
        if kind != _DICTIONARY_PAGE:
            seen += n
    if dictionary is None or seen != n_rows:
        return None
    run_values = np.asarray(values, dtype=np.int64)
    run_lengths = np.asarray(lengths, dtype=np.int64)
    new = np.ones(run_values.size, dtype=bool)
    new[1:] = run_values[1:] != run_values[:-1]
    starts = (np.cumsum(run_lengths) - run_lengths)[new]
    codes = run_values[new]
    ordered = np.sort(codes)  # the distinct codes (np.unique would import numpy.ma: ~40 ms of a process)
    used = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if ordered.size else ordered
    names = _plain_strings(dictionary[0], dictionary[1], used)
    return starts + first_row, names, np.searchsorted(used, codes)


def _plain_strings(data: bytes, count: int, wanted: np.ndarray) -> list[str]:
    """Entries ``wanted`` (sorted) of a PLAIN BYTE_ARRAY page: 4-byte little-endian length, then the bytes."""
    if wanted.size and (int(wanted[0]) < 0 or int(wanted[-1]) >= count):
        raise _Unsupported("index outside the dictionary")
    if count > 64 and len(data) >= 4:
        # Names of one length (instance ids, zero-padded names): every entry at a fixed stride, checked at once.
        (first,) = struct.unpack_from("<I", data, 0)
        stride = 4 + first
        if stride * count == len(data):
            sizes = np.frombuffer(data, dtype=np.uint8).reshape(count, stride)[:, :4].copy().view("<u4")
            if bool((sizes == first).all()):
                return [data[k * stride + 4:(k + 1) * stride].decode("utf-8") for k in wanted.tolist()]
    out: list[str] = []
    pos = 0
    targets = wanted.tolist()
    k = 0
    unpack = struct.unpack_from
    for entry in range(int(wanted[-1]) + 1 if wanted.size else 0):
        (size,) = unpack("<I", data, pos)
        if entry == targets[k]:
            out.append(data[pos + 4:pos + 4 + size].decode("utf-8"))
            k += 1
        pos += 4 + size
    if pos > len(data):
        raise _Unsupported("dictionary page ends early")
    return out
