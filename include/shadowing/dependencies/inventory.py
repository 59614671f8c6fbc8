"""Time-ranged IP → service inventory (addresses are reused: ownership is looked up as of the flow's start).

CSV columns: `ip,service` and optionally `valid_from,valid_to` (ISO-8601 or epoch seconds; empty = open) and
`kind` (`service` default; `load_balancer`/`external` rows are known but never become nodes or edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from shadowing.errors import InputError

OPEN_START = 0
OPEN_END = (1 << 33) - 1  # epoch seconds fit below 2^33 until the year 2242
IGNORED_KINDS = {"load_balancer", "lb", "external", "nat", "health_check"}


@dataclass
class Inventory:
    """Sorted intervals: ip, service, valid_from, valid_to (int epoch seconds, [from, to))."""

    frame: pd.DataFrame

    @property
    def services(self) -> list[str]:
        return sorted(self.frame.loc[~self.frame["kind"].isin(IGNORED_KINDS), "service"].unique())

    def __len__(self) -> int:
        return len(self.frame)

    def lookup(self, ips: np.ndarray, ip_codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Service code (index into `service_names`) for each flow, −1 when unknown or ignored.

        `ips` are the distinct address strings (a dictionary), `ip_codes` the per-row index into them.
        """
        frame = self.frame
        inv_ip_index = pd.Index(frame["ip"].unique())
        dict_to_inv = inv_ip_index.get_indexer(pd.Index(ips))  # −1 = not in inventory
        row_inv = np.where(ip_codes >= 0, dict_to_inv[np.clip(ip_codes, 0, None)], -1)
        ip_id = inv_ip_index.get_indexer(frame["ip"]).astype(np.int64)
        keys = (ip_id << 33) | frame["valid_from"].to_numpy(np.int64)
        order = np.argsort(keys, kind="stable")
        keys, ip_sorted = keys[order], ip_id[order]
        valid_to = frame["valid_to"].to_numpy(np.int64)[order]
        service_code = self.service_codes()[order]
        query = (row_inv.astype(np.int64) << 33) | np.clip(starts.astype(np.int64), 0, OPEN_END)
        pos = np.searchsorted(keys, query, side="right") - 1
        ok = (row_inv >= 0) & (pos >= 0)
        pos = np.clip(pos, 0, None)
        ok &= (ip_sorted[pos] == row_inv) & (starts < valid_to[pos])
        return np.where(ok, service_code[pos], -1).astype(np.int32)

    def service_names(self) -> list[str]:
        return list(self.frame["service"].cat.categories)

    def service_codes(self) -> np.ndarray:
        codes = self.frame["service"].cat.codes.to_numpy(np.int32).copy()
        codes[self.frame["kind"].isin(IGNORED_KINDS).to_numpy()] = -1
        return codes

    def lookup_one(self, ip: str, at: float) -> str | None:
        code = self.lookup(np.array([ip], dtype=object), np.array([0]), np.array([int(at)]))[0]
        return None if code < 0 else self.service_names()[code]


def _parse_times(values: pd.Series, source: str, column: str, default: int) -> np.ndarray:
    text = values.fillna("").astype(str).str.strip()
    out = np.full(len(text), default, dtype=np.int64)
    empty = text.eq("").to_numpy()
    numeric = pd.to_numeric(text.where(~text.eq("")), errors="coerce")
    is_num = numeric.notna().to_numpy()
    out[is_num] = numeric[is_num].to_numpy().astype(np.int64)
    rest = ~is_num & ~empty
    if rest.any():
        parsed = pd.to_datetime(text[rest], errors="coerce", utc=True, format="ISO8601")
        bad = parsed.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(rest)[np.flatnonzero(bad)[0]])
            raise InputError(f"not an ISO-8601 time or epoch seconds: {text.iloc[row]!r}", source=source,
                             line=row + 2, field=column)
        out[rest] = (parsed.astype("int64") // 10**9).to_numpy() if parsed.dt.unit == "ns" else \
            parsed.map(lambda t: int(t.timestamp())).to_numpy(np.int64)
    return out


def inventory_from_frame(frame: pd.DataFrame, source: str = "inventory") -> Inventory:
    columns = {c.strip().lower(): c for c in frame.columns}
    for needed in ("ip", "service"):
        if needed not in columns:
            raise InputError(f"missing column {needed!r} (expected ip,service[,valid_from,valid_to])",
                             source=source, line=1)
    out = pd.DataFrame({"ip": frame[columns["ip"]].astype(str).str.strip(),
                        "service": frame[columns["service"]].astype(str).str.strip()})
    for i, (ip, service) in enumerate(zip(out["ip"], out["service"], strict=True)):
        if not ip or ip == "nan" or not service or service == "nan":
            raise InputError("empty ip or service", source=source, line=i + 2)
    out["valid_from"] = _parse_times(frame[columns["valid_from"]], source, "valid_from", OPEN_START) \
        if "valid_from" in columns else OPEN_START
    out["valid_to"] = _parse_times(frame[columns["valid_to"]], source, "valid_to", OPEN_END) \
        if "valid_to" in columns else OPEN_END
    out["kind"] = frame[columns["kind"]].fillna("service").astype(str).str.strip().str.lower() \
        if "kind" in columns else "service"
    bad = np.flatnonzero(out["valid_to"].to_numpy() <= out["valid_from"].to_numpy())
    if len(bad):
        raise InputError("valid_to is not after valid_from", source=source, line=int(bad[0]) + 2)
    out["service"] = out["service"].astype("category")
    return Inventory(out.reset_index(drop=True))


def load_inventory(path: str | Path) -> Inventory:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#", skipinitialspace=True)
    except FileNotFoundError as exc:
        raise InputError("inventory file does not exist", source=str(path)) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"not a CSV inventory: {str(exc).splitlines()[0]}", source=str(path)) from exc
    return inventory_from_frame(frame, str(path))


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
            else:
                row[key] = str(value)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["ip", "service", "valid_from", "valid_to", "kind"]) if rows else \
        pd.DataFrame(columns=["ip", "service", "valid_from", "valid_to", "kind"])
    return inventory_from_frame(frame.fillna(""), "inventory")
