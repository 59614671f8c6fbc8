from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from shadowing.world.app import SHOPFRONT
from shadowing.world.inventory import synthetic_inventory, write_inventory_csv
from shadowing.world.traffic import (
    EPHEMERAL_LOW,
    V2_FIELDS,
    V5_FIELDS,
    flow_log_lines,
    generate_flow_records,
    write_flow_logs,
)

START = datetime(2025, 1, 6, 12, tzinfo=UTC)
END = START + timedelta(hours=1)


@pytest.fixture(scope="module")
def world():
    inv = synthetic_inventory(SHOPFRONT, START, END, seed=3)
    return inv, generate_flow_records(SHOPFRONT, inv, START, END, seed=3)


def _edges(records: pd.DataFrame, inv) -> set[tuple[str, str]]:
    """Caller→callee from SYN-marked egress records, attributing IPs as of the record's time."""
    syn = records[(records.flow_direction == "egress") & (records.tcp_flags == 2) & (records.action == "ACCEPT")]
    out = set()
    for r in syn.itertuples():
        t = datetime.fromtimestamp(r.start, UTC)
        owner = {e.ip: e.service for e in inv.endpoints if e.valid_from <= t and (e.valid_to is None or t < e.valid_to)}
        out.add((owner.get(r.srcaddr), owner.get(r.dstaddr)))
    return out


def test_records_cover_the_true_graph_including_traffic_only_edges(world) -> None:
    inv, rec = world
    edges = _edges(rec, inv)
    assert SHOPFRONT.edge_pairs() <= edges
    assert SHOPFRONT.traffic_only_edges() <= edges
    assert {("alb", s.name) for s in SHOPFRONT.edge_services()} <= edges  # LB forwarding + health checks


def test_both_eni_sides_and_responses(world) -> None:
    _, rec = world
    ok = rec[rec.log_status == "OK"]
    req = ok[(ok.dstport == 50051) & (ok.flow_direction == "egress")].iloc[0]
    same = ok[(ok.srcaddr == req.srcaddr) & (ok.dstaddr == req.dstaddr) & (ok.srcport == req.srcport)
              & (ok.start == req.start)]
    assert set(same.flow_direction) == {"egress", "ingress"} and same.interface_id.nunique() == 2
    resp = ok[(ok.srcaddr == req.dstaddr) & (ok.dstaddr == req.srcaddr) & (ok.srcport == 50051)
              & (ok.dstport == req.srcport) & (ok.start == req.start)]
    assert len(resp) == 2
    assert (ok.loc[ok.dstport >= EPHEMERAL_LOW, "srcport"] == 33000).any() or (ok.dstport == 33000).any()


def test_noise_is_present(world) -> None:
    inv, rec = world
    assert (rec.action == "REJECT").any()
    rejected = rec[rec.action == "REJECT"]
    assert not rejected.srcaddr.astype(str).str.startswith("10.").any()
    assert (rec.log_status == "NODATA").any() or (rec.log_status == "SKIPDATA").any()
    # persistent connections: traffic to the database without any SYN after the first window
    # (before the mid-window replacement, whose new instances open fresh connections)
    db = rec[(rec.dstport == 5432) & (rec.start > int((START + timedelta(minutes=5)).timestamp()))
             & (rec.start < int((START + timedelta(minutes=25)).timestamp()))]
    assert len(db) and (db.tcp_flags == 0).all()
    alb_ips = {e.ip for e in inv.endpoints if e.kind == "alb"}
    health = rec[rec.srcaddr.isin(alb_ips) & (rec.bytes == 240)]
    assert len(health) > 0 and (health.instance_id.astype(str) == "-").any()


def test_ip_reused_by_another_service(world) -> None:
    inv, rec = world
    by_ip: dict[str, set[str]] = {}
    for e in inv.endpoints:
        by_ip.setdefault(e.ip, set()).add(e.service)
    reused = [ip for ip, s in by_ip.items() if len(s) > 1]
    assert len(reused) == 1
    ip = reused[0]
    seen_instances = set(rec.loc[(rec.srcaddr == ip) & (rec.flow_direction == "egress"), "instance_id"].astype(str))
    assert len(seen_instances) == 2


def test_v5_and_v2_lines_parse_back(world, tmp_path: Path) -> None:
    _, rec = world
    sample = rec.iloc[::97]
    v5 = write_flow_logs(sample, tmp_path / "v5.log", 5)
    v2 = write_flow_logs(sample, tmp_path / "v2.log", 2)
    lines5 = v5.read_text().splitlines()
    assert lines5[0].split() == list(V5_FIELDS)
    assert all(len(line.split(" ")) == len(V5_FIELDS) for line in lines5[1:])
    lines2 = v2.read_text().splitlines()
    assert len(lines2) == len(sample) and all(len(x.split(" ")) == len(V2_FIELDS) for x in lines2)
    assert all(x.startswith("2 ") for x in lines2)
    parsed = pd.DataFrame([x.split(" ") for x in lines5[1:]], columns=list(V5_FIELDS))
    assert (parsed["srcaddr"] == sample["srcaddr"].astype(str).where(sample.log_status == "OK", "-").values).all()
    assert flow_log_lines(sample.head(3), 5) == lines5[1:4]
    nodata = parsed[parsed["log-status"] == "NODATA"]
    assert (nodata[["srcaddr", "dstaddr", "srcport", "packets"]] == "-").all().all()


def test_deterministic_and_window_independent() -> None:
    inv = synthetic_inventory(SHOPFRONT, START, END, seed=5)
    a = generate_flow_records(SHOPFRONT, inv, START, START + timedelta(minutes=12), seed=5)
    pd.testing.assert_frame_equal(a, generate_flow_records(SHOPFRONT, inv, START, START + timedelta(minutes=12),
                                                           seed=5))
    mid = START + timedelta(minutes=5)
    part = generate_flow_records(SHOPFRONT, inv, mid, mid + timedelta(minutes=5), seed=5)
    lo, hi = int(mid.timestamp()), int((mid + timedelta(minutes=5)).timestamp())
    sub = a[(a.start >= lo) & (a.start < hi)]
    assert sorted(flow_log_lines(sub)) == sorted(flow_log_lines(part))


def test_scales_with_flows_per_edge_and_validates() -> None:
    inv = synthetic_inventory(SHOPFRONT, START, END, seed=1)
    small = generate_flow_records(SHOPFRONT, inv, START, START + timedelta(minutes=10), seed=1)
    big = generate_flow_records(SHOPFRONT, inv, START, START + timedelta(minutes=10), seed=1, flows_per_edge=4)
    assert len(big) > 3 * len(small)
    with pytest.raises(ValueError):
        generate_flow_records(SHOPFRONT, inv, END, START)


def test_inventory_csv(tmp_path: Path) -> None:
    inv = synthetic_inventory(SHOPFRONT, START, END, seed=1)
    df = pd.read_csv(write_inventory_csv(inv, tmp_path / "inv.csv"))
    assert list(df.columns) == ["ip", "service", "valid_from", "valid_to"]
    assert "alb" not in set(df.service) and set(df.service) == set(SHOPFRONT.names)
    assert df.valid_to.notna().sum() == 1
