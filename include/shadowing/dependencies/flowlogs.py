"""AWS VPC flow logs (any version 2–7) → service→service references, streamed and columnar.

Two readers yield the same narrow columns of the records that count. Files go through the fast reader
(`flowscan`: one compiled pass per newline-aligned byte block, byte ranges in parallel threads); whatever it
cannot vouch for (comments, blank lines, carriage returns, a malformed line) is read by the exact reader:
pyarrow's streaming CSV reader (``open_csv``), only the needed columns with explicit types, which also serves
tables and bytes (the DAG's CloudWatch Logs lines) and reports bad input with the file and line. Per batch:
filter (ACCEPT, OK, TCP/UDP), map both addresses to services through the inventory's addresses and time
ranges, keep narrow integer columns. The format comes from a header line of field names (custom format), a
``# format:`` comment, an explicit LogFormat (``${version} ${srcaddr} …`` from describe_flow_logs), or the
default v2 order.

Caller direction, strongest signal first: tcp-flags (SYN without ACK = caller; SYN-ACK = callee), then
listening-port detection (ports the configuration says a service listens on or a SYN proved, before (service,
port) endpoints reached from many distinct peer endpoints — not from many records: a client's long-lived
connection logs many records from one ephemeral port, with one peer), then the ephemeral range (32768–60999
Linux, 49152+ Windows), then — both ports in the range or both out of it — the endpoint with more distinct peers
(a server with a small connection pool still has several), then the lower port as the server's.
Listening endpoints are a property of the whole window, so orientation runs once over the kept columns
(compiled, over dense (service, port) tables); the grouping into edges is a compiled hash aggregation. The two
ENI-side copies of a record and the response direction fold into the same oriented edge; an edge's support is
counted in distinct aggregation windows and bytes. REJECT, NODATA/SKIPDATA, non-TCP/UDP and addresses outside
the time-ranged inventory are excluded (counted in the stats).
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from shadowing.dependencies.flowscan import (
    FNV_OFFSET,
    IDENTITY_INTS,
    IDENTITY_TEXT,
    NeedsExactReader,
    Partial,
    aggregate_edges,
    distinct_windows,
    fold_text_column,
    identity_fields_missing,
    mix_identity,
    narrow,
    orient_records,
    scan_file,
)
from shadowing.dependencies.gzipped import MAGIC, read_gzip
from shadowing.dependencies.inventory import Inventory
from shadowing.dependencies.model import Reference
from shadowing.errors import InputError

DEFAULT_V2 = ["version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
              "packets", "bytes", "start", "end", "action", "log-status"]
KNOWN_FIELDS = set(DEFAULT_V2) | {
    "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr", "region", "az-id",
    "sublocation-type", "sublocation-id", "pkt-src-aws-service", "pkt-dst-aws-service", "flow-direction",
    "traffic-path", "ecs-cluster-arn", "ecs-cluster-name", "ecs-container-instance-arn",
    "ecs-container-instance-id", "ecs-container-id", "ecs-second-container-id", "ecs-service-name",
    "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id", "reject-reason"}
NEEDED = {"srcaddr", "dstaddr", "srcport", "dstport", "protocol", "bytes", "start", "action", "log-status",
          "tcp-flags", "pkt-srcaddr", "pkt-dstaddr"}
INT_FIELDS = {"srcport": pa.int32(), "dstport": pa.int32(), "protocol": pa.int16(), "bytes": pa.int64(),
              "start": pa.int64(), "end": pa.int64(), "tcp-flags": pa.int16()}
EPHEMERAL_LOW = 32768
# A (service, port) endpoint reached from this many distinct peer (service, port) endpoints is taken as listening.
# A client's ephemeral endpoint has as many peers as server endpoints its service calls (5 at most in the demo
# world, whose servers have 6 to 83 000); a long-lived connection adds records, not peers.
LISTEN_MIN_PEERS = 8
PACKED_PAIR_LIMIT = 3_037_000_499  # endpoint spaces up to this size pack a pair of endpoints into one int64
BLOCK_SIZE = 1 << 21  # 2 MiB of text per batch (~9k records): parsing and numpy work stay in the CPU caches
DENSE_LIMIT = 1 << 24  # bincount domains up to this size; larger ones go through a sort


@dataclass
class FlowOptions:
    window_seconds: int = 60
    min_windows: int = 2
    min_bytes: int = 0
    listen_ports: dict[str, set[int]] = field(default_factory=dict)  # service → ports it listens on (config)


@dataclass
class FlowResult:
    references: list[Reference]
    observed_services: set[str]
    stats: dict[str, int]
    rejected: list[Reference]
    warnings: list[str] = field(default_factory=list)


def parse_log_format(log_format: str) -> list[str]:
    """``${version} ${srcaddr} …`` (EC2 describe_flow_logs LogFormat) → field names."""
    fields = re.findall(r"\$\{([a-z0-9-]+)\}", log_format)
    if not fields:
        raise InputError(f"not a flow-log LogFormat: {log_format!r}", field="LogFormat")
    return fields


BOM = b"\xef\xbb\xbf"  # a file saved by a Windows editor starts with it


def _header_fields(line: str) -> list[str] | None:
    text = line.strip()
    if text.startswith("#"):
        text = text.lstrip("#").strip()
        if not text.lower().startswith("format:"):
            return None
        text = text.split(":", 1)[1]
    tokens = text.split()
    if tokens and all(t in KNOWN_FIELDS for t in tokens):
        return tokens
    return None


def _sniff(path: Path) -> tuple[list[str] | None, int, bool]:
    """(fields from a header, lines to skip, has comment/blank lines) from the head of the file."""
    with open(path, "rb") as handle:
        raw = handle.read(1 << 16)
        size = handle.seek(0, 2)
    bom = raw.startswith(BOM)
    head = raw.removeprefix(BOM).decode("utf-8", "replace").splitlines()
    fields: list[str] | None = None
    skip = 0
    for i, line in enumerate(head):
        found = _header_fields(line)
        if found:
            fields, skip = found, i + 1
            break
        if line.strip() and not line.lstrip().startswith("#"):
            break
    # Comments further down are rare: the fast reader skips them, and any surprise falls back to line filtering.
    messy = any(line.lstrip().startswith("#") for line in head[skip:skip + 50]) or not size or bom
    return fields, skip, messy


def _filter_lines(raw: bytes, fields: list[str] | None, label: str) -> tuple[bytes, list[int], list[str] | None]:
    """Data lines only (comments, blank lines and repeated headers dropped), their file line numbers, fields."""
    kept: list[bytes] = []
    line_numbers: list[int] = []
    for number, line in enumerate(raw.removeprefix(BOM).splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        text = stripped.decode("utf-8", "replace")
        header = _header_fields(text)
        if header:
            if fields and header != list(fields) and kept:
                raise InputError("a second, different format header in one file", source=label, line=number)
            fields = header
            continue
        if text.startswith("#"):
            continue
        kept.append(stripped)
        line_numbers.append(number)
    return (b"\n".join(kept) + b"\n" if kept else b""), line_numbers, fields


def _schema(fields: list[str], identity: bool = False) -> pa.Schema:
    """The needed columns with their types; with `identity`, also the identity text fields, as written."""
    text = set(IDENTITY_TEXT) if identity and not identity_fields_missing(fields) else set()
    return pa.schema([(f, pa.string() if f in text else INT_FIELDS.get(f, pa.string())) for f in fields
                      if f in NEEDED or f in text])


def iter_flow_log(source: str | Path | bytes, fields: Sequence[str] | None = None, name: str | None = None,
                  block_size: int = BLOCK_SIZE, identity: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of the needed columns of a flow-log file (or bytes of lines); InputError on bad input.
    With `identity`, also the text fields of a record's identity (`flowscan.IDENTITY_TEXT`) when the format has
    them all.

    Bad input is reported as soon as the batch holding it is read (with the file line where it can be found).
    """
    label = name or (str(source) if not isinstance(source, bytes) else "flow-log lines")
    line_numbers: list[int] = []
    if isinstance(source, bytes):
        data, line_numbers, fields = _filter_lines(source, list(fields) if fields else None, label)
        skip = 0
    else:
        path = Path(source)
        if not path.exists():
            raise InputError("flow-log file does not exist", source=label)
        header, skip, messy = _sniff(path)
        fields = fields or header
        if messy:  # comments, blank lines or a header in the middle: filter lines in Python
            data, line_numbers, fields = _filter_lines(path.read_bytes(), list(fields) if fields else None, label)
            skip = 0
        else:
            data = path
    if not fields:
        fields = _guess_default(data, label)
    fields = list(fields)
    repeated = next((f for i, f in enumerate(fields) if f in fields[:i]), None)
    if repeated:
        raise InputError("the format names a field twice", source=label, line=1, field=repeated)
    for required in ("srcaddr", "dstaddr", "srcport", "dstport"):
        if required not in fields:
            raise InputError(f"flow-log format lacks {required!r}: cannot map dependencies", source=label,
                             line=1, field=required)
    if isinstance(data, bytes) and not data:
        return
    yielded = 0
    try:
        for batch in _stream(data, fields, skip, label, line_numbers, block_size, identity):
            yielded += batch.num_rows
            yield batch
    except _RetryFiltered:
        # A comment line deep in the file: filter lines and carry on after the rows already delivered.
        filtered, line_numbers, fields = _filter_lines(Path(data).read_bytes(), fields, label)
        for batch in _stream(filtered, fields, 0, label, line_numbers, block_size, identity):
            if yielded >= batch.num_rows:
                yielded -= batch.num_rows
                continue
            yield batch.slice(yielded)
            yielded = 0


