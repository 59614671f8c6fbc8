"""Property-based fuzzing of every input parser: only ShadowingError (InputError) may escape, never a crash;
and the invariants the rest of the system relies on (percentile order, launch tiers respect every edge).

Example counts stay modest so CI stays fast; a failure prints the minimal input that broke the parser.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shadowing.errors import ShadowingError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text that looks like the formats: mostly their own alphabet, some noise
FIELD_CHARS = st.sampled_from(list("0123456789abcdefABCDEF.:-_ /,;\"'\t=T+Z#") + ["\n", "\x00", "é", "\ufeff"])
noisy_text = st.text(FIELD_CHARS, max_size=400)
ints = st.integers(min_value=-(2 ** 40), max_value=2 ** 40)


def _write(data: str | bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="shadowing-fuzz-"))
    path = folder / name
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def _only_clear_errors(call) -> object:  # type: ignore[no-untyped-def]
    try:
        return call()
    except ShadowingError:
        return None


# ─────────────────────────────────────────────── metrics ───────────────────────────────────────────────

metric_names = st.sampled_from(["cpu_utilization", "memory_utilization", "network_in_bytes", "request_latency_ms",
                                "gc_pause_ms", "", "cpu utilization"])
timestamps = st.one_of(st.integers(1_600_000_000, 1_800_000_000).map(
    lambda t: __import__("datetime").datetime.fromtimestamp(t, __import__("datetime").UTC).isoformat()),
    st.integers(0, 2 ** 33).map(str), noisy_text.map(lambda s: s[:30]))
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), ints.map(str),
                   st.sampled_from(["", "nan", "-", "1e309", "0x10", "abc"]))


@st.composite
def tidy_csv(draw) -> str:  # type: ignore[no-untyped-def]
    header = draw(st.sampled_from(["timestamp,region,service,instance_id,metric,value",
                                   "region,timestamp,metric,service,value,instance_id",
                                   "timestamp,region,service,instance_id,metric"]))
    rows = draw(st.lists(st.tuples(timestamps, st.sampled_from(["us-east-1", "", "eu-west-1"]),
                                   st.sampled_from(["web", "api", "", "we,b"]), st.sampled_from(["i-1", "i-2", ""]),
                                   metric_names, values), max_size=30))
    lines = [header] + [",".join(r) for r in rows]
    if draw(st.booleans()):
        lines.append(draw(noisy_text))
    return "\n".join(lines) + "\n"


@FUZZ
@given(tidy_csv())
def test_tidy_metrics_csv_never_crashes(text: str) -> None:
    from shadowing.metrics.frame import read_metrics

    _only_clear_errors(lambda: read_metrics(_write(text, "metrics.csv")))


@FUZZ
@given(st.lists(st.tuples(timestamps, values), max_size=40), st.booleans())
def test_cloudwatch_export_csv_never_crashes(rows: list[tuple[str, str]], header: bool) -> None:
    from shadowing.metrics.frame import read_metrics

    text = ("timestamp,value\n" if header else "") + "".join(f"{t},{v}\n" for t, v in rows)
    _only_clear_errors(lambda: read_metrics(_write(text, "ec2_cpu_utilization_abc123.csv")))


@SLOW_FUZZ
@given(st.dictionaries(st.sampled_from(["web", "api", "db"]), st.lists(
    st.floats(min_value=0, max_value=1e9, allow_nan=False), min_size=1, max_size=60), min_size=1))
def test_fingerprint_percentiles_are_ordered(series: dict[str, list[float]]) -> None:
    import pandas as pd

    from shadowing.capacity.fingerprint import build
    from shadowing.metrics.frame import from_pandas

    rows = [{"timestamp": pd.Timestamp(1_700_000_000 + 60 * i, unit="s", tz="UTC"), "region": "us-east-1",
             "service": service, "instance_id": f"{service}-1", "metric": "network_in_bytes", "value": v}
            for service, vals in series.items() for i, v in enumerate(vals)]
    fp = build(from_pandas(pd.DataFrame(rows), source="fuzz"))
    checked = 0
    for service, spec in fp["services"].items():
        for stats in [*spec["metrics"].values(), *(spec.get("aggregate") or {}).values()]:
            if not isinstance(stats, dict) or "p50" not in stats:
                continue
            chain = [stats["min"], stats["p50"], stats["p90"], stats["p95"], stats["p99"], stats["max"]]
            assert all(not math.isnan(x) for x in chain), (service, chain)
            # quantiles carry ≤1% relative error, so allow that slack against the exact extremes
            assert chain[0] <= chain[1] * 1.01 + 1e-9, (service, chain)
            assert chain[1] <= chain[2] <= chain[3] <= chain[4], (service, chain)
            assert chain[4] <= chain[5] * 1.01 + 1e-9, (service, chain)
            checked += 1
    assert checked >= len(series)  # every service's metric was checked (the property cannot go vacuous)


# ─────────────────────────────────────────────── flow logs ───────────────────────────────────────────────

V3_V7 = ["vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr", "region",
         "az-id", "sublocation-type", "sublocation-id", "pkt-src-aws-service", "pkt-dst-aws-service",
         "flow-direction", "traffic-path", "ecs-cluster-name", "ecs-task-id", "reject-reason"]
ip = st.one_of(st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
               st.sampled_from(["-", "::1", "10.0.1.10", "x"]))
flow_value = st.one_of(ip, ints.map(str), st.sampled_from(["-", "ACCEPT", "REJECT", "OK", "NODATA", "SKIPDATA",
                                                           "egress", "ingress"]), noisy_text.map(lambda s: s[:12]))


@st.composite
def flow_log(draw) -> tuple[bytes, list[str] | None]:  # type: ignore[no-untyped-def]
    from shadowing.dependencies.flowlogs import DEFAULT_V2

    extra = draw(st.lists(st.sampled_from(V3_V7), unique=True, max_size=6))
    fields = draw(st.permutations(DEFAULT_V2 + extra)) if extra else list(DEFAULT_V2)
    with_header = draw(st.booleans()) or bool(extra)
    lines = [" ".join(fields)] if with_header else []
    for _ in range(draw(st.integers(0, 20))):
        count = len(fields) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        lines.append(" ".join(draw(st.lists(flow_value, min_size=max(count, 0), max_size=max(count, 0)))))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(noisy_text))
    data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
    return data, (None if with_header else draw(st.sampled_from([None, list(DEFAULT_V2)])))


@FUZZ
@given(flow_log())
def test_flow_logs_v2_to_v7_never_crash(case: tuple[bytes, list[str] | None]) -> None:
    from shadowing.dependencies.flowlogs import read_flow_log

    data, fields = case
    _only_clear_errors(lambda: read_flow_log(data, fields, "fuzz.log"))


@FUZZ
@given(st.binary(max_size=600))
def test_flow_logs_survive_arbitrary_bytes(data: bytes) -> None:
    from shadowing.dependencies.flowlogs import read_flow_log

    _only_clear_errors(lambda: read_flow_log(data, None, "bytes.log"))


# ───────────────────────────────────────────── discovery logs ─────────────────────────────────────────────

discovery_line = st.one_of(
    st.builds(lambda s, ip_, port: f"2025/01/01 00:00:0{s % 10} [DEBUG] http: Request GET "
                                   f"/v1/health/service/{'srv-api'}?passing=1 (1ms) from={ip_}:{port}",
              st.integers(0, 9), ip, ints),
    st.builds(lambda name: f'2025/01/01 00:00:00 [INFO] agent: Synced service "{name}"', noisy_text),
    st.builds(lambda name: f"Registered instance {name}/host:{name}:8080 with status UP", noisy_text),
    noisy_text)


@FUZZ
@given(st.lists(discovery_line, max_size=30))
def test_discovery_logs_never_crash(lines: list[str]) -> None:
    from shadowing.dependencies.discovery import parse_discovery_lines
    from shadowing.dependencies.inventory import inventory_from_records

    inventory = inventory_from_records([{"ip": "10.0.1.10", "service": "web"}])
    _only_clear_errors(lambda: parse_discovery_lines(lines, inventory, "fuzz.log"))


# ─────────────────────────────────────────── configs (YAML) ───────────────────────────────────────────

yaml_scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False), noisy_text.map(lambda s: s[:40]),
                         st.sampled_from(["http://api:8080", "postgres://db:5432/app", "redis:6379", "api"]))
yaml_values = st.recursive(yaml_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(
        ["services", "environment", "image", "ports", "depends_on", "links", "kind", "metadata", "name", "spec",
         "containers", "env", "value", "template", "apiVersion", "targetPort", "port", "selector"]), kids,
        max_size=5)), max_leaves=25)


@SLOW_FUZZ
@given(yaml_values, st.sampled_from(["docker-compose.yml", "deploy.yaml", "service-config.json"]), st.booleans())
def test_k8s_and_compose_configs_never_crash(doc: object, name: str, corrupt: bool) -> None:
    from shadowing.dependencies.configs import extract_configs

    text = yaml.safe_dump(doc) if not name.endswith(".json") else __import__("json").dumps(doc)
    if corrupt:
        text = text[: len(text) // 2] + "\n  : [\n"
    path = _write(text, name)
    _only_clear_errors(lambda: extract_configs([path.parent]))


# ───────────────────────────────────────────── inventory CSV ─────────────────────────────────────────────

@FUZZ
@given(st.lists(st.tuples(ip, st.sampled_from(["web", "api", "", "a b"]), timestamps, timestamps), max_size=20),
       st.sampled_from(["ip,service", "ip,service,valid_from,valid_to", "service,ip", "ip"]))
def test_inventory_csv_never_crashes(rows: list[tuple[str, str, str, str]], header: str) -> None:
    from shadowing.dependencies.inventory import load_inventory

    width = header.count(",") + 1
    text = header + "\n" + "".join(",".join(r[:width]) + "\n" for r in rows)
    _only_clear_errors(lambda: load_inventory(_write(text, "inventory.csv")))


# ─────────────────────────────────────────── graph launch tiers ───────────────────────────────────────────

@FUZZ
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.just([f"s{i}" for i in range(n)]),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n))))
def test_launch_tiers_are_a_valid_order_of_the_condensation(graph: tuple[list[str], list[tuple[int, int]]]) -> None:
    import networkx as nx

    from shadowing.dependencies.graph import launch_order_of

    nodes, pairs = graph
    edges = [(nodes[a], nodes[b]) for a, b in pairs if a != b]
    assume(nodes)
    tiers, cycles = launch_order_of(nodes, edges)
    tier_of = {node: i for i, tier in enumerate(tiers) for node in tier}
    assert sorted(tier_of) == sorted(nodes) and sum(map(len, tiers)) == len(nodes)  # each node exactly once
    for caller, callee in edges:  # a callee (dependency) is launched in an earlier or the same tier
        assert tier_of[callee] <= tier_of[caller], (caller, callee, tiers)
    digraph = nx.DiGraph(edges)
    digraph.add_nodes_from(nodes)
    sccs = [sorted(c) for c in nx.strongly_connected_components(digraph) if len(c) > 1]
    assert sorted(sorted(c) for c in cycles) == sorted(sccs)
    for component in cycles:  # a cycle launches as one group: all in one tier
        assert len({tier_of[n] for n in component}) == 1
    condensed = nx.condensation(digraph)
    assert nx.is_directed_acyclic_graph(condensed)
    for a, b in condensed.edges:  # same tier only inside a component: across components strictly earlier
        caller = next(iter(condensed.nodes[a]["members"]))
        callee = next(iter(condensed.nodes[b]["members"]))
        assert tier_of[callee] < tier_of[caller]
