"""VPC flow-log records generated from the true call graph, with real-world noise (vectorised, numpy).

Per kept conversation and aggregation window, four records as AWS logs intra-VPC traffic: the request on the
caller's ENI (egress) and on the callee's ENI (ingress), the response on the callee's ENI (egress) and on the
caller's ENI (ingress). Noise a dependency mapper must handle: persistent connections (database, cache, broker,
gRPC) that show no SYN after their first window, load-balancer forwarding and health checks from the ALB's
private IPs (requester-managed ENIs, instance-id "-"), rejected scans from outside addresses, NODATA windows
(idle worker at night) and SKIPDATA windows, listening ports above the ephemeral floor (search on 33000, payment
on 50051), and the IP reused by another service after an instance was replaced (see inventory.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from shadowing.world.app import App
from shadowing.world.inventory import AZ_IDS, LB_SERVICE, Inventory
from shadowing.world.shapes import hash_uniform, keyed_uniform, service_load

V2_FIELDS: tuple[str, ...] = ("version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
                              "protocol", "packets", "bytes", "start", "end", "action", "log-status")
V5_FIELDS: tuple[str, ...] = V2_FIELDS + ("vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr",
                                          "pkt-dstaddr", "region", "az-id", "flow-direction", "traffic-path")
V5_LOG_FORMAT = " ".join(f"${{{f}}}" for f in V5_FIELDS)  # EC2 CreateFlowLogs LogFormat
EPHEMERAL_LOW, EPHEMERAL_HIGH = 32768, 60999  # Linux net.ipv4.ip_local_port_range
SCAN_SOURCES = ("198.51.100.23", "198.51.100.77", "203.0.113.9", "203.0.113.140", "45.83.64.12", "185.220.101.4")
SCAN_PORTS = (22, 3389, 23, 445, 5900, 6379)
# conversation kinds
_CALL, _LB_FORWARD, _HEALTH = 0, 1, 2
_ORDERED_COLUMNS = tuple(f.replace("-", "_") for f in V5_FIELDS if f != "version")


def _column(field: str) -> str:
    return field.replace("-", "_")


def _epoch(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return int(t.timestamp())


def generate_flow_records(app: App, inventory: Inventory, start: datetime, end: datetime, seed: int = 0, *,
                          window_seconds: int = 60, flows_per_edge: int = 1, scans_per_window: float = 0.3,
                          skipdata_probability: float = 0.0005) -> pd.DataFrame:
    """Flow records for windows in [start, end) as a DataFrame (columns = v5 field names with '_').

    Sizes scale with ``flows_per_edge`` (parallel conversations per caller-instance/callee-instance pair per
    window). Missing fields (NODATA/SKIPDATA, ingress traffic-path) are nulls. Deterministic by seed.
    """
    t0, t1 = _epoch(start), _epoch(end)
    if t1 <= t0 or window_seconds <= 0 or flows_per_edge < 1:
        raise ValueError("need end > start, window_seconds > 0 and flows_per_edge >= 1")
    ws = t0 - t0 % window_seconds + window_seconds * np.arange(-(-(t1 - (t0 - t0 % window_seconds)) // window_seconds),
                                                                dtype=np.int64)
    ws = ws[ws < t1]
    n_win = len(ws)
    eps = list(inventory.endpoints)
    svc_index = {s.name: i for i, s in enumerate(app.services)}
    ep_from = np.array([_epoch(e.valid_from) for e in eps], dtype=np.int64)
    ep_to = np.array([_epoch(e.valid_to) if e.valid_to else np.iinfo(np.int64).max for e in eps], dtype=np.int64)
    by_service: dict[str, list[int]] = {}
    for i, e in enumerate(eps):
        by_service.setdefault(e.service, []).append(i)

    # conversation templates (small python loop; the big expansion below is vectorised)
    src, dst, port, persistent, kind, load_svc, req_base, resp_base = [], [], [], [], [], [], [], []

    def conv(a: int, b: int, p: int, pers: bool, k: int, ls: int, rq: float, rs: float) -> None:
        src.append(a), dst.append(b), port.append(p), persistent.append(pers), kind.append(k)
        load_svc.append(ls), req_base.append(rq), resp_base.append(rs)

    for e in app.edges:
        callee = app.service(e.callee)
        pers = callee.kind in ("database", "cache", "broker") or callee.protocol == "grpc"
        for a in by_service.get(e.caller, []):
            for b in by_service.get(e.callee, []):
                for _ in range(flows_per_edge):
                    conv(a, b, callee.port, pers, _CALL, svc_index[e.caller], 900.0, 12000.0 * callee.load_scale)
    for svc in app.edge_services():
        for a in by_service.get(LB_SERVICE, []):
            for b in by_service.get(svc.name, []):
                for _ in range(flows_per_edge):
                    conv(a, b, svc.port, False, _LB_FORWARD, svc_index[svc.name], 1500.0, 30000.0)
                conv(a, b, svc.port, False, _HEALTH, svc_index[svc.name], 0.0, 0.0)
    c_src, c_dst = np.array(src, dtype=np.int32), np.array(dst, dtype=np.int32)
    c_port, c_pers = np.array(port, dtype=np.int32), np.array(persistent, dtype=bool)
    c_kind, c_svc = np.array(kind, dtype=np.int8), np.array(load_svc, dtype=np.int32)
    c_req, c_resp = np.array(req_base), np.array(resp_base)
    n_conv = len(c_src)
    worker = np.array([app.services[s].kind == "worker" for s in c_svc], dtype=bool) if n_conv else c_pers

    load = np.vstack([service_load(ws, seed, i, s.load_scale) for i, s in enumerate(app.services)])  # (S, W)

    conv_i = np.tile(np.arange(n_conv, dtype=np.int64), n_win)
    win_i = np.repeat(np.arange(n_win, dtype=np.int64), n_conv)
    w_start = ws[win_i]
    a, b = c_src[conv_i], c_dst[conv_i]
    valid = (ep_from[a] <= w_start) & (ep_to[a] > w_start) & (ep_from[b] <= w_start) & (ep_to[b] > w_start)
    lv = load[c_svc[conv_i], win_i]
    pers_r, kind_r = c_pers[conv_i], c_kind[conv_i]
    keep_p = np.where(pers_r, np.where(worker[conv_i], np.clip(1.6 * lv - 0.4, 0.0, 1.0), 0.995),
                      np.minimum(1.0, 0.35 + 0.65 * lv))
    keep_p = np.where(kind_r == _HEALTH, 1.0, keep_p)
    # absolute key per (conversation, window): the same records whatever window range is asked for
    cw_key = (w_start // window_seconds) * n_conv + conv_i
    keep = valid & (keyed_uniform(seed, 11, cw_key) < keep_p)
    conv_i, win_i, w_start, a, b, lv, pers_r, kind_r, cw_key = (
        x[keep] for x in (conv_i, win_i, w_start, a, b, lv, pers_r, kind_r, cw_key))
    n = len(conv_i)
    dport = c_port[conv_i]
    span = EPHEMERAL_HIGH - EPHEMERAL_LOW
    sport = np.where(pers_r, EPHEMERAL_LOW + (hash_uniform(seed, 12, conv_i) * span).astype(np.int64),
                     EPHEMERAL_LOW + (keyed_uniform(seed, 13, cw_key) * span).astype(np.int64))
    opened = w_start - np.maximum(ep_from[a], ep_from[b]) < window_seconds
    closes = keyed_uniform(seed, 15, cw_key) < 0.7
    req_flags = np.where(pers_r, np.where(opened, 2, 0), np.where(closes, 3, 2))
    resp_flags = np.where(pers_r, np.where(opened, 18, 0), np.where(closes, 19, 18))
    is_health = kind_r == _HEALTH
    req_flags = np.where(is_health, 3, req_flags)
    resp_flags = np.where(is_health, 19, resp_flags)
    jitter = (keyed_uniform(seed, 16, cw_key) * min(10, window_seconds)).astype(np.int64)
    f_start = w_start + jitter
    f_end = w_start + window_seconds
    vol = (0.5 + lv) * (0.7 + 0.6 * keyed_uniform(seed, 17, cw_key))
    req_bytes = np.where(is_health, 240, np.maximum(60, c_req[conv_i] * vol)).astype(np.int64)
    resp_bytes = np.where(is_health, 420, np.maximum(60, c_resp[conv_i] * vol)).astype(np.int64)
    req_pk = np.maximum(1, req_bytes // 700 + 2)
    resp_pk = np.maximum(1, resp_bytes // 1400 + 2)

    # four observations per conversation-window
    obs = np.concatenate([a, b, b, a])
    s_ep = np.concatenate([a, a, b, b])
    d_ep = np.concatenate([b, b, a, a])
    sp = np.concatenate([sport, sport, dport, dport])
    dp = np.concatenate([dport, dport, sport, sport])
    flags = np.concatenate([req_flags, req_flags, resp_flags, resp_flags])
    nbytes = np.concatenate([req_bytes, req_bytes, resp_bytes, resp_bytes])
    npk = np.concatenate([req_pk, req_pk, resp_pk, resp_pk])
    st = np.tile(f_start, 4)
    en = np.tile(f_end, 4)
    wi = np.tile(win_i, 4)
    egress = np.concatenate([np.ones(n, bool), np.zeros(n, bool), np.ones(n, bool), np.zeros(n, bool)])

    # SKIPDATA: the ENI lost its records for that window
    n_ep = len(eps)
    skip_key = obs.astype(np.int64) * n_win + wi
    skip = keyed_uniform(seed, 14, (ws[wi] // window_seconds) * n_ep + obs) < skipdata_probability
    ok = ~skip
    obs, s_ep, d_ep, sp, dp, flags, nbytes, npk, st, en, wi, egress = (
        x[ok] for x in (obs, s_ep, d_ep, sp, dp, flags, nbytes, npk, st, en, wi, egress))
    skipped = np.unique(skip_key[skip])

    # rejected scans from outside addresses (ingress on the target's ENI only)
    app_eps = np.array([i for i, e in enumerate(eps) if e.kind == "instance"], dtype=np.int64)
    scan_w = np.nonzero(hash_uniform(seed, 20, ws) < scans_per_window)[0]
    if len(app_eps) and len(scan_w):
        tgt = app_eps[(hash_uniform(seed, 21, ws[scan_w]) * len(app_eps)).astype(np.int64)]
        alive = (ep_from[tgt] <= ws[scan_w]) & (ep_to[tgt] > ws[scan_w])
        scan_w, tgt = scan_w[alive], tgt[alive]
    else:
        tgt = np.zeros(0, dtype=np.int64)
        scan_w = scan_w[:0]
    n_scan = len(scan_w)
    scan_src = (hash_uniform(seed, 22, ws[scan_w]) * len(SCAN_SOURCES)).astype(np.int64)
    scan_port = np.array(SCAN_PORTS)[(hash_uniform(seed, 23, ws[scan_w]) * len(SCAN_PORTS)).astype(np.int64)]

    # NODATA: a logged ENI that was alive but saw no traffic in a window
    alive_grid = (ep_from[:, None] <= ws[None, :]) & (ep_to[:, None] > ws[None, :])
    present = np.zeros(n_ep * n_win, dtype=bool)
    present[obs.astype(np.int64) * n_win + wi] = True
    present[skipped] = True
    nod = np.nonzero(alive_grid.reshape(-1) & ~present)[0]
    nod_ep, nod_w = nod // n_win, nod % n_win
    sk_ep, sk_w = skipped // n_win, skipped % n_win

    # assemble: traffic, scans, NODATA, SKIPDATA
    ips = sorted({e.ip for e in eps}) + list(SCAN_SOURCES)
    ip_code = {ip: i for i, ip in enumerate(ips)}
    ep_ip = np.array([ip_code[e.ip] for e in eps], dtype=np.int32)
    ext_code = np.array([ip_code[s] for s in SCAN_SOURCES], dtype=np.int32)
    n_tr, n_nd, n_sk = len(obs), len(nod), len(skipped)
    observer = np.concatenate([obs, tgt, nod_ep, sk_ep]).astype(np.int32)
    src_ip = np.concatenate([ep_ip[s_ep], ext_code[scan_src], np.full(n_nd + n_sk, -1, np.int32)])
    dst_ip = np.concatenate([ep_ip[d_ep], ep_ip[tgt], np.full(n_nd + n_sk, -1, np.int32)])
    scan_sport = EPHEMERAL_LOW + (hash_uniform(seed, 24, ws[scan_w]) * span).astype(np.int64)
    srcport = np.concatenate([sp, scan_sport, np.zeros(n_nd + n_sk, np.int64)])
    dstport = np.concatenate([dp, scan_port, np.zeros(n_nd + n_sk, np.int64)])
    packets = np.concatenate([npk, np.ones(n_scan, np.int64), np.zeros(n_nd + n_sk, np.int64)])
    byts = np.concatenate([nbytes, np.full(n_scan, 44, np.int64), np.zeros(n_nd + n_sk, np.int64)])
    tcp = np.concatenate([flags, np.full(n_scan, 2, np.int64), np.zeros(n_nd + n_sk, np.int64)])
    st_all = np.concatenate([st, ws[scan_w] + 3, ws[nod_w], ws[sk_w]])
    en_all = np.concatenate([en, ws[scan_w] + window_seconds, ws[nod_w] + window_seconds,
                             ws[sk_w] + window_seconds])
    action = np.concatenate([np.zeros(n_tr, np.int8), np.ones(n_scan, np.int8), np.full(n_nd + n_sk, -1, np.int8)])
    status = np.concatenate([np.zeros(n_tr + n_scan, np.int8), np.ones(n_nd, np.int8), np.full(n_sk, 2, np.int8)])
    direction = np.concatenate([np.where(egress, 1, 0).astype(np.int8), np.zeros(n_scan, np.int8),
                                np.full(n_nd + n_sk, -1, np.int8)])
    missing = np.concatenate([np.zeros(n_tr + n_scan, bool), np.ones(n_nd + n_sk, bool)])
    tpath_mask = np.concatenate([~egress, np.ones(n_scan + n_nd + n_sk, bool)])
    win_all = np.concatenate([wi, scan_w, nod_w, sk_w])
    order = np.argsort(win_all, kind="stable")  # concatenated sorted runs: timsort merges them cheaply

    def cat(codes: np.ndarray, categories: Sequence[str]) -> pd.Categorical:
        return pd.Categorical.from_codes(codes[order], categories=list(categories))

    def nint(values: np.ndarray, mask: np.ndarray, dtype: str) -> pd.api.extensions.ExtensionArray:
        return pd.arrays.IntegerArray(values[order].astype(dtype), mask[order])

    total = len(order)
    ones = np.zeros(total, np.int8)
    ep_inst = [e.instance_id for e in eps]
    frame = pd.DataFrame({
        "account_id": pd.Categorical.from_codes(ones, categories=[inventory.account_id]),
        "interface_id": cat(observer, [e.eni_id for e in eps]),
        "srcaddr": cat(src_ip, ips),
        "dstaddr": cat(dst_ip, ips),
        "srcport": nint(srcport, missing, "int32"),
        "dstport": nint(dstport, missing, "int32"),
        "protocol": nint(np.full(total, 6, np.int64), missing, "int8"),
        "packets": nint(packets, missing, "int64"),
        "bytes": nint(byts, missing, "int64"),
        "start": st_all[order],
        "end": en_all[order],
        "action": cat(action, ["ACCEPT", "REJECT"]),
        "log_status": cat(status, ["OK", "NODATA", "SKIPDATA"]),
        "vpc_id": pd.Categorical.from_codes(ones, categories=[inventory.vpc_id]),
        "subnet_id": _ep_cat(observer[order], [e.subnet_id for e in eps]),
        "instance_id": _ep_cat(observer[order], ep_inst),
        "tcp_flags": nint(tcp, missing, "int16"),
        "type": pd.Categorical.from_codes(np.where(missing[order], -1, 0).astype(np.int8), categories=["IPv4"]),
        "pkt_srcaddr": cat(src_ip, ips),
        "pkt_dstaddr": cat(dst_ip, ips),
        "region": pd.Categorical.from_codes(ones, categories=[inventory.region]),
        "az_id": _ep_cat(observer[order], [AZ_IDS[e.az_index] for e in eps]),
        "flow_direction": cat(direction, ["ingress", "egress"]),
        "traffic_path": nint(np.ones(total, np.int64), tpath_mask, "int8"),
    })
    return frame.reset_index(drop=True)


def _uniq_codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    cats = sorted(set(values))
    pos = {v: i for i, v in enumerate(cats)}
    return np.array([pos[v] for v in values], dtype=np.int32), cats


def _ep_cat(observer: np.ndarray, per_endpoint: Sequence[str]) -> pd.Categorical:
    codes, cats = _uniq_codes(per_endpoint)
    return pd.Categorical.from_codes(codes[observer], categories=cats)


def _string_columns(records: pd.DataFrame, fields: Sequence[str], version: int) -> list:
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for f in fields:
        if f == "version":
            cols.append(pa.array(np.full(len(records), str(version), dtype=object), pa.string()))
            continue
        s = records[_column(f)]
        arr = pa.array(s)
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        cols.append(pc.fill_null(pc.cast(arr, pa.string()), "-"))
    return cols


def flow_log_lines(records: pd.DataFrame, version: int = 5) -> list[str]:
    """Text lines (no header) in the v5 custom format (``version=5``) or the default v2 format (``version=2``)."""
    fields = V5_FIELDS if version == 5 else V2_FIELDS
    cols = [c.to_pylist() for c in _string_columns(records, fields, version)]
    return [" ".join(parts) for parts in zip(*cols, strict=True)]


def write_flow_logs(records: pd.DataFrame, path: str | Path, version: int = 5, *, header: bool | None = None) -> Path:
    """Write records as flow-log text: v5 with a header line of field names (default), v2 without one."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if version not in (2, 5):
        raise ValueError("version must be 2 (default format) or 5 (custom format)")
    fields = V5_FIELDS if version == 5 else V2_FIELDS
    header = version == 5 if header is None else header
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(_string_columns(records, fields, version), names=list(fields))
    with path.open("wb") as fh:
        if header:
            fh.write((" ".join(fields) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none"))
    return path
