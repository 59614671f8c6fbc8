"""AWS VPC flow logs (any version 2–7) → service→service references, vectorized end to end.

Reading: pyarrow's multithreaded CSV reader, only the needed columns, addresses dictionary-encoded, so per-row
work is integer arithmetic on numpy arrays. The format comes from a header line of field names (custom format),
a ``# format:`` comment, an explicit LogFormat (``${version} ${srcaddr} …`` from describe_flow_logs), or the
default v2 order.

Caller direction, strongest signal first: tcp-flags (SYN without ACK = caller; SYN-ACK = callee), then
listening-port detection (ports the configuration says a service listens on, or (service, port) endpoints seen
in many records), then the ephemeral range (32768–60999 Linux, 49152+ Windows) / lower-port-is-server.
The two ENI-side copies of a record and the response direction fold into the same oriented edge; an edge's
support is counted in distinct aggregation windows and bytes. REJECT, NODATA/SKIPDATA, non-TCP/UDP and
addresses outside the time-ranged inventory are excluded (counted in the stats).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

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
NEEDED = {"srcaddr", "dstaddr", "srcport", "dstport", "protocol", "bytes", "start", "end", "action", "log-status",
          "tcp-flags", "pkt-srcaddr", "pkt-dstaddr"}
INT_FIELDS = {"srcport": pa.int32(), "dstport": pa.int32(), "protocol": pa.int16(), "bytes": pa.int64(),
              "start": pa.int64(), "end": pa.int64(), "tcp-flags": pa.int16()}
DICT_STR = pa.dictionary(pa.int32(), pa.string())
EPHEMERAL_LOW = 32768
LISTEN_MIN_RECORDS = 8  # a (service, port) endpoint in this many records is taken as listening


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


def parse_log_format(log_format: str) -> list[str]:
    """``${version} ${srcaddr} …`` (EC2 describe_flow_logs LogFormat) → field names."""
    fields = re.findall(r"\$\{([a-z0-9-]+)\}", log_format)
    if not fields:
        raise InputError(f"not a flow-log LogFormat: {log_format!r}", field="LogFormat")
    return fields


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
        head = handle.read(1 << 16).decode("utf-8", "replace").splitlines()
        size = handle.seek(0, 2)
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
    messy = any(line.lstrip().startswith("#") for line in head[skip:skip + 50]) or not size
    return fields, skip, messy


def read_flow_log(source: str | Path | bytes, fields: Sequence[str] | None = None,
                  name: str | None = None) -> pa.Table:
    """Only the needed columns of a flow-log file (or bytes of lines), typed; raises InputError on bad input."""
    label = name or (str(source) if not isinstance(source, bytes) else "flow-log lines")
    skip = 0
    messy = True
    if isinstance(source, bytes):
        data: Any = source
    else:
        path = Path(source)
        if not path.exists():
            raise InputError("flow-log file does not exist", source=label)
        header, skip, messy = _sniff(path)
        fields = fields or header
        data = path
    if messy:  # comments, blank lines or a header in the middle: filter lines in Python (small files)
        raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        kept: list[bytes] = []
        line_numbers: list[int] = []
        for number, line in enumerate(raw.splitlines(), start=1):
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
        data, skip = b"\n".join(kept) + b"\n", 0
    else:
        line_numbers = []
    if not fields:
        fields = _guess_default(data, label)
    fields = list(fields)
    for required in ("srcaddr", "dstaddr", "srcport", "dstport"):
        if required not in fields:
            raise InputError(f"flow-log format lacks {required!r}: cannot map dependencies", source=label,
                             line=1, field=required)
    include = [f for f in fields if f in NEEDED]
    types = {f: INT_FIELDS.get(f, DICT_STR) for f in include}
    bad_rows: list[str] = []

    def invalid(row: Any) -> str:
        if not row.text.lstrip().startswith("#"):
            bad_rows.append(row.text)
        return "skip"

    stream = pa.BufferReader(data) if isinstance(data, bytes) else str(data)
    try:
        table = pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=fields, skip_rows=skip, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=" ", quote_char=False, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=include,
                                                 null_values=["-"], strings_can_be_null=True))
    except pa.ArrowInvalid as exc:
        if not messy and not isinstance(source, bytes):  # maybe a comment with as many fields: filter lines
            return read_flow_log(Path(data).read_bytes(), fields, label)
        raise InputError(_explain(exc, data, fields, skip, line_numbers), source=label,
                         line=_bad_line(exc, data, fields, skip, line_numbers)) from exc
    if bad_rows:
        raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        lines = [x.strip() for x in raw.splitlines()]
        row = lines.index(bad_rows[0].strip().encode()) if bad_rows[0].strip().encode() in lines else None
        line = None if row is None else (line_numbers[row] if line_numbers and row < len(line_numbers) else row + 1)
        raise InputError(f"expected {len(fields)} space-separated fields ({len(bad_rows)} bad line(s))",
                         source=label, line=line)
    return table


def _guess_default(data: Any, label: str) -> list[str]:
    with (io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")) as handle:
        first = handle.readline().decode("utf-8", "replace").split()
    if not first:
        return DEFAULT_V2
    if len(first) == len(DEFAULT_V2) and first[0] == "2":
        return DEFAULT_V2
    raise InputError("no header line of field names and not the default v2 format "
                     f"({len(first)} fields, version {first[0]!r})", source=label, line=1)


def _bad_line(exc: Exception, data: Any, fields: list[str], skip: int, line_numbers: list[int]) -> int | None:
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


def _explain(exc: Exception, data: Any, fields: list[str], skip: int, line_numbers: list[int]) -> str:
    match = re.search(r"In CSV column #(\d+).*?: (CSV conversion error to \S+: invalid value '[^']*')", str(exc))
    if match:
        return f"field {fields[int(match.group(1))]!r}: {match.group(2)}"
    return str(exc).splitlines()[0]


# ------------------------------------------------------------------------------------------------ inference


def _column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    return table.column(name) if name in table.column_names else None


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(dictionary values, per-row int codes with −1 for nulls) of a dictionary column."""
    combined = column.unify_dictionaries().combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(combined, pa.ChunkedArray):
        combined = combined.combine_chunks()
    values = combined.dictionary.to_numpy(zero_copy_only=False)
    codes = combined.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return values, codes


