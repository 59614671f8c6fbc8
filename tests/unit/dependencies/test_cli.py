"""`python -m shadowing deps`: files in, graph out; bad input → exit 2 with a one-line reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shadowing.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "deps"


def test_deps_writes_the_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("ip,service\n10.44.1.23,loadgenerator\n10.44.1.27,frontend\n")
    out = tmp_path / "graph.json"
    code = main(["deps", "--configs", str(FIXTURES / "online-boutique" / "kubernetes-manifests"),
                 "--inventory", str(inventory),
                 "--flow-logs", str(FIXTURES / "flowlogs/aws-vpc-flow-logs/examples-v3-tcp-flags.log"),
                 "--discovery-logs", str(FIXTURES / "discovery-logs/consul-agent.log"),
                 "--access-logs", str(FIXTURES / "flowlogs/envoy-istio/istio-access-log-examples.log"),
                 "--validate", "--out", str(out)])
    assert code == 0
    graph = json.loads(out.read_text())
    assert {"nodes", "edges", "graph"} <= set(graph)
    assert {"launch_tiers", "cycles", "dangling", "warnings"} <= set(graph["graph"])
    # 16 config edges + the access-log edge (the sleep pod's address is loadgenerator's in this inventory)
    assert len(graph["edges"]) == 17
    access = next(e for e in graph["edges"] if e["target"] == "httpbin")
    assert access["source"] == "loadgenerator" and access["evidence"][0]["kind"] == "access_log"
    assert "17 edges" in capsys.readouterr().out


@pytest.mark.parametrize("args, reason", [
    (["--flow-logs", "{bad}"], "bad.log:2"),
    (["--inventory", "{missing}"], "does not exist"),
    (["--configs", "{missing}"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                         reason: str) -> None:
    bad = tmp_path / "bad.log"
    bad.write_text("2 1 eni-1 10.0.0.1 10.0.0.2 40000 80 6 1 10 100 160 ACCEPT OK\n2 1 eni-1 x\n")
    inventory = tmp_path / "inv.csv"
    inventory.write_text("ip,service\n10.0.0.1,a\n")
    argv = ["deps", "--inventory", str(inventory)] + \
        [a.format(bad=bad, missing=tmp_path / "nope") for a in args] + ["--out", str(tmp_path / "g.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and reason in err and err.startswith("shadowing deps: error:")
