"""Listening-port detection counts distinct peers, not records (EDGE_INFERENCE_NOTES.md §1b).

A server's (service, port) is reached from many distinct peer endpoints (clients' ephemeral ports); a client's
ephemeral endpoint talks to one server, however many records a long-lived connection produces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowing.dependencies import flowlogs
from shadowing.dependencies.flowlogs import (
    LISTEN_MIN_PEERS,
    FlowOptions,
    edge_keys,
    infer_flow_edges,
    infer_flow_files,
    iter_flow_log,
    peer_counts,
)
from shadowing.dependencies.flowscan import distinct_peer_counts
from shadowing.dependencies.inventory import inventory_from_records

INVENTORY = inventory_from_records([{"ip": "10.0.16.6", "service": "api-gateway"},
                                    {"ip": "10.0.32.8", "service": "search"}, {"ip": "10.0.0.5", "service": "web"},
                                    {"ip": "10.0.48.2", "service": "checkout"}, {"ip": "10.0.48.9", "service": "payment"}])
GATEWAY, SEARCH, WEB, CHECKOUT, PAYMENT = "10.0.16.6", "10.0.32.8", "10.0.0.5", "10.0.48.2", "10.0.48.9"
V2_HEADER = "version interface-id srcaddr dstaddr srcport dstport protocol bytes start end action log-status"


def conversation(client: str, client_port: int, server: str, server_port: int, windows: range) -> list[str]:
    """A connection's records as AWS logs them, per window: request and response, on both ENIs (no tcp-flags:
    it was opened before the log began, or the format has none)."""
    rows = []
    for window in windows:
        t = 1_000 + 60 * window
        for eni in ("eni-client", "eni-server"):
            rows.append(f"2 {eni} {client} {server} {client_port} {server_port} 6 900 {t} {t + 59} ACCEPT OK")
            rows.append(f"2 {eni} {server} {client} {server_port} {client_port} 6 9000 {t} {t + 59} ACCEPT OK")
    return rows


def write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "flows.log"
    path.write_text("\n".join([V2_HEADER, *rows]) + "\n")
    return path


def edges_by_both_readers(path: Path, options: FlowOptions) -> dict[tuple[str, str, int], int]:
    """(caller, callee, port) → records, from the fast reader; the exact reader must give the same."""
    fast = infer_flow_files([path], INVENTORY, options)
    exact = infer_flow_edges(iter_flow_log(path), INVENTORY, options)
    found = {(r.caller, r.target, r.port): r.count for r in fast.references}
    assert {(r.caller, r.target, r.port): r.count for r in exact.references} == found
    return found


@pytest.fixture(params=["compiled", "sorted"])
def orientation_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both orientation paths: compiled over dense (service, port) tables, and numpy over sorted keys."""
    if request.param == "sorted":
        monkeypatch.setattr(flowlogs, "DENSE_LIMIT", 0)
    return str(request.param)


@pytest.mark.parametrize(("client_port", "server_port"), [(32996, 33000), (49200, 50051)])
def test_a_long_lived_client_connection_does_not_make_its_ephemeral_port_a_listener(
        tmp_path: Path, orientation_path: str, client_port: int, server_port: int) -> None:
    """api-gateway holds one connection from its ephemeral port (above 32768, below the server's) to search,
    which listens above the ephemeral floor too: 40 records, no SYN, no configuration. Counted in records, that
    port was as busy as search's and the lower-port rule then made search the caller (search -> api-gateway on
    the gateway's ephemeral port). search is reached from many distinct peers (web's short connections, one
    ephemeral port each); the gateway's port from one."""
    rows = conversation(GATEWAY, client_port, SEARCH, server_port, range(10))
    for i in range(LISTEN_MIN_PEERS):
        rows += conversation(WEB, 41_000 + 7 * i, SEARCH, server_port, range(i % 3, i % 3 + 1))
    found = edges_by_both_readers(write(tmp_path, rows), FlowOptions(min_windows=1))
    assert found == {("api-gateway", "search", server_port): 40, ("web", "search", server_port): 4 * LISTEN_MIN_PEERS}


def test_distinct_peers_not_records_make_a_listener_before_the_port_range(tmp_path: Path,
                                                                          orientation_path: str) -> None:
    """search listens on 33000 (in the ephemeral range); its clients on web connect from low source ports (a host
    whose ephemeral range is 1025-5000, as old Windows), long-lived: 40 records each, no SYN. The range rule
    alone takes the low ports for servers. LISTEN_MIN_PEERS distinct peers make 33000 a listener first; one
    fewer does not, however many records each peer logs (request, response and both ENI copies: one peer)."""
    rows = [row for i in range(LISTEN_MIN_PEERS - 1) for row in conversation(WEB, 1_025 + i, SEARCH, 33_000, range(10))]
    options = FlowOptions(min_windows=1)
    below = edges_by_both_readers(write(tmp_path, rows), options)
    assert set(below) == {("search", "web", 1_025 + i) for i in range(LISTEN_MIN_PEERS - 1)}
    rows += conversation(WEB, 1_100, SEARCH, 33_000, range(10))
    assert edges_by_both_readers(write(tmp_path, rows), options) == {("web", "search", 33_000): 40 * LISTEN_MIN_PEERS}