class _RetryFiltered(Exception):
    pass


def _stream(data: Path | bytes, fields: list[str], skip: int, label: str, line_numbers: list[int],
            block_size: int, identity: bool = False) -> Iterator[pa.RecordBatch]:
    schema = _schema(fields, identity)
    bad_rows: list[str] = []

    def invalid(row: Any) -> str:
        if not row.text.lstrip().startswith("#"):
            bad_rows.append(row.text)
        return "skip"

    stream = pa.BufferReader(data) if isinstance(data, bytes) else str(data)
    options = dict(
        read_options=pacsv.ReadOptions(column_names=fields, skip_rows=skip, block_size=block_size),
        parse_options=pacsv.ParseOptions(delimiter=" ", quote_char=False, invalid_row_handler=invalid),
        convert_options=pacsv.ConvertOptions(column_types=dict(zip(schema.names, schema.types, strict=True)),
                                             include_columns=schema.names, null_values=["-"],
                                             strings_can_be_null=True, check_utf8=False))
    try:
        reader = pacsv.open_csv(stream, **options)
        for batch in reader:
            if bad_rows:
                _raise_bad_rows(bad_rows, data, fields, line_numbers, label)
            yield batch
        if bad_rows:
            _raise_bad_rows(bad_rows, data, fields, line_numbers, label)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return
        if not isinstance(data, bytes) and not line_numbers:  # maybe a comment with as many fields
            raise _RetryFiltered from exc
        raise InputError(_explain(exc, fields), source=label,
                         line=_bad_line(exc, data, skip, line_numbers)) from exc


