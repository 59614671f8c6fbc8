"""The fast flow-log reader (compiled, byte ranges) gives exactly what the exact (pyarrow) reader gives.

Reference = `infer_flow_edges(iter_flow_log(path))`: the exact reader's batches through the same accumulator.
Candidate = `infer_flow_files([path])`: the fast reader, or — for what it cannot vouch for — the exact reader.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowing.dependencies import flowlogs, flowscan
from shadowing.dependencies.flowlogs import (
    DEFAULT_V2,
    FlowOptions,
    FlowResult,
    edge_keys,
    infer_flow_edges,
    infer_flow_files,
    iter_flow_log,
)
from shadowing.dependencies.inventory import Inventory, inventory_from_records, load_inventory
from shadowing.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "deps" / "flowlogs" / "aws-vpc-flow-logs"
V5 = ["version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets",
      "bytes", "start", "end", "action", "log-status", "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type",
      "pkt-srcaddr", "pkt-dstaddr", "region", "az-id", "flow-direction", "traffic-path"]
INVENTORY = inventory_from_records([
    {"ip": "10.0.0.1", "service": "web"}, {"ip": "10.0.0.2", "service": "api"},
    {"ip": "10.0.0.3", "service": "db", "valid_to": 1700000600},
    {"ip": "10.0.0.3", "service": "cache", "valid_from": 1700000600},
    {"ip": "10.0.0.4", "service": "alb", "kind": "load_balancer"}, {"ip": "2001:db8::5", "service": "v6"}])


def summary(result: FlowResult) -> tuple:
    refs = sorted((r.caller, r.target, r.port, r.count, r.first_seen, r.last_seen, r.extra["windows"],
                   r.extra["bytes"], r.extra["strength"]) for r in result.references)
    rejected = sorted((r.caller, r.target, r.port, r.count) for r in result.rejected)
    return refs, rejected, result.stats, sorted(result.observed_services)


def exact(path: Path, inventory: Inventory, options: FlowOptions | None = None) -> tuple:
    return summary(infer_flow_edges(iter_flow_log(path), inventory, options or FlowOptions(min_windows=1)))


def fast(path: Path, inventory: Inventory, options: FlowOptions | None = None, workers: int = 1) -> tuple:
    return summary(infer_flow_files([path], inventory, options or FlowOptions(min_windows=1), workers=workers))


def no_exact_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the fast reader must cope alone (a fallback to the exact reader fails the test)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fast reader fell back to the exact reader")
    monkeypatch.setattr(flowlogs, "iter_flow_log", refuse)


@pytest.fixture(scope="module")
def world_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two hours of the demo world's traffic (true call graph + noise) as v5 with a header and as default v2."""
    from shadowing.world.app import build_app
    from shadowing.world.inventory import synthetic_inventory, write_inventory_csv
    from shadowing.world.traffic import generate_flow_records, write_flow_logs

    folder = tmp_path_factory.mktemp("world")
    app = build_app()
    start = datetime(2025, 1, 6, tzinfo=UTC)
    end = start + timedelta(hours=2)
    inventory = synthetic_inventory(app, start, end, seed=3)
    frame = generate_flow_records(app, inventory, start, end, seed=3)
    write_flow_logs(frame, folder / "v5.log", version=5)
    write_flow_logs(frame, folder / "v2.log", version=2)
    write_inventory_csv(inventory, folder / "inventory.csv")
    return folder / "v5.log", folder / "v2.log", folder / "inventory.csv"