def _ints(table: pa.Table, name: str, default: int = -1) -> np.ndarray | None:
    column = _column(table, name)
    if column is None:
        return None
    return column.combine_chunks().fill_null(default).to_numpy(zero_copy_only=False)


def _equals(table: pa.Table, name: str, value: str) -> np.ndarray | None:
    column = _column(table, name)
    if column is None:
        return None
    values, codes = _codes(column)
    hits = np.flatnonzero(values == value)
    return np.isin(codes, hits) if len(hits) != 1 else codes == hits[0]


def _endpoint_service(table: pa.Table, primary: str, packet: str, inventory: Inventory,
                      starts: np.ndarray) -> np.ndarray:
    values, codes = _codes(table.column(primary))
    service = inventory.lookup(values, codes, starts)
    if packet in table.column_names:  # behind NAT/TGW/LB ENIs the pkt-* address is the real endpoint
        pvalues, pcodes = _codes(table.column(packet))
        differs = pcodes >= 0
        if differs.any():
            pservice = inventory.lookup(pvalues, pcodes, starts)
            service = np.where(differs & (pservice >= 0), pservice, np.where(differs, -1, service))
    return service


def infer_flow_edges(tables: Iterable[pa.Table], inventory: Inventory, options: FlowOptions | None = None,
                     ) -> FlowResult:
    """Oriented, thresholded service→service references from flow-log tables."""
    options = options or FlowOptions()
    names = inventory.service_names()
    n_services = max(1, len(names))
    parts: list[pd.DataFrame] = []
    stats = {"records": 0, "rejected": 0, "nodata": 0, "not_tcp_udp": 0, "outside_inventory": 0,
             "same_service": 0, "used": 0}
    rejected_parts: list[pd.DataFrame] = []
    for table in tables:
        n = table.num_rows
        stats["records"] += n
        if n == 0:
            continue
        starts = _ints(table, "start", 0)
        starts = np.zeros(n, dtype=np.int64) if starts is None else starts
        keep = np.ones(n, dtype=bool)
        status_ok = _equals(table, "log-status", "OK")
        if status_ok is not None:
            nodata = ~status_ok & (pc.is_valid(table.column("log-status")).to_numpy(zero_copy_only=False))
            stats["nodata"] += int(nodata.sum())
            keep &= ~nodata
        accept = _equals(table, "action", "ACCEPT")
        reject = _equals(table, "action", "REJECT")
        protocol = _ints(table, "protocol", -1)
        if protocol is not None:
            tcp_udp = (protocol == 6) | (protocol == 17)
            stats["not_tcp_udp"] += int((keep & ~tcp_udp).sum())
            keep &= tcp_udp
        src = _endpoint_service(table, "srcaddr", "pkt-srcaddr", inventory, starts)
        dst = _endpoint_service(table, "dstaddr", "pkt-dstaddr", inventory, starts)
        mapped = (src >= 0) & (dst >= 0)
        stats["outside_inventory"] += int((keep & ~mapped).sum())
        keep &= mapped
        same = src == dst
        stats["same_service"] += int((keep & same).sum())
        keep &= ~same
        srcport = _ints(table, "srcport", -1)
        dstport = _ints(table, "dstport", -1)
        flags = _ints(table, "tcp-flags", 0)
        nbytes = _ints(table, "bytes", 0)
        nbytes = np.zeros(n, dtype=np.int64) if nbytes is None else nbytes
        if reject is not None:
            blocked = keep & reject
            stats["rejected"] += int(blocked.sum())
            if blocked.any():
                rejected_parts.append(pd.DataFrame({"caller": src[blocked], "callee": dst[blocked],
                                                    "port": dstport[blocked]}))  # type: ignore[index]
        if accept is not None:
            keep &= accept
        idx = np.flatnonzero(keep)
        parts.append(pd.DataFrame({
            "src": src[idx], "dst": dst[idx], "srcport": srcport[idx], "dstport": dstport[idx],  # type: ignore
            "flags": flags[idx] if flags is not None else np.zeros(len(idx), np.int16),
            "bytes": nbytes[idx], "start": starts[idx]}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["src", "dst", "srcport", "dstport", "flags", "bytes", "start"])
    stats["used"] = len(frame)
    references = _orient_and_aggregate(frame, names, n_services, options)
    observed = {names[i] for i in np.unique(np.concatenate([frame["src"].to_numpy(), frame["dst"].to_numpy()]))
                if i >= 0} if len(frame) else set()
    rejected = []
    if rejected_parts:
        blocked = pd.concat(rejected_parts).value_counts().reset_index(name="count")
        rejected = [Reference(names[r.caller], names[r.callee], int(r.port), "flow",
                              f"REJECTed flows to port {int(r.port)}", kind="flow", count=int(r.count),
                              extra={"rejected": True, "strength": 0.0})
                    for r in blocked.itertuples()]
    return FlowResult(references, observed, stats, rejected)


def _orient_and_aggregate(frame: pd.DataFrame, names: list[str], n_services: int,
                          options: FlowOptions) -> list[Reference]:
    if frame.empty:
        return []
    src = frame["src"].to_numpy(np.int64)
    dst = frame["dst"].to_numpy(np.int64)
    sport = frame["srcport"].to_numpy(np.int64)
    dport = frame["dstport"].to_numpy(np.int64)
    flags = frame["flags"].to_numpy(np.int64)
    caller_is_src = np.full(len(frame), -1, dtype=np.int8)
    syn = (flags & 2) != 0
    ack = (flags & 16) != 0
    caller_is_src[syn & ~ack] = 1
    caller_is_src[syn & ack] = 0

    # Listening endpoints per (service, port): configured ports, SYN-proven ones, and busy endpoints.
    src_key = src * 65536 + np.clip(sport, 0, 65535)
    dst_key = dst * 65536 + np.clip(dport, 0, 65535)
    size = n_services * 65536
    counts = np.bincount(src_key, minlength=size) + np.bincount(dst_key, minlength=size)
    listening = counts >= LISTEN_MIN_RECORDS
    for name, ports in options.listen_ports.items():
        if name in names:
            code = names.index(name)
            for port in ports:
                if 0 <= port < 65536:
                    listening[code * 65536 + port] = True
    listening[dst_key[caller_is_src == 1]] = True
    listening[src_key[caller_is_src == 0]] = True
    unknown = caller_is_src < 0
    src_listen = listening[src_key]
    dst_listen = listening[dst_key]
    by_listen = unknown & (src_listen != dst_listen)
    caller_is_src[by_listen] = dst_listen[by_listen].astype(np.int8)
    unknown = caller_is_src < 0
    src_eph = sport >= EPHEMERAL_LOW
    dst_eph = dport >= EPHEMERAL_LOW
    by_range = unknown & (src_eph != dst_eph)
    caller_is_src[by_range] = src_eph[by_range].astype(np.int8)
    unknown = caller_is_src < 0
    caller_is_src[unknown] = (sport[unknown] > dport[unknown]).astype(np.int8)

    from_src = caller_is_src == 1
    caller = np.where(from_src, src, dst)
    callee = np.where(from_src, dst, src)
    port = np.where(from_src, dport, sport)
    window = frame["start"].to_numpy(np.int64) // max(1, options.window_seconds)
    edge = (caller * n_services + callee) * 65536 + port
    grouped = pd.DataFrame({"edge": edge, "window": window, "bytes": frame["bytes"].to_numpy(),
                            "start": frame["start"].to_numpy()})
    agg = grouped.groupby("edge", sort=False).agg(records=("bytes", "size"), bytes=("bytes", "sum"),
                                                  first=("start", "min"), last=("start", "max"))
    agg["windows"] = grouped.drop_duplicates(["edge", "window"]).groupby("edge", sort=False).size()
    references: list[Reference] = []
    for code, row in agg.iterrows():
        code = int(code)  # type: ignore[call-overload]
        port_value = code % 65536
        pair = code // 65536
        caller_name, callee_name = names[pair // n_services], names[pair % n_services]
        windows, total = int(row["windows"]), int(row["bytes"])
        strong = windows >= options.min_windows and total >= options.min_bytes
        strength = min(0.97, 0.55 + 0.07 * windows) if strong else 0.2
        references.append(Reference(
            caller_name, callee_name, port_value, "flow",
            f"VPC flow logs to port {port_value}", kind="flow", first_seen=float(row["first"]),
            last_seen=float(row["last"]), count=int(row["records"]),
            extra={"strength": strength, "windows": windows, "bytes": total, "port": port_value}))
    return references