def _raise_bad_rows(bad_rows: list[str], data: Path | bytes, fields: list[str], line_numbers: list[int],
                    label: str) -> None:
    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    wanted = bad_rows[0].strip().encode()
    line = None
    for row, text in enumerate(raw.splitlines()):
        if text.strip() == wanted:
            line = line_numbers[row] if line_numbers and row < len(line_numbers) else row + 1
            break
    raise InputError(f"expected {len(fields)} space-separated fields ({len(bad_rows)} bad line(s))",
                     source=label, line=line)


def read_flow_log(source: str | Path | bytes, fields: Sequence[str] | None = None,
                  name: str | None = None) -> pa.Table:
    """The whole file as one table (small inputs and tests; the mapper streams with `iter_flow_log`)."""
    batches = list(iter_flow_log(source, fields, name))
    if batches:
        return pa.Table.from_batches(batches)
    if fields is None and not isinstance(source, bytes):
        fields, _, _ = _sniff(Path(source))
    return _schema(list(fields or DEFAULT_V2)).empty_table()


def _guess_default(data: Any, label: str) -> list[str]:
    with (io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")) as handle:
        first = handle.readline().decode("utf-8", "replace").split()
    if not first:
        return DEFAULT_V2
    if len(first) == len(DEFAULT_V2) and first[0] == "2":
        return DEFAULT_V2
    raise InputError("no header line of field names and not the default v2 format "
                     f"({len(first)} fields, version {first[0]!r})", source=label, line=1)


def _bad_line(exc: Exception, data: Any, skip: int, line_numbers: list[int]) -> int | None:
    """The file line holding the value pyarrow refused (error path only: a plain scan is fine)."""
    match = re.search(r"In CSV column #(\d+).*?invalid value '([^']*)'", str(exc))
    if not match:
        return None
    column, value = int(match.group(1)), match.group(2)
    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    for row, line in enumerate(raw.splitlines()[skip:]):
        tokens = line.decode("utf-8", "replace").split()
        if len(tokens) > column and tokens[column] == value:
            return line_numbers[row] if line_numbers and row < len(line_numbers) else row + skip + 1
    return None


def _explain(exc: Exception, fields: list[str]) -> str:
    match = re.search(r"In CSV column #(\d+).*?: (CSV conversion error to \S+: invalid value '[^']*')", str(exc))
    if match:
        return f"field {fields[int(match.group(1))]!r}: {match.group(2)}"
    return str(exc).splitlines()[0]


# ------------------------------------------------------------------------------------------------ inference


# pyarrow imports pandas the first time it converts a Python or numpy object (pa.array, pa.scalar, a Python
# value given to a compute function): arrays and scalars here are built from buffers, so the flow path never
# pays pandas' import.


def _strings(values: Sequence[str]) -> pa.Array:
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(v) for v in encoded], out=offsets[1:])
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)))


@functools.lru_cache(maxsize=64)
def _scalar(value: int | str, type_: pa.DataType) -> pa.Scalar:
    if isinstance(value, str):
        return _strings([value])[0].cast(type_)
    data = np.array([value], dtype=np.dtype(str(type_)))
    return pa.Array.from_buffers(type_, 1, [None, pa.py_buffer(data)])[0]


