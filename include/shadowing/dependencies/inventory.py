"""Time-ranged IP → service inventory (addresses are reused: ownership is looked up as of the flow's start).

CSV columns: `ip,service` and optionally `valid_from,valid_to` (ISO-8601 or epoch seconds; empty = open) and
`kind` (`service` default; `load_balancer`/`external` rows are known but never become nodes or edges).

Plain csv + numpy (no pandas): an inventory is small, and the flow path should not pay pandas' import.
"""

from __future__ import annotations

import csv
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shadowing.errors import InputError

OPEN_START = 0
OPEN_END = (1 << 33) - 1  # epoch seconds fit below 2^33 until the year 2242
IGNORED_KINDS = {"load_balancer", "lb", "external", "nat", "health_check"}


@dataclass(frozen=True)
class InventoryRow:
    ip: str
    service: str
    valid_from: int
    valid_to: int
    kind: str = "service"


class Inventory:
    """Intervals [valid_from, valid_to) of ip → service, sorted by (ip, valid_from) for vectorised look-ups."""

    def __init__(self, rows: Iterable[InventoryRow]) -> None:
        self.rows = list(rows)
        self._names = sorted({r.service for r in self.rows})
        code_of = {name: i for i, name in enumerate(self._names)}
        self.ips = sorted({r.ip for r in self.rows})  # distinct addresses; flow look-ups index into this
        self.ip_index = {ip: i for i, ip in enumerate(self.ips)}
        ordered = sorted(self.rows, key=lambda r: (self.ip_index[r.ip], r.valid_from))
        ip_id = np.fromiter((self.ip_index[r.ip] for r in ordered), np.int64, len(ordered))
        self._keys = (ip_id << 33) | np.fromiter((r.valid_from for r in ordered), np.int64, len(ordered))
        self._ip_sorted = ip_id
        self._valid_to = np.fromiter((r.valid_to for r in ordered), np.int64, len(ordered))
        self._code = np.fromiter((-1 if r.kind in IGNORED_KINDS else code_of[r.service] for r in ordered),
                                 np.int32, len(ordered))
        # Per address (plus a last sentinel entry that index −1 lands on): its interval when it has one, so
        # the common case is three gathers and two compares; reused addresses go through searchsorted.
        n_ips = len(self.ips)
        intervals = np.bincount(ip_id, minlength=n_ips)
        first = np.searchsorted(ip_id, np.arange(n_ips))
        self._multi = np.append(intervals > 1, False)
        self._any_multi = bool(self._multi.any())
        self._ip_from = np.append(self._keys[first] & ((1 << 33) - 1), OPEN_END) if n_ips else np.array([OPEN_END])
        self._ip_to = np.append(self._valid_to[first], 0) if n_ips else np.array([0])
        self._ip_code = np.append(self._code[first], -1).astype(np.int32) if n_ips else np.array([-1], np.int32)

    @property
    def services(self) -> list[str]:
        return sorted({r.service for r in self.rows if r.kind not in IGNORED_KINDS})

    def __len__(self) -> int:
        return len(self.rows)

    def service_names(self) -> list[str]:
        """Every service name (codes returned by the look-ups index into this list)."""
        return list(self._names)

    def lookup_index(self, ip_index: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Service code per flow from its address's index in `ips` (−1 = not in the inventory), as of `starts`.

        −1 when the address is unknown, not owned at that time, or owned by an ignored kind (load balancer …).
        """
        if not len(self._keys):
            return np.full(len(ip_index), -1, np.int32)
        starts = np.asarray(starts)
        if len(starts) and starts.min() < 0:
            starts = np.maximum(starts, 0)
        owned = (starts >= self._ip_from[ip_index]) & (starts < self._ip_to[ip_index])
        codes = np.where(owned, self._ip_code[ip_index], np.int32(-1))
        if self._any_multi:
            rows = np.flatnonzero(self._multi[ip_index])
            if len(rows):
                codes[rows] = self._search(np.asarray(ip_index[rows], np.int64), starts[rows])
        return codes

    def _search(self, ip_index: np.ndarray, starts: np.ndarray) -> np.ndarray:
        starts = starts.astype(np.int64, copy=False)
        query = (ip_index << 33) | np.clip(starts, 0, OPEN_END)
        pos = np.searchsorted(self._keys, query, side="right") - 1
        ok = (ip_index >= 0) & (pos >= 0)
        pos = np.clip(pos, 0, None)
        ok &= (self._ip_sorted[pos] == ip_index) & (starts < self._valid_to[pos])
        return np.where(ok, self._code[pos], -1).astype(np.int32)

    def lookup(self, ips: Iterable[str], starts: np.ndarray) -> np.ndarray:
        """Service code per (address string, start)."""
        index = np.fromiter((self.ip_index.get(ip, -1) for ip in ips), np.int64)
        return self.lookup_index(index, starts)

    def lookup_one(self, ip: str, at: float) -> str | None:
        code = self.lookup([ip], np.array([int(at)]))[0]
        return None if code < 0 else self._names[code]


def _parse_time(value: str, source: str, line: int, column: str, default: int) -> int:
    text = value.strip()
    if not text:
        return default
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"not an ISO-8601 time or epoch seconds: {text!r}", source=source, line=line,
                             field=column) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        number = parsed.timestamp()
    # Look-ups pack (address, time) into one int64 with 33 bits of time: anything outside would corrupt them.
    if not OPEN_START <= number <= OPEN_END:  # also refuses nan and ±inf
        raise InputError(f"time {text!r} outside 1970 … 2242 (epoch seconds 0 … {OPEN_END})", source=source,
                         line=line, field=column)
    return int(number)


def _canonical_ip(text: str, source: str, line: int) -> str:
    """The address as flow logs write it; a typo (10.0.1.300) is refused, since that row would never match."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InputError(f"not an IPv4 or IPv6 address: {text!r}", source=source, line=line, field="ip") from None


def inventory_from_rows(rows: Iterable[Mapping[str, Any]], source: str = "inventory",
                        line_numbers: Iterable[int] | None = None, refuse_overlaps: bool = False) -> Inventory:
    """From mappings with ip, service and optional valid_from, valid_to (text or epoch), kind.

    `refuse_overlaps`: an address given to two services at once is an error (a hand-written inventory); EC2's
    own listing keeps both (a terminated instance lingers beside its address's new owner)."""
    numbers = iter(line_numbers) if line_numbers is not None else None
    out: list[InventoryRow] = []
    lines: list[int] = []
    for i, row in enumerate(rows):
        line = next(numbers) if numbers is not None else i + 2
        fields = {str(k).strip().lower(): ("" if v is None else str(v)) for k, v in row.items() if k is not None}
        ip, service = fields.get("ip", "").strip(), fields.get("service", "").strip()
        if not ip or not service:
            raise InputError("empty ip or service", source=source, line=line)
        ip = _canonical_ip(ip, source, line)
        valid_from = _parse_time(fields.get("valid_from", ""), source, line, "valid_from", OPEN_START)
        valid_to = _parse_time(fields.get("valid_to", ""), source, line, "valid_to", OPEN_END)
        if valid_to <= valid_from:
            raise InputError("valid_to is not after valid_from", source=source, line=line)
        kind = fields.get("kind", "").strip().lower() or "service"
        out.append(InventoryRow(ip, service, valid_from, valid_to, kind))
        lines.append(line)
    if refuse_overlaps:
        _refuse_overlaps(out, lines, source)
    return Inventory(out)


def _refuse_overlaps(rows: list[InventoryRow], lines: list[int], source: str) -> None:
    """An address owned by two services at once makes every flow through it ambiguous: refuse it, naming both."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i].ip, rows[i].valid_from))
    reach = 0  # the earlier row of this address whose interval ends last
    for position, index in enumerate(order):
        row = rows[index]
        if position == 0 or rows[order[position - 1]].ip != row.ip:
            reach = index
            continue
        held = rows[reach]
        if row.valid_from < held.valid_to and row.service != held.service:
            raise InputError(f"address {row.ip} is claimed by {row.service!r} while line {lines[reach]} "
                             f"gives it to {held.service!r} (valid_from/valid_to must not overlap)",
                             source=source, line=lines[index], field="ip")
        if row.valid_to > held.valid_to:
            reach = index


def load_inventory(path: str | Path) -> Inventory:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSV with a byte-order mark
    except FileNotFoundError as exc:
        raise InputError("inventory file does not exist", source=source) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"not a CSV inventory: {exc}", source=source) from exc
    lines = [(n, line.split("#", 1)[0]) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line.strip()]
    if not lines:
        raise InputError("not a CSV inventory: no header line", source=source)
    reader = csv.reader((line for _, line in lines), skipinitialspace=True)
    try:
        table = list(reader)
    except csv.Error as exc:
        raise InputError(f"not a CSV inventory: {exc}", source=source) from exc
    header = [h.strip().lower() for h in table[0]]
    repeated = next((h for i, h in enumerate(header) if h and h in header[:i]), None)
    if repeated:
        raise InputError("column named twice in the header", source=source, line=lines[0][0], field=repeated)
    for needed in ("ip", "service"):
        if needed not in header:
            raise InputError(f"missing column {needed!r} (expected ip,service[,valid_from,valid_to])",
                             source=source, line=lines[0][0])
    records = []
    for (number, _), values in zip(lines[1:], table[1:], strict=False):
        if len(values) > len(header):
            raise InputError(f"not a CSV inventory: expected {len(header)} fields, saw {len(values)}",
                             source=source, line=number)
        records.append(dict(zip(header, values + [""] * (len(header) - len(values)), strict=True)))
    return inventory_from_rows(records, source, (n for n, _ in lines[1:]), refuse_overlaps=True)


def inventory_from_records(records: list[dict[str, object]]) -> Inventory:
    """From dicts with ip, service, valid_from, valid_to (datetimes or epoch seconds allowed)."""
    rows = []
    for record in records:
        row = dict(record)
        for key in ("valid_from", "valid_to"):
            value = row.get(key)
            if isinstance(value, datetime):
                row[key] = str(int(value.timestamp()))
            elif value is None:
                row[key] = ""
        rows.append(row)
    return inventory_from_rows(rows, "inventory")