@pytest.mark.parametrize("version", ["v5", "v2"])
def test_world_traffic_fast_equals_exact(world_logs: tuple[Path, Path, Path], version: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    v5, v2, inventory_csv = world_logs
    path = v5 if version == "v5" else v2
    inventory = load_inventory(inventory_csv)
    options = FlowOptions(min_windows=2, listen_ports={"db": {5432}})
    reference = exact(path, inventory, options)
    assert reference[2]["used"] > 1000 and len(reference[0]) >= 10
    no_exact_reader(monkeypatch)
    monkeypatch.setattr(flowscan, "BLOCK_BYTES", 1 << 16)  # many blocks, lines cut at block ends
    monkeypatch.setattr(flowscan, "PARALLEL_MIN_BYTES", 0)
    assert fast(path, inventory, options, workers=1) == reference
    assert fast(path, inventory, options, workers=3) == reference  # three byte ranges, three threads


def line(**values: str) -> str:
    record = {"version": "5", "account-id": "123456789012", "interface-id": "eni-1", "srcaddr": "10.0.0.1",
              "dstaddr": "10.0.0.2", "srcport": "40000", "dstport": "8080", "protocol": "6", "packets": "3",
              "bytes": "600", "start": "1700000000", "end": "1700000060", "action": "ACCEPT", "log-status": "OK",
              "vpc-id": "vpc-1", "subnet-id": "subnet-1", "instance-id": "i-1", "tcp-flags": "2", "type": "IPv4",
              "pkt-srcaddr": "10.0.0.1", "pkt-dstaddr": "10.0.0.2", "region": "us-east-1", "az-id": "use1-az1",
              "flow-direction": "egress", "traffic-path": "-"}
    record.update({k.replace("_", "-"): v for k, v in values.items()})
    return " ".join(record[f] for f in V5)


NOISY = [
    line(), line(srcaddr="10.0.0.2", dstaddr="10.0.0.1", srcport="8080", dstport="40000", tcp_flags="18"),
    line(start="1700000700", dstaddr="10.0.0.3", pkt_dstaddr="10.0.0.3", dstport="5432", tcp_flags="0"),
    line(start="1700000100", dstaddr="10.0.0.3", pkt_dstaddr="10.0.0.3", dstport="5432", tcp_flags="0"),
    line(srcaddr="10.0.0.4", pkt_srcaddr="10.0.0.1", srcport="41000"),  # LB ENI: the pkt-* address is the client
    line(srcaddr="10.0.0.4", pkt_srcaddr="-", srcport="41001"),  # a health check from the LB itself
    line(action="REJECT", dstport="22", tcp_flags="2"), line(action="REJECT", dstport="-"),
    line(srcaddr="-", dstaddr="-", srcport="-", dstport="-", protocol="-", packets="-", bytes="-", start="-",
         action="-", log_status="NODATA", tcp_flags="-", pkt_srcaddr="-", pkt_dstaddr="-"),
    line(log_status="SKIPDATA"), line(log_status="-"), line(protocol="1", srcport="0", dstport="0"),
    line(protocol="17", srcport="53000", dstport="53", tcp_flags="0"), line(dstaddr="2001:db8::5"),
    line(dstaddr="10.0.0.99", pkt_dstaddr="10.0.0.99"), line(srcport="0080", dstport="70000", tcp_flags="0"),
    line(bytes="123456789012345", start="1700000059"), line(action="accept"), line(srcaddr="10.0.0.10"),
    line(dstaddr="10.0.0.1", pkt_dstaddr="10.0.0.1"),
]


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_noisy_records_fast_equals_exact(tmp_path: Path, trailing_newline: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "noisy.log"
    path.write_text(" ".join(V5) + "\n" + "\n".join(NOISY * 3) + ("\n" if trailing_newline else ""))
    reference = exact(path, INVENTORY)
    assert reference[2]["rejected"] == 6 and reference[2]["nodata"] == 6 and reference[2]["not_tcp_udp"] == 3
    no_exact_reader(monkeypatch)
    assert fast(path, INVENTORY) == reference
    scanner = flowscan.RangeScanner(flowscan.Layout(V5), INVENTORY)  # a block smaller than two lines
    partial = scanner.scan(path, len(" ".join(V5)) + 1, path.stat().st_size, block_bytes=400)
    assert partial.stats["records"] == len(NOISY) * 3


@pytest.mark.parametrize(("name", "body"), [
    ("comment", "{0}\n# a comment between records\n{1}\n"),
    ("blank", "{0}\n\n{1}\n"),
    ("crlf", "{0}\r\n{1}\r\n"),
    ("plus", "{0}\n{1}\n"),
])
def test_input_the_fast_reader_leaves_to_the_exact_one(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / f"{name}.log"
    second = NOISY[1].replace(" 8080 ", " +8080 ") if name == "plus" else NOISY[1]
    path.write_text(" ".join(V5) + "\n" + body.format(NOISY[0], second))
    with pytest.raises(flowscan.NeedsExactReader):
        flowscan.scan_file(path, V5, len(" ".join(V5)) + 1, INVENTORY)
    assert outcome(fast, path) == outcome(exact, path)  # '+8080': the same InputError naming line 3


def outcome(reader, path: Path) -> tuple | str:  # type: ignore[no-untyped-def]
    """The reader's summary, or its InputError's text."""
    try:
        return reader(path, INVENTORY)
    except InputError as exc:
        return str(exc)


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    good = "\n".join(NOISY[:2] * 40)
    path.write_text(" ".join(V5) + "\n" + good + "\n" + NOISY[0].replace(" 8080 ", " http ") + "\n")
    with pytest.raises(InputError, match=r"bad.log:82.*dstport"):
        infer_flow_files([path], INVENTORY)
    path.write_text(" ".join(V5) + "\n" + good + "\n" + "5 123 eni-1 10.0.0.1\n" + good + "\n")
    with pytest.raises(InputError, match=r"bad.log:82.*25 space-separated fields"):
        infer_flow_files([path], INVENTORY)


def test_aws_documentation_examples_fast_equals_exact() -> None:
    inventory = inventory_from_records([
        {"ip": "172.31.16.139", "service": "bastion"}, {"ip": "172.31.16.21", "service": "web"},
        {"ip": "172.31.9.69", "service": "jump"}, {"ip": "172.31.9.12", "service": "windows"},
        {"ip": "52.213.180.42", "service": "client"}, {"ip": "10.0.0.62", "service": "server"},
        {"ip": "10.20.33.164", "service": "tgw-client"}, {"ip": "10.40.2.236", "service": "tgw-web"}])
    for example in sorted(EXAMPLES.glob("*.log")):
        if "nat-gateway" in example.name:  # a format without ports: refused by both
            with pytest.raises(InputError, match="srcport"):
                infer_flow_files([example], inventory)
            continue
        assert fast(example, inventory) == exact(example, inventory), example.name


def test_dense_and_sorted_orientation_agree() -> None:
    rng = np.random.default_rng(5)
    n, services = 20_000, 7
    src = rng.integers(0, services, n).astype(np.int32)
    dst = (src + rng.integers(1, services, n).astype(np.int32)) % services
    ports = np.array([-1, 22, 80, 443, 5432, 8080, 33000, 50051, 70000])
    sport = np.where(rng.random(n) < 0.5, rng.choice(ports, n), rng.integers(32768, 61000, n)).astype(np.int32)
    dport = np.where(rng.random(n) < 0.5, rng.choice(ports, n), rng.integers(1024, 61000, n)).astype(np.int32)
    flags = rng.choice(np.array([0, 2, 18, 16, 3, 19], np.int16), n)
    configured = np.array([2 * 65536 + 5432, 4 * 65536 + 33000], np.int64)
    dense = edge_keys(src, dst, sport, dport, flags, services, configured, dense=True)
    assert np.array_equal(dense, edge_keys(src, dst, sport, dport, flags, services, configured, dense=False))


GOOD = {"srcaddr": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "2001:db8::5", "10.0.0.9", "-"],
        "srcport": ["80", "40000", "5432", "-", "0", "65535", "70000", "007"], "protocol": ["6", "17", "1", "-"],
        "bytes": ["0", "500", "123456789012", "-"], "start": ["1700000000", "1700000650", "1700000061", "-"],
        "action": ["ACCEPT", "REJECT", "-", "accept"], "log-status": ["OK", "NODATA", "SKIPDATA", "-"]}
GOOD.update({"dstaddr": GOOD["srcaddr"], "dstport": GOOD["srcport"], "end": GOOD["start"],
             "packets": GOOD["bytes"]})
BROKEN = ["x", "", "+5", "99999999999", "#", "1.5", "\t80"]


@st.composite
def record_lines(draw: st.DrawFn) -> str:
    """A default-v2 line: mostly valid values per field, now and then a broken one (or a field too many/few)."""
    values = [draw(st.sampled_from(BROKEN)) if draw(st.integers(0, 30)) == 0 else
              draw(st.sampled_from(GOOD.get(name, ["2", "123456789012", "eni-1"])))
              for name in DEFAULT_V2]
    values[0] = "2"
    cut = draw(st.sampled_from([0] * 30 + [-1, 1]))
    return " ".join(values[:len(values) + cut] if cut < 0 else values + ["extra"] * cut)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(lines=st.lists(record_lines(), min_size=1, max_size=30), header=st.booleans())
def test_random_lines_fast_equals_exact_or_both_refuse(tmp_path: Path, lines: list[str], header: bool) -> None:
    """Any mix of plausible and broken values: the same result, or the same InputError (file and line)."""
    path = tmp_path / "random.log"
    path.write_text((" ".join(DEFAULT_V2) + "\n" if header else "") + "\n".join(lines) + "\n")
    assert outcome(fast, path) == outcome(exact, path)
