"""Flow logs: the AWS documentation's example lines, direction rules, time-ranged inventory, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowing.dependencies.flowlogs import FlowOptions, infer_flow_edges, parse_log_format, read_flow_log
from shadowing.dependencies.inventory import inventory_from_records, load_inventory
from shadowing.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "deps" / "flowlogs" / "aws-vpc-flow-logs"
ONE_WINDOW = FlowOptions(min_windows=1)


def edges(result) -> dict[tuple[str, str, int], object]:
    return {(r.caller, r.target, r.port): r for r in result.references}


def test_default_v2_examples_without_header() -> None:
    table = read_flow_log(EXAMPLES / "examples-v2-default.log")
    assert table.num_rows == 7  # comments skipped; NODATA/SKIPDATA kept as records with nulls
    inventory = inventory_from_records([
        {"ip": "172.31.16.139", "service": "bastion"}, {"ip": "172.31.16.21", "service": "web"},
        {"ip": "172.31.9.69", "service": "jump"}, {"ip": "172.31.9.12", "service": "windows"}])
    result = infer_flow_edges([table], inventory, ONE_WINDOW)
    assert set(edges(result)) == {("bastion", "web", 22)}
    assert result.stats["rejected"] == 1  # RDP attempt: declared-but-blocked evidence, not an edge
    assert [(r.caller, r.target, r.port) for r in result.rejected] == [("jump", "windows", 3389)]
    assert result.stats["nodata"] == 2  # NODATA + SKIPDATA
    assert result.stats["not_tcp_udp"] == 2  # the ICMP pair
    assert result.stats["outside_inventory"] == 1  # the IPv6 SSH


def test_tcp_flags_examples_give_the_caller() -> None:
    table = read_flow_log(EXAMPLES / "examples-v3-tcp-flags.log")  # format from its '# format:' comment
    assert table.num_rows == 8 and "tcp-flags" in table.column_names
    inventory = inventory_from_records([{"ip": "52.213.180.42", "service": "client"},
                                        {"ip": "10.0.0.62", "service": "server"}])
    result = infer_flow_edges([table], inventory, ONE_WINDOW)
    assert set(edges(result)) == {("client", "server", 5001)}
    ref = edges(result)[("client", "server", 5001)]
    assert ref.count == 8  # request and response records fold into one oriented edge


def test_tcp_flags_beat_port_heuristics() -> None:
    """The server listens on an ephemeral-range port and the client uses port 80: only SYN tells."""
    lines = (b"version srcaddr dstaddr srcport dstport protocol bytes start end action tcp-flags log-status\n"
             b"3 10.0.0.1 10.0.0.2 80 40000 6 500 1000 1060 ACCEPT 2 OK\n"
             b"3 10.0.0.2 10.0.0.1 40000 80 6 900 1000 1060 ACCEPT 18 OK\n")
    inventory = inventory_from_records([{"ip": "10.0.0.1", "service": "a"}, {"ip": "10.0.0.2", "service": "b"}])
    result = infer_flow_edges([read_flow_log(lines)], inventory, ONE_WINDOW)
    assert set(edges(result)) == {("a", "b", 40000)}


def test_transit_gateway_records_resolve_through_pkt_addresses() -> None:
    table = read_flow_log(EXAMPLES / "examples-v3-transit-gateway.log")
    inventory = inventory_from_records([{"ip": "10.20.33.164", "service": "client"},
                                        {"ip": "10.40.2.236", "service": "web"}])
    result = infer_flow_edges([table], inventory, ONE_WINDOW)
    assert set(edges(result)) == {("client", "web", 80)}


def test_v5_traffic_to_aws_services_is_outside_the_inventory() -> None:
    table = read_flow_log(EXAMPLES / "examples-v5-traffic-path.log")
    inventory = inventory_from_records([{"ip": "10.0.0.71", "service": "app"}])
    result = infer_flow_edges([table], inventory, ONE_WINDOW)
    assert result.references == [] and result.stats["outside_inventory"] == 2


def test_format_without_ports_is_refused_with_file_and_line() -> None:
    with pytest.raises(InputError, match=r"examples-v3-nat-gateway.log:1.*srcport"):
        read_flow_log(EXAMPLES / "examples-v3-nat-gateway.log")


def test_bad_field_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    path.write_text("2 1 eni-1 10.0.0.1 10.0.0.2 40000 80 6 1 10 100 160 ACCEPT OK\n"
                    "2 1 eni-1 10.0.0.1 10.0.0.2 40000 80 6 1 10 100 160 ACCEPT OK\n"
                    "2 1 eni-1 10.0.0.1 10.0.0.2 40000 http 6 1 10 100 160 ACCEPT OK\n")
    with pytest.raises(InputError, match=r"bad.log:3.*dstport"):
        read_flow_log(path)
    path.write_text("2 1 eni-1 10.0.0.1 10.0.0.2 40000 80 6 1 10 100 160 ACCEPT OK\n2 1 eni-1 10.0.0.1\n")
    with pytest.raises(InputError, match=r"bad.log:2.*14 space-separated fields"):
        read_flow_log(path)
    path.write_text("7 a b c\n")
    with pytest.raises(InputError, match=r"bad.log:1.*no header"):
        read_flow_log(path)


def test_log_format_from_describe_flow_logs() -> None:
    fields = parse_log_format("${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${start} ${action}")
    table = read_flow_log(b"5 10.0.0.1 10.0.0.2 41000 5432 6 100 ACCEPT\n", fields=fields)
    assert table.num_rows == 1
    with pytest.raises(InputError):
        parse_log_format("version srcaddr")


def test_time_ranged_inventory_follows_address_reuse(tmp_path: Path) -> None:
    """10.0.0.5 belongs to `orders` until t=2000, then to `billing`: flows are attributed as of their start."""
    inventory_file = tmp_path / "inventory.csv"
    inventory_file.write_text("ip,service,valid_from,valid_to\n"
                              "10.0.0.9,web,,\n"
                              "10.0.0.5,orders,1970-01-01T00:00:00Z,2000\n"
                              "10.0.0.5,billing,2000,\n")
    inventory = load_inventory(inventory_file)
    header = "version srcaddr dstaddr srcport dstport protocol bytes start end action log-status\n"
    rows = [f"2 10.0.0.9 10.0.0.5 {40000 + i} 8080 6 100 {t} {t + 60} ACCEPT OK" for i, t in
            enumerate((1000, 1100, 1200, 2100, 2200, 2300))]
    result = infer_flow_edges([read_flow_log((header + "\n".join(rows) + "\n").encode())], inventory,
                              FlowOptions(min_windows=2))
    assert set(edges(result)) == {("web", "orders", 8080), ("web", "billing", 8080)}


def test_inventory_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    path.write_text("ip,service,valid_from\n10.0.0.1,a,2024-01-01T00:00:00Z\n10.0.0.2,b,yesterday\n")
    with pytest.raises(InputError, match=r"inv.csv:3 field 'valid_from'"):
        load_inventory(path)
    path.write_text("address,name\n10.0.0.1,a\n")
    with pytest.raises(InputError, match=r"inv.csv:1.*missing column 'ip'"):
        load_inventory(path)


def test_thresholds_make_one_off_sessions_weak() -> None:
    header = "version srcaddr dstaddr srcport dstport protocol bytes start end action log-status\n"
    rows = ["2 10.0.0.1 10.0.0.2 40001 22 6 5000 1000 1060 ACCEPT OK"]  # one admin session, one window
    rows += [f"2 10.0.0.1 10.0.0.3 {40100 + i} 5432 6 5000 {1000 + 60 * i} {1060 + 60 * i} ACCEPT OK"
             for i in range(5)]
    inventory = inventory_from_records([{"ip": "10.0.0.1", "service": "api"}, {"ip": "10.0.0.2", "service": "box"},
                                        {"ip": "10.0.0.3", "service": "db"}])
    result = infer_flow_edges([read_flow_log((header + "\n".join(rows) + "\n").encode())], inventory,
                              FlowOptions(min_windows=2))
    strength = {(r.caller, r.target): r.extra["strength"] for r in result.references}
    assert strength[("api", "box")] < 0.5 <= strength[("api", "db")]


def test_load_balancer_rows_of_the_inventory_are_excluded() -> None:
    header = "version srcaddr dstaddr srcport dstport protocol bytes start end action log-status\n"
    rows = [f"2 10.0.0.100 10.0.0.1 {40000 + i} 8080 6 300 {1000 + 60 * i} {1060 + 60 * i} ACCEPT OK"
            for i in range(5)]
    inventory = inventory_from_records([{"ip": "10.0.0.1", "service": "web"},
                                        {"ip": "10.0.0.100", "service": "alb", "kind": "load_balancer"}])
    result = infer_flow_edges([read_flow_log((header + "\n".join(rows) + "\n").encode())], inventory, ONE_WINDOW)
    assert result.references == [] and result.stats["outside_inventory"] == 5


V5_HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
             "log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr")
SHARED_INVENTORY = [{"ip": "10.0.16.6", "service": "api-gateway"}, {"ip": "10.0.32.8", "service": "search"},
                    {"ip": "10.0.0.5", "service": "web"}, {"ip": "10.0.9.9", "service": "nat"}]


def shared_traffic() -> list[tuple[str, str, str]]:
    """(v2 fields, v5 extra fields) of one window's records, as AWS logs them on every ENI a flow crosses.

    api-gateway calls search, which listens on 33000, above the ephemeral floor, from its ephemeral port 32996:
    the request on both ENIs (SYN), the response on both (SYN-ACK). And web reaches search through a NAT ENI:
    v2 sees only the NAT's address, v5's pkt-srcaddr the real caller.
    """
    t = 1_736_164_623
    gateway, search, web, nat = "10.0.16.6", "10.0.32.8", "10.0.0.5", "10.0.9.9"
    rows = []
    for eni in ("eni-gw", "eni-search"):
        rows.append((f"123 {eni} {gateway} {search} 32996 33000 6 3 1321 {t} {t + 57} ACCEPT OK", "2",
                     f"{gateway} {search}"))
    for eni in ("eni-search", "eni-gw"):
        rows.append((f"123 {eni} {search} {gateway} 33000 32996 6 17 21146 {t} {t + 57} ACCEPT OK", "18",
                     f"{search} {gateway}"))
    rows.append((f"123 eni-search {nat} {search} 40000 33000 6 4 900 {t} {t + 57} ACCEPT OK", "2", f"{web} {search}"))
    rows.append((f"123 eni-search {search} {nat} 33000 40000 6 4 9000 {t} {t + 57} ACCEPT OK", "18",
                 f"{search} {web}"))
    return rows


def write_shared_traffic(folder: Path, packed_v2: bool) -> tuple[Path, Path]:
    import gzip

    v5 = folder / "flow-v5.log"
    v5.write_text("\n".join([V5_HEADER] + [f"5 {common} vpc-1 subnet-1 i-1 {flags} IPv4 {packets}"
                                           for common, flags, packets in shared_traffic()]) + "\n")
    v2_text = "".join(f"2 {common}\n" for common, _, _ in shared_traffic())
    v2 = folder / ("flow-v2.log.gz" if packed_v2 else "flow-v2.log")
    v2.write_bytes(gzip.compress(v2_text.encode()) if packed_v2 else v2_text.encode())
    return v5, v2


@pytest.mark.parametrize("packed_v2", [False, True], ids=["plain", "gzip"])  # fast and exact reader agree
@pytest.mark.parametrize("v2_first", [False, True])
def test_the_same_flow_in_v5_and_v2_counts_once_from_its_v5_record(tmp_path: Path, packed_v2: bool,
                                                                   v2_first: bool) -> None:
    """Counted twice, the v2 copies (no tcp-flags) made the caller's ephemeral endpoint (api-gateway, 32996) as
    busy as a listening one, and the lower-port rule then oriented them as a phantom search -> api-gateway:32996;
    the NAT-side v2 copies named the NAT, not web, as the caller."""
    from shadowing.dependencies.flowlogs import infer_flow_files

    inventory = inventory_from_records(SHARED_INVENTORY)
    v5, v2 = write_shared_traffic(tmp_path, packed_v2)
    alone = infer_flow_files([v5], inventory, ONE_WINDOW)
    both = infer_flow_files([v2, v5] if v2_first else [v5, v2], inventory, ONE_WINDOW)
    expected = {("api-gateway", "search", 33000): 4, ("web", "search", 33000): 2}
    assert {key: ref.count for key, ref in edges(alone).items()} == expected
    assert {key: ref.count for key, ref in edges(both).items()} == expected
    assert [ref.extra for ref in both.references] == [ref.extra for ref in alone.references]
    assert both.stats["duplicates"] == 6 and both.stats["used"] == alone.stats["used"] == 6
    assert [w for w in both.warnings if "counted once" in w] == [
        f"{v2}: 6 flow record(s) also read from {v5} counted once, from there (the same flow in two logs)"]


def test_a_flow_log_given_twice_counts_once_and_distinct_files_add_up(tmp_path: Path) -> None:
    from shadowing.dependencies.flowlogs import infer_flow_files

    inventory = inventory_from_records(SHARED_INVENTORY)
    v5, _ = write_shared_traffic(tmp_path, False)
    alone = infer_flow_files([v5], inventory, ONE_WINDOW)
    twice = infer_flow_files([v5, v5], inventory, ONE_WINDOW)
    assert [(r.caller, r.target, r.port, r.count, r.extra) for r in twice.references] == \
        [(r.caller, r.target, r.port, r.count, r.extra) for r in alone.references]
    later = tmp_path / "flow-v5-later.log"  # the next hour: other records, nothing in common
    later.write_text(v5.read_text().replace("1736164", "1736168"))
    both = infer_flow_files([v5, later], inventory, ONE_WINDOW)
    assert both.stats["duplicates"] == 0 and both.stats["used"] == 2 * alone.stats["used"]
    assert {(r.caller, r.target): r.count for r in both.references} == {("api-gateway", "search"): 8,
                                                                        ("web", "search"): 4}


def test_a_format_without_the_identity_fields_is_said_to_be_unmatched(tmp_path: Path) -> None:
    from shadowing.dependencies.flowlogs import infer_flow_files

    inventory = inventory_from_records(SHARED_INVENTORY)
    v5, v2 = write_shared_traffic(tmp_path, False)
    bare = tmp_path / "bare.log"  # no interface-id, packets or end: records cannot be told apart from others'
    bare.write_text("srcaddr dstaddr srcport dstport protocol bytes start\n10.0.16.6 10.0.32.8 41000 33000 6 10 5\n")
    result = infer_flow_files([v5, bare], inventory, ONE_WINDOW)
    assert any(w.startswith(f"{bare}: its flow-log format lacks interface-id, packets, end") for w in result.warnings)
    assert result.stats["duplicates"] == 0


@pytest.mark.parametrize("dense", [True, False], ids=["compiled", "sorted"])  # both orientation paths
@pytest.mark.parametrize("known", ["configured", "syn-proven"])
def test_a_known_listener_outranks_a_busy_client_port(known: str, dense: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived connection from api-gateway's ephemeral port 32996 to search's 33000 (above the ephemeral
    floor) makes both endpoints busy; the lower-port rule then took 32996 for the server. A port the
    configuration names, or one a SYN proved listening, is the server's first."""
    header = "version interface-id srcaddr dstaddr srcport dstport protocol bytes start end action log-status" + \
        (" tcp-flags" if known == "syn-proven" else "") + "\n"
    rows = []
    for window in range(3):  # no SYN after the connection's first window
        t = 1_000 + 60 * window
        flags = (" 2", " 18") if known == "syn-proven" and window == 0 else (" 0", " 0") if known == "syn-proven" \
            else ("", "")
        for eni in ("eni-gw", "eni-search"):
            rows.append(f"2 {eni} 10.0.16.6 10.0.32.8 32996 33000 6 900 {t} {t + 59} ACCEPT OK{flags[0]}")
            rows.append(f"2 {eni} 10.0.32.8 10.0.16.6 33000 32996 6 9000 {t} {t + 59} ACCEPT OK{flags[1]}")
    inventory = inventory_from_records(SHARED_INVENTORY)
    listen = {"search": {33000}} if known == "configured" else {}
    options = FlowOptions(min_windows=1, listen_ports=listen)
    if not dense:
        from shadowing.dependencies import flowlogs

        monkeypatch.setattr(flowlogs, "DENSE_LIMIT", 0)
    result = infer_flow_edges([read_flow_log((header + "\n".join(rows) + "\n").encode())], inventory, options)
    assert {key: ref.count for key, ref in edges(result).items()} == {("api-gateway", "search", 33000): 12}