def test_a_small_pool_to_a_high_port_is_oriented_by_its_distinct_peers(tmp_path: Path,
                                                                       orientation_path: str) -> None:
    """checkout holds a pool of 6 gRPC connections to payment on 50051 (fewer peers than LISTEN_MIN_PEERS),
    from ephemeral ports below 50051, opened before the log began: no SYN, both ports in the ephemeral range.
    By records every endpoint was busy and the lower port won (payment -> checkout on checkout's ports, as in the
    demo world's 1M-record trace without tcp-flags); payment has 6 distinct peers, each client port one."""
    rows = [row for i in range(6) for row in conversation(CHECKOUT, 40_000 + 1_111 * i, PAYMENT, 50_051, range(12))]
    found = edges_by_both_readers(write(tmp_path, rows), FlowOptions(min_windows=1))
    assert found == {("checkout", "payment", 50_051): 6 * 48}


def test_peer_counts_dense_and_sorted_agree_and_count_distinct_endpoints() -> None:
    """Request, response and both ENI copies of one conversation are one peer; a client port reused towards two
    servers has two; both counting paths give the same numbers."""
    n_services = 3
    src = np.array([0, 0, 1, 1, 0, 2, 0], np.int32)
    dst = np.array([1, 1, 0, 0, 1, 1, 2], np.int32)
    sport = np.array([40000, 40000, 8080, 8080, 40001, 40002, 40000], np.int32)
    dport = np.array([8080, 8080, 40000, 40000, 8080, 8080, 5432], np.int32)
    src_key = src.astype(np.int64) * 65536 + sport
    dst_key = dst.astype(np.int64) * 65536 + dport
    dense = distinct_peer_counts(src, dst, sport, dport, n_services)
    keys, counts = peer_counts(src_key, dst_key, n_services * 65536)
    assert dict(zip(keys.tolist(), counts.tolist(), strict=True)) == {
        k: int(dense[k]) for k in np.flatnonzero(dense).tolist()}
    assert dense[1 * 65536 + 8080] == 3  # three client endpoints: (0, 40000), (0, 40001), (2, 40002)
    assert dense[0 * 65536 + 40000] == 2  # towards (1, 8080) four times, and (2, 5432)
    assert dense[2 * 65536 + 5432] == 1 and dense[2 * 65536 + 40002] == 1


def test_peer_counts_beyond_the_packed_pair_range() -> None:
    """Sorted path with so many services that (endpoint, endpoint) no longer packs into one int64."""
    size = 60_000 * 65536
    src_key = np.array([59_999 * 65536 + 40000, 59_999 * 65536 + 40000, 1 * 65536 + 40001], np.int64)
    dst_key = np.array([59_998 * 65536 + 8080, 59_998 * 65536 + 8080, 59_998 * 65536 + 8080], np.int64)
    keys, counts = peer_counts(src_key, dst_key, size)
    assert dict(zip(keys.tolist(), counts.tolist(), strict=True)) == {
        1 * 65536 + 40001: 1, 59_998 * 65536 + 8080: 2, 59_999 * 65536 + 40000: 1}


def test_dense_and_sorted_orientation_agree_around_the_peer_threshold() -> None:
    """Endpoints reached from a few distinct peers (around LISTEN_MIN_PEERS) in many records each."""
    rng = np.random.default_rng(11)
    n, services = 30_000, 5
    src = rng.integers(0, services, n).astype(np.int32)
    dst = (src + rng.integers(1, services, n).astype(np.int32)) % services
    sport = rng.choice(np.array([32800, 32801, 32802, 33000, 33001, 40000, 50051, 50052, 8080]), n).astype(np.int32)
    dport = rng.choice(np.array([33000, 33001, 50051, 32800, 40000, 40001, 40002]), n).astype(np.int32)
    flags = rng.choice(np.array([0, 0, 0, 16, 2, 18], np.int16), n)
    configured = np.array([3 * 65536 + 40000], np.int64)
    dense = edge_keys(src, dst, sport, dport, flags, services, configured, dense=True)
    assert np.array_equal(dense, edge_keys(src, dst, sport, dport, flags, services, configured, dense=False))


@pytest.mark.parametrize("version", [5, 2])
def test_every_world_flow_reference_is_a_true_edge_on_the_callees_port(tmp_path: Path, version: int) -> None:
    """The demo world's 3 daytime hours (as `test_world_recovery`), v2 without tcp-flags too: every oriented
    (caller, callee, port) reference, weak ones included, is a true edge on the callee's listening port. By
    records, payment's 50051 and checkout's pooled gRPC ports above it were all busy in v2 and four
    payment -> checkout references on checkout's ephemeral ports appeared (hidden in the service pairs by the
    true checkout <-> payment cycle)."""
    from datetime import UTC, datetime, timedelta

    world_app = pytest.importorskip("shadowing.world.app")
    world_inventory = pytest.importorskip("shadowing.world.inventory")
    traffic = pytest.importorskip("shadowing.world.traffic")
    from shadowing.dependencies.inventory import load_inventory

    app = world_app.build_app()
    start = datetime(2025, 1, 6, 12, tzinfo=UTC)
    end = start + timedelta(hours=3)
    inventory = world_inventory.synthetic_inventory(app, start, end, seed=3)
    records = traffic.generate_flow_records(app, inventory, start, end, seed=3)
    inventory_csv = world_inventory.write_inventory_csv(inventory, tmp_path / "inventory.csv")
    flows = traffic.write_flow_logs(records, tmp_path / f"flows-v{version}.log", version=version)
    result = infer_flow_files([flows], load_inventory(inventory_csv), FlowOptions())
    truth = {(e.caller, e.callee, app.service(e.callee).port) for e in app.edges}
    found = {(r.caller, r.target, r.port) for r in result.references}
    assert found - truth == set()
    assert {(a, b) for a, b, _ in truth} - {(a, b) for a, b, _ in found} == set()