def _numpy(array: pa.Array) -> np.ndarray:
    """A null-free primitive array as a numpy view of its data buffer (Array.to_numpy imports pandas)."""
    if array.null_count:
        raise ValueError("nulls must be filled first")
    data = array.buffers()[1]
    if array.type == pa.bool_():
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return bits[array.offset:array.offset + len(array)].view(bool)
    return np.frombuffer(data, np.dtype(str(array.type)))[array.offset:array.offset + len(array)]


def _true(mask: pa.Array) -> np.ndarray:
    """A boolean array as numpy, nulls as False."""
    if mask.null_count:
        mask = pc.fill_null(mask, _FALSE)
    return _numpy(mask)


_FALSE = pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(np.zeros(1, np.uint8))])[0]


def _ints(batch: pa.RecordBatch, name: str, default: int) -> np.ndarray | None:
    if name not in batch.schema.names:
        return None
    column = batch.column(name)
    if column.null_count:
        column = pc.fill_null(column, _scalar(default, column.type))
    return _numpy(column)


def _equals(batch: pa.RecordBatch, name: str, value: str) -> np.ndarray | None:
    if name not in batch.schema.names:
        return None
    column = batch.column(name)
    return _true(pc.equal(column, _scalar(value, column.type)))


class _Services:
    """Address column → service code per row, through the inventory's time ranges."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.value_set = _strings(inventory.ips)
        self.missing = _scalar(-1, pa.int32())

    def codes(self, column: pa.Array, starts: np.ndarray) -> np.ndarray:
        if column.type != pa.string():
            column = column.cast(pa.string())
        index = _numpy(pc.fill_null(pc.index_in(column, value_set=self.value_set), self.missing))
        return self.inventory.lookup_index(index, starts)

    def endpoint(self, batch: pa.RecordBatch, primary: str, packet: str, starts: np.ndarray) -> np.ndarray:
        column = batch.column(primary)
        service = self.codes(column, starts)
        if packet in batch.schema.names:  # behind NAT/TGW/LB ENIs the pkt-* address is the real endpoint
            pcolumn = batch.column(packet)
            if pcolumn.type != column.type:
                pcolumn = pcolumn.cast(column.type)
            equal = pc.equal(pcolumn, column)
            same = _true(equal)
            rows = np.flatnonzero(_true(pc.is_valid(pcolumn)) & ~same)
            if len(rows):
                pservice = self.codes(pcolumn.filter(_mask(rows, len(pcolumn))), starts[rows])
                service[rows] = pservice  # the pkt-* owner, or −1 when the real endpoint is not ours
        return service


def _mask(rows: np.ndarray, length: int) -> pa.Array:
    selected = np.zeros(length, bool)
    selected[rows] = True
    return pa.Array.from_buffers(pa.bool_(), length, [None, pa.py_buffer(np.packbits(selected, bitorder="little"))])


@dataclass
class _Kept:
    """Narrow columns of the records that count, accumulated over batches."""

    src: list[np.ndarray] = field(default_factory=list)
    dst: list[np.ndarray] = field(default_factory=list)
    srcport: list[np.ndarray] = field(default_factory=list)
    dstport: list[np.ndarray] = field(default_factory=list)
    flags: list[np.ndarray] = field(default_factory=list)
    nbytes: list[np.ndarray] = field(default_factory=list)
    start: list[np.ndarray] = field(default_factory=list)
    ident: list[np.ndarray] = field(default_factory=list)  # record identities, when inputs are matched

    def keep_only(self, keep: np.ndarray) -> None:
        """Drop the records where `keep` is False (in the order the columns hold them)."""
        for name in vars(self):
            parts = getattr(self, name)
            if parts:
                parts[:] = [np.concatenate(parts)[keep]]

    def add(self, idx: np.ndarray, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            getattr(self, name).append(values[idx])

    def column(self, name: str, dtype: Any) -> np.ndarray:
        """The whole column, once: the per-batch parts are released as it is built."""
        parts = getattr(self, name)
        whole = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
        parts.clear()
        return whole


def _batches(tables: Iterable[pa.Table | pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for part in tables:
        if isinstance(part, pa.Table):
            yield from part.combine_chunks().to_batches(max_chunksize=1 << 20)
        else:
            yield part


class _Accumulator:
    """Per-batch filtering and service mapping; keeps the narrow columns of the records that count."""

    def __init__(self, inventory: Inventory, identity: bool = False) -> None:
        self.names = inventory.service_names()
        self.n_services = max(1, len(self.names))
        self.services = _Services(inventory)
        self.stats = {"records": 0, "rejected": 0, "nodata": 0, "impossible": 0, "not_tcp_udp": 0,
                      "outside_inventory": 0, "same_service": 0, "duplicates": 0, "used": 0}
        self.kept = _Kept()
        self.blocked: list[np.ndarray] = []
        self.warnings: list[str] = []  # about the input itself (a cut-off gzip file)
        self.identity = identity  # keep each record's identity, to match it with other inputs'
        self.seen: list[np.ndarray] = []  # identities of every record read (kept or not)
        self.identity_missing: list[str] = []  # identity fields the input's format lacks
        self.richness = 0  # 2 with tcp-flags, +1 with pkt-* addresses: which copy of a shared record to use

    def note_format(self, fields: Sequence[str]) -> None:
        self.richness = max(self.richness, 2 * ("tcp-flags" in fields)
                            + ("pkt-srcaddr" in fields or "pkt-dstaddr" in fields))
        if self.identity:
            self.identity_missing = identity_fields_missing(fields)

    def _identity(self, batch: pa.RecordBatch) -> np.ndarray | None:
        """Per record, its identity (as the fast reader computes it), or None when the format lacks a field."""
        names = batch.schema.names
        if self.identity_missing or not all(name in names for name in IDENTITY_TEXT):
            return None
        hashes = np.full(batch.num_rows, FNV_OFFSET, np.uint64)
        for name in IDENTITY_TEXT:
            column = batch.column(name)
            if column.type != pa.string():
                column = column.cast(pa.string())
            _, offsets, data = column.buffers()
            offsets_array = np.frombuffer(offsets, np.int32)[column.offset:column.offset + len(column) + 1]
            data_array = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
            fold_text_column(hashes, data_array, offsets_array, _true(pc.is_valid(column)))
        defaults = {"srcport": -1, "dstport": -1, "protocol": -1, "bytes": 0, "start": 0}  # as `add` fills them
        return mix_identity(hashes, [_ints(batch, name, defaults[name]) for name in IDENTITY_INTS])  # type: ignore

    def add(self, batch: pa.RecordBatch) -> None:
        stats, n = self.stats, batch.num_rows
        stats["records"] += n
        if n == 0:
            return
        self.note_format(batch.schema.names)
        identity = self._identity(batch) if self.identity else None
        if identity is not None:
            self.seen.append(identity)
        starts = _ints(batch, "start", 0)
        starts = np.zeros(n, dtype=np.int64) if starts is None else starts.astype(np.int64, copy=False)
        keep = np.ones(n, dtype=bool)
        if "log-status" in batch.schema.names:  # NODATA/SKIPDATA (a missing status is not held against a record)
            status = batch.column("log-status")
            nodata = _true(pc.not_equal(status, _scalar("OK", status.type)))
            stats["nodata"] += int(nodata.sum())
            keep &= ~nodata
        # Port 99999 or negative bytes: no real record holds them, and a clipped port would orient an edge.
        impossible = np.zeros(n, dtype=bool)
        for name, low, high in IMPOSSIBLE:
            values = _ints(batch, name, 0)
            if values is not None:
                impossible |= (values < low) | (values > high)
        narrow(keep, ~impossible, stats, "impossible")
        protocol = _ints(batch, "protocol", -1)
        if protocol is not None:
            narrow(keep, (protocol == 6) | (protocol == 17), stats, "not_tcp_udp")
        src = self.services.endpoint(batch, "srcaddr", "pkt-srcaddr", starts)
        dst = self.services.endpoint(batch, "dstaddr", "pkt-dstaddr", starts)
        narrow(keep, (src >= 0) & (dst >= 0), stats, "outside_inventory")
        narrow(keep, src != dst, stats, "same_service")
        dstport = _ints(batch, "dstport", -1)
        reject = _equals(batch, "action", "REJECT")
        if reject is not None:
            blocked = np.flatnonzero(keep & reject)
            stats["rejected"] += len(blocked)
            if len(blocked):
                port = np.clip(dstport[blocked], 0, 65535).astype(np.int64)  # type: ignore[index]
                self.blocked.append((src[blocked].astype(np.int64) * self.n_services + dst[blocked]) * 65536 + port)
        accept = _equals(batch, "action", "ACCEPT")
        if accept is not None:
            keep &= accept
        idx = np.flatnonzero(keep)
        flags = _ints(batch, "tcp-flags", 0)
        nbytes = _ints(batch, "bytes", 0)
        extra = {"ident": identity} if identity is not None else {}
        self.kept.add(idx, src=src, dst=dst, srcport=_ints(batch, "srcport", -1), dstport=dstport,  # type: ignore
                      flags=flags if flags is not None else np.zeros(n, np.int16),
                      nbytes=nbytes if nbytes is not None else np.zeros(n, np.int64), start=starts, **extra)

    def absorb_partial(self, partial: Partial) -> None:
        for key, value in partial.stats.items():
            self.stats[key] += value
        for name, parts in partial.columns.items():
            getattr(self.kept, name).extend(parts)
        self.blocked += partial.blocked
        self.seen += partial.seen

    def absorb(self, other: _Accumulator) -> None:
        for key, value in other.stats.items():
            self.stats[key] += value
        for name in vars(self.kept):
            getattr(self.kept, name).extend(getattr(other.kept, name))
        self.blocked += other.blocked

    def finish(self, options: FlowOptions) -> FlowResult:
        names, n_services, stats = self.names, self.n_services, dict(self.stats)
        src, dst = self.kept.column("src", np.int32), self.kept.column("dst", np.int32)
        stats["used"] = len(src)
        references = _orient_and_aggregate(self.kept, src, dst, names, n_services, options)
        observed_codes = np.flatnonzero(np.bincount(src, minlength=n_services)
                                        + np.bincount(dst, minlength=n_services))
        observed = {names[i] for i in observed_codes} if len(src) else set()
        rejected = []
        if self.blocked:
            codes, counts = np.unique(np.concatenate(self.blocked), return_counts=True)
            for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
                port, pair = code % 65536, code // 65536
                rejected.append(Reference(names[pair // n_services], names[pair % n_services], port, "flow",
                                          f"REJECTed flows to port {port}", kind="flow", count=count,
                                          extra={"rejected": True, "strength": 0.0}))
        return FlowResult(references, observed, stats, rejected)


IMPOSSIBLE = (("srcport", -1, 65535), ("dstport", -1, 65535), ("bytes", 0, 1 << 62), ("start", 0, 1 << 62))  # -1: "-" (no value)


def infer_flow_edges(tables: Iterable[pa.Table | pa.RecordBatch], inventory: Inventory,
                     options: FlowOptions | None = None) -> FlowResult:
    """Oriented, thresholded service→service references from flow-log tables or record batches."""
    accumulator = _Accumulator(inventory)
    for batch in _batches(tables):
        accumulator.add(batch)
    result = accumulator.finish(options or FlowOptions())
    if result.stats["impossible"]:
        result.warnings.append(f"flow-log records: {result.stats['impossible']} with a port outside 0–65535 or "
                               "negative bytes or start skipped")
    return result


def infer_flow_files(paths: Sequence[str | Path], inventory: Inventory, options: FlowOptions | None = None,
                     workers: int | None = None) -> FlowResult:
    """`infer_flow_edges` over flow-log files, read by the fast reader (`flowscan`; a large file in parallel
    byte ranges, `workers` threads) or, for what it cannot vouch for, the exact reader.

    A record found in more than one file (the same flow logged by a v5 and a v2 flow log, a file given twice)
    counts once, from the file whose format says most about it (tcp-flags, pkt-* addresses): counted twice, its
    default-format copy, oriented by weaker rules, made phantom reversed edges."""
    workers = workers or min(4, len(os.sched_getaffinity(0)))
    identity = len(paths) > 1
    accumulator = _Accumulator(inventory)
    warnings: list[str] = []
    parts = []
    for path in paths:
        part = _scan_file(Path(path), inventory, workers, identity)
        warnings += part.warnings
        if part.stats["impossible"]:
            warnings.append(f"{path}: {part.stats['impossible']} flow record(s) with a port outside 0–65535 or "
                            "negative bytes or start skipped")
        parts.append(part)
    if identity:
        warnings += _count_shared_records_once(parts, [str(p) for p in paths])
    for part in parts:
        accumulator.absorb(part)
    result = accumulator.finish(options or FlowOptions())
    result.warnings += warnings
    return result


def _count_shared_records_once(parts: list[_Accumulator], labels: list[str]) -> list[str]:
    """Drop from each input the records an input read before it also holds (richest format first, then in the
    given order); the warnings say how many and where they were counted instead."""
    warnings = []
    order = sorted(range(len(parts)), key=lambda i: (-parts[i].richness, i))
    before: list[tuple[int, np.ndarray]] = []  # (input, sorted identities of all its records)
    union = np.zeros(0, np.uint64)
    for i in order:
        part = parts[i]
        if part.identity_missing:
            warnings.append(f"{labels[i]}: its flow-log format lacks {', '.join(part.identity_missing)}: its "
                            "records cannot be matched with the other flow-log inputs' (a flow logged in two "
                            "of them counts twice)")
            continue
        ident = np.concatenate(part.kept.ident) if part.kept.ident else np.zeros(0, np.uint64)
        if len(union) and len(ident):
            shared = _members(ident, union)
            if shared.any():
                part.kept.keep_only(~shared)
                part.stats["duplicates"] += int(shared.sum())
                sources = [labels[j] for j, seen in before if _members(ident[shared], seen).any()]
                warnings.append(f"{labels[i]}: {int(shared.sum())} flow record(s) also read from "
                                f"{', '.join(sources)} counted once, from there (the same flow in two logs)")
        part.kept.ident.clear()
        seen = np.unique(np.concatenate(part.seen)) if part.seen else np.zeros(0, np.uint64)
        part.seen.clear()
        before.append((i, seen))
        union = np.union1d(union, seen)
    return warnings


def _members(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """values ∈ sorted_unique, elementwise (a binary search: the sets are large)."""
    at = np.searchsorted(sorted_unique, values)
    return sorted_unique[np.minimum(at, len(sorted_unique) - 1)] == values


def _scan_file(path: Path, inventory: Inventory, workers: int, identity: bool = False) -> _Accumulator:
    accumulator = _Accumulator(inventory, identity)
    if path.is_dir():
        raise InputError("is a folder, not a flow-log file", source=str(path))
    try:
        with open(path, "rb") as handle:
            magic = handle.read(2)
    except FileNotFoundError:
        magic = b""  # the exact reader says it does not exist
    except OSError as exc:
        raise InputError(f"flow-log file not readable: {exc.strerror or exc}", source=str(path)) from exc
    if magic == MAGIC:  # gzip, as flow logs are delivered to S3
        unpacked = read_gzip(path, "flow-log file")
        if unpacked.warning:
            accumulator.warnings.append(unpacked.warning)
        for batch in iter_flow_log(unpacked.data, name=str(path), identity=identity):
            accumulator.add(batch)
        return accumulator
    if path.is_file():
        header, skip, messy = _sniff(path)
        fields = header or _fast_default(path)
        if not messy and fields and all(f in fields for f in ("srcaddr", "dstaddr", "srcport", "dstport")):
            try:
                accumulator.note_format(fields)
                for partial in scan_file(path, fields, _line_offset(path, skip), inventory, workers, identity):
                    accumulator.absorb_partial(partial)
                return accumulator
            except NeedsExactReader:  # comments, bad lines…: the exact reader copes, or says which line
                accumulator = _Accumulator(inventory, identity)
    for batch in iter_flow_log(path, identity=identity):
        accumulator.add(batch)
    return accumulator


def _fast_default(path: Path) -> list[str] | None:
    """The default v2 fields for a headerless file that starts like one (anything else: the exact reader)."""
    try:
        return _guess_default(path, str(path))
    except InputError:
        return None


def _line_offset(path: Path, lines: int) -> int:
    """Byte offset of the start of line `lines` + 1 (after a header)."""
    offset = 0
    with open(path, "rb") as handle:
        for _ in range(lines):
            offset += len(handle.readline())
    return offset


class _EndpointSet:
    """A set of (service, port) endpoint keys: a bitmap when the key space is small, else sorted keys."""

    def __init__(self, size: int) -> None:
        self.dense = np.zeros(size, bool) if size <= DENSE_LIMIT else None
        self.sparse: list[np.ndarray] = []

    def add(self, keys: np.ndarray) -> None:
        if self.dense is not None:
            self.dense[keys] = True
        else:
            self.sparse.append(np.unique(keys))

    def contains(self, keys: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.dense[keys]
        members = np.unique(np.concatenate(self.sparse)) if self.sparse else np.zeros(0, np.int64)
        self.sparse = [members]
        return np.isin(keys, members)


def _orient_and_aggregate(kept: _Kept, src: np.ndarray, dst: np.ndarray, names: list[str], n_services: int,
                          options: FlowOptions) -> list[Reference]:
    if not len(src):
        return []
    code_of = {name: i for i, name in enumerate(names)}
    configured = np.array([code_of[name] * 65536 + port for name, ports in options.listen_ports.items()
                           if name in code_of for port in ports if 0 <= port < 65536], np.int64)
    keys = edge_keys(src, dst, kept.column("srcport", np.int32), kept.column("dstport", np.int32),
                     kept.column("flags", np.int16), n_services, configured)
    start = kept.column("start", np.int64)
    edge_id, edge_key, records, total_bytes, first, last = aggregate_edges(keys, kept.column("nbytes", np.int64),
                                                                           start)
    del keys
    windows = _distinct_windows(edge_id, start, max(1, options.window_seconds), len(edge_key))
    references: list[Reference] = []
    for i in np.argsort(edge_key).tolist():  # by (caller, callee, port)
        pair, port_value = divmod(int(edge_key[i]), 65536)
        caller_name, callee_name = names[pair // n_services], names[pair % n_services]
        window_count, byte_count = int(windows[i]), int(total_bytes[i])
        strong = window_count >= options.min_windows and byte_count >= options.min_bytes
        strength = min(0.97, 0.55 + 0.07 * window_count) if strong else 0.2
        references.append(Reference(
            caller_name, callee_name, port_value, "flow",
            f"VPC flow logs to port {port_value}", kind="flow", first_seen=float(first[i]),
            last_seen=float(last[i]), count=int(records[i]),
            extra={"strength": strength, "windows": window_count, "bytes": byte_count, "port": port_value}))
    return references


def edge_keys(src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray, flags: np.ndarray,
              n_services: int, configured: np.ndarray, dense: bool | None = None) -> np.ndarray:
    """Per record, its oriented edge key (caller·n + callee)·65536 + port.

    Caller direction, strongest signal first: tcp-flags, then listening endpoints (configured or SYN-proven, then
    reached from at least LISTEN_MIN_PEERS distinct peer endpoints), then the ephemeral range, then the endpoint
    with more distinct peers, then the lower port as the server's. Compiled over dense (service, port) tables
    when they are small (up to 256 services); numpy over sorted endpoint keys beyond (`dense` forces either).
    """
    if dense if dense is not None else n_services * 65536 <= DENSE_LIMIT:
        return orient_records(src, dst, sport, dport, flags, n_services, configured, LISTEN_MIN_PEERS,
                              EPHEMERAL_LOW)
    src, dst = src.astype(np.int64, copy=False), dst.astype(np.int64, copy=False)
    sport, dport = sport.astype(np.int64), dport.astype(np.int64)
    caller_is_src = np.full(len(src), -1, dtype=np.int8)
    syn = (flags & 2) != 0
    ack = (flags & 16) != 0
    caller_is_src[syn & ~ack] = 1
    caller_is_src[syn & ack] = 0
    del syn, ack
    src_key = src * 65536 + np.clip(sport, 0, 65535)
    dst_key = dst * 65536 + np.clip(dport, 0, 65535)
    listening = _EndpointSet(n_services * 65536)
    known = _EndpointSet(n_services * 65536)  # configured or SYN-proven: before ones with many peers
    peer_keys, peer_count = peer_counts(src_key, dst_key, n_services * 65536)
    listening.add(peer_keys[peer_count >= LISTEN_MIN_PEERS])
    for proven in (configured, dst_key[caller_is_src == 1], src_key[caller_is_src == 0]):
        if len(proven):
            listening.add(proven)
            known.add(proven)
    unknown = caller_is_src < 0
    if unknown.any():
        rows = np.flatnonzero(unknown)
        src_known, dst_known = known.contains(src_key[rows]), known.contains(dst_key[rows])
        src_listen = listening.contains(src_key[rows])
        dst_listen = listening.contains(dst_key[rows])
        decided = np.full(len(rows), -1, np.int8)
        by_known = src_known != dst_known
        decided[by_known] = dst_known[by_known]
        by_listen = (decided < 0) & (src_listen != dst_listen)
        decided[by_listen] = dst_listen[by_listen]
        sp, dp = sport[rows], dport[rows]
        src_eph, dst_eph = sp >= EPHEMERAL_LOW, dp >= EPHEMERAL_LOW
        by_range = (decided < 0) & (src_eph != dst_eph)
        decided[by_range] = src_eph[by_range]
        tie = np.flatnonzero(decided < 0)  # then more distinct peers, then the lower port, is the server's
        src_peers = peer_count[np.searchsorted(peer_keys, src_key[rows[tie]])]  # every endpoint is in peer_keys
        dst_peers = peer_count[np.searchsorted(peer_keys, dst_key[rows[tie]])]
        decided[tie] = np.where(src_peers != dst_peers, dst_peers > src_peers, sp[tie] > dp[tie])
        caller_is_src[rows] = decided
    from_src = caller_is_src == 1
    pair = np.where(from_src, src * n_services + dst, dst * n_services + src)
    return pair * 65536 + np.clip(np.where(from_src, dport, sport), 0, 65535)


def peer_counts(src_key: np.ndarray, dst_key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The endpoints of the records (sorted) and how many distinct peer endpoints each exchanged records with:
    `flowscan.distinct_peer_counts` through sorting, for endpoint spaces too large for dense tables."""
    low, high = np.minimum(src_key, dst_key), np.maximum(src_key, dst_key)
    if size <= PACKED_PAIR_LIMIT:
        pairs = np.unique(low * size + high)
        ends = np.concatenate([pairs // size, pairs % size])
    else:  # pairs no longer fit one int64: sort on both columns
        order = np.lexsort((high, low))
        low, high = low[order], high[order]
        first = np.ones(len(low), bool)
        first[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1])
        ends = np.concatenate([low[first], high[first]])
    return np.unique(ends, return_counts=True)


def _distinct_windows(edge_id: np.ndarray, start: np.ndarray, window_seconds: int, n_edges: int) -> np.ndarray:
    counts = distinct_windows(edge_id, start, window_seconds, n_edges, DENSE_LIMIT * 4)
    if len(counts) == n_edges:
        return counts
    window = start // window_seconds  # many edges over a long span: count distinct (edge, window) cells by sorting
    low = int(window.min())
    span = int(window.max()) - low + 1
    return np.bincount(np.unique(edge_id.astype(np.int64) * span + (window - low)) // span, minlength=n_edges)
