from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shadowing.cli import main
from shadowing.world.app import SHOPFRONT
from shadowing.world.discovery import discovery_log_lines
from shadowing.world.inventory import synthetic_inventory
from shadowing.world.truth import ground_truth

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "world" / "consul-agent.log"
START = datetime(2025, 1, 6, 12, tzinfo=UTC)
END = START + timedelta(hours=1)
LINE = re.compile(r"^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(INFO|DEBUG|WARN|ERR)\] (agent|http): (.*)$")
LOOKUP = re.compile(r"Request GET /v1/health/service/([\w-]+)\?passing=1 \([\d.]+µs\) from=([\d.]+):\d+$")


def test_real_consul_lines_match_our_parser_format() -> None:
    real = [x.strip() for x in FIXTURE.read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert real and all(LINE.match(x) for x in real)


def test_discovery_lines_give_nodes_and_only_config_edges() -> None:
    inv = synthetic_inventory(SHOPFRONT, START, END, seed=2)
    lines = discovery_log_lines(SHOPFRONT, inv, START, END, seed=2)
    assert all(LINE.match(x) for x in lines)
    edges = set()
    for x in lines:
        m = LOOKUP.search(x)
        if m:  # attribute the caller's IP as of the line's time (one IP changes owner mid-window)
            t = datetime.strptime(x[:19], "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
            owners = [e.service for e in inv.endpoints if e.ip == m.group(2) and e.valid_from <= t
                      and (e.valid_to is None or t < e.valid_to)]
            assert len(owners) == 1, x
            edges.add((owners[0], m.group(1)))
    assert edges and edges <= SHOPFRONT.config_edges()
    assert not edges & SHOPFRONT.traffic_only_edges()
    assert any("Deregistered service" in x for x in lines)
    later = [x for x in lines if "Synced service" in x and not x.startswith("2025/01/06 12:00:00")]
    assert len(later) == 2  # the replacement and the IP re-user register mid-window
    assert any("from=127.0.0.1" in x for x in lines)  # agent noise


def test_ground_truth_consistent_with_app() -> None:
    t = ground_truth(SHOPFRONT, 4, start=START, end=START + timedelta(days=2))
    assert {(e["source"], e["target"]) for e in t["edges"]} == SHOPFRONT.edge_pairs()
    assert {tuple(e) for e in t["traffic_only_edges"]} == SHOPFRONT.traffic_only_edges()
    assert t["cycles"] == SHOPFRONT.cycles()
    for name, s in t["services"].items():
        if SHOPFRONT.service(name).managed:
            assert "peak_cpu_units_p99" not in s
            continue
        assert s["mean_cpu_units"] < s["peak_cpu_units_p99"] <= s["peak_cpu_units_max"]
        assert s["peak_cpu_units_p99"] <= s["instances"] * s["vcpus_per_instance"]
        assert s["instances_needed_at_target"] >= 1


def test_truth_and_export_commands_without_aws(tmp_path: Path) -> None:
    assert main(["world", "truth", "--out", str(tmp_path / "t.json"), "--days", "1", "--seed", "3"]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["app"] == "shopfront"
    assert main(["world", "export", "--out", str(tmp_path / "x"), "--start", "2025-01-06T12:00:00Z",
                 "--end", "2025-01-06T12:10:00Z"]) == 0
    names = {p.name for p in (tmp_path / "x").iterdir()}
    assert names == {"flow-logs-v5.log", "flow-logs-v2.log", "discovery.log", "inventory.csv", "truth.json"}
    assert main(["world", "export", "--out", str(tmp_path / "y"), "--start", "2025-01-06T12:00:00Z",
                 "--end", "2025-01-06T11:00:00Z"]) == 2


def test_bad_options_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["world", "seed", "--endpoint-url", "http://x", "--no-such-option"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["world", "seed", "--endpoint-url", "http://x", "--services", "-3"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["world", "chaos", "--endpoint-url", "http://x"])
    assert exc.value.code == 2
