"""`python -m shadowing deps` end to end on hostile input: bad input exits 2 with one line naming the file and
line or field, or exits 0 with warnings naming what was skipped — never a traceback — and the edges from the
good parts are exactly those of the same input with the bad parts removed; `--out` is never half-written,
clobbered, or an input."""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from shadowing.cli import main

HEADER = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action " \
         "log-status"
COMPOSE = """services:
  web:
    image: web:1
    environment:
      API_URL: http://api:8080
  api:
    image: api:1
    environment:
      DB_HOST: db:5432
  db:
    image: postgres:15
"""
INVENTORY = "ip,service\n10.0.0.1,web\n10.0.0.2,api\n10.0.0.3,db\n"
CONSUL = '2024/01/01 00:00:00 [INFO] agent: Synced service "api"\n'
GOOD_EDGES = [("api", "db"), ("web", "api")]
INCLUDE = Path(__file__).resolve().parents[2] / "include"


def shadowing_process(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """`python -m shadowing …` as a real process, on this tree's package."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(INCLUDE), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "shadowing", *argv], capture_output=True, text=True, timeout=60,
                          check=False, env=env, **kwargs)  # type: ignore[call-overload]


def flow_lines() -> list[str]:
    lines = [HEADER]
    for window in range(3):
        t = 1_700_000_000 + window * 60
        lines.append(f"2 123 eni-1 10.0.0.1 10.0.0.2 40000 8080 6 10 1000 {t} {t + 30} ACCEPT OK")
        lines.append(f"2 123 eni-1 10.0.0.2 10.0.0.3 40001 5432 6 10 1000 {t} {t + 30} ACCEPT OK")
    return lines


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "docker-compose.yml").write_text(COMPOSE)
    (tmp_path / "inv.csv").write_text(INVENTORY)
    (tmp_path / "flow.log").write_text("\n".join(flow_lines()) + "\n")
    (tmp_path / "disc.log").write_text(CONSUL)
    return {"cfg": tmp_path / "cfg", "inv": tmp_path / "inv.csv", "flow": tmp_path / "flow.log",
            "disc": tmp_path / "disc.log", "out": tmp_path / "graph.json", "tmp": tmp_path}


def deps(world: dict[str, Path], **override: Path | str) -> list[str]:
    paths = {**world, **override}
    return ["deps", "--configs", str(paths["cfg"]), "--flow-logs", str(paths["flow"]), "--inventory",
            str(paths["inv"]), "--discovery-logs", str(paths["disc"]), "--out", str(paths["out"])]


def edges_of(path: Path) -> list[tuple[str, str]]:
    return sorted((e["source"], e["target"]) for e in json.loads(path.read_text())["edges"])


def observed(path: Path) -> list[list[dict[str, object]]]:
    """Each edge's evidence from logs (config evidence is stamped with the wall clock)."""
    return [[x for x in e["evidence"] if x["kind"] != "config"] for e in json.loads(path.read_text())["edges"]]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("shadowing deps: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


def test_the_clean_world_maps_both_edges(world: dict[str, Path]) -> None:
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES


# ---------------------------------------------------------------------------------------------- --out


def test_out_a_folder_is_refused_in_one_line(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder = world["tmp"] / "graphs"
    folder.mkdir()
    refused(capsys, deps(world, out=folder), "graphs", "--out", "folder")


def test_out_below_a_file_is_refused_in_one_line(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, deps(world, out=world["inv"] / "graph.json"), "inv.csv", "--out")


@pytest.mark.parametrize("which", ["inv", "flow", "disc"])
def test_out_naming_an_input_never_overwrites_it(world: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                 which: str) -> None:
    before = world[which].read_bytes()
    refused(capsys, deps(world, out=world[which]), "--out", "one of the inputs")
    assert world[which].read_bytes() == before


def test_out_naming_a_file_inside_the_configs_folder_never_overwrites_it(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    compose = world["cfg"] / "docker-compose.yml"
    refused(capsys, deps(world, out=compose), "docker-compose.yml", "--configs folder")
    assert compose.read_text() == COMPOSE


def test_a_write_that_fails_midway_leaves_the_previous_graph_whole(world: dict[str, Path]) -> None:
    """A real process whose file-size limit (as on a full disk) stops the write after 400 bytes: the old code
    truncated the previous graph and died with a traceback."""
    previous = '{"edges": []}\n'
    world["out"].write_text(previous)
    limit = 400

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = shadowing_process(deps(world), preexec_fn=small_files)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("shadowing deps: error:")
    assert "graph.json" in run.stderr
    assert world["out"].read_text() == previous
    assert [p.name for p in world["out"].parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_previous_graph_that_is_not_a_graph_is_refused(world: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    previous = world["tmp"] / "prev.json"
    previous.write_text("[1, 2]")
    refused(capsys, [*deps(world), "--previous", str(previous)], "prev.json", "not a node-link graph")


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda edge: {**edge, "evidence": "x"}, id="evidence-text"),
    pytest.param(lambda edge: {**edge, "evidence": [5, {"kind": None, "first_seen": "x", "count": "z"}]},
                 id="evidence-items"),
    pytest.param(lambda edge: {**edge, "evidence": [{**edge["evidence"][0], "weight": "heavy"}]}, id="weight-text"),
    pytest.param(lambda edge: 5, id="edge-number"),
])
def test_a_previous_graph_with_misshapen_evidence_keeps_the_rest(world: dict[str, Path],
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 spoil: object) -> None:
    """A spoilt evidence list in --previous used to end in AttributeError; now only that edge's history is
    dropped (with a warning): the result equals the run whose previous graph lacks that edge."""
    assert main(deps(world)) == 0
    previous = json.loads(world["out"].read_text())
    web_api = next(i for i, e in enumerate(previous["edges"]) if e["source"] == "web")
    without = {**previous, "edges": [e for i, e in enumerate(previous["edges"]) if i != web_api]}
    spoilt = {**previous, "edges": [spoil(e) if i == web_api else e  # type: ignore[operator]
                                    for i, e in enumerate(previous["edges"])]}
    outputs = []
    for name, graph in (("without", without), ("spoilt", spoilt)):
        path = world["tmp"] / f"{name}.json"
        path.write_text(json.dumps(graph))
        out = world["tmp"] / f"graph-{name}.json"
        capsys.readouterr()
        assert main([*deps(world, out=out), "--previous", str(path)]) == 0
        outputs.append((observed(out), capsys.readouterr().err))
    assert outputs[1][0] == outputs[0][0]
    assert "warning: previous graph: 1 edge(s) or evidence item(s)" in outputs[1][1] or \
        "warning: previous graph: 2 edge(s) or evidence item(s)" in outputs[1][1]


@pytest.mark.parametrize("option, value", [
    ("--min-confidence", "nan"), ("--min-confidence", "5"), ("--min-confidence", "inf"),
    ("--min-windows", "-3"), ("--min-bytes", "-1"),
])
def test_thresholds_no_edge_can_meet_are_refused_before_the_graph_is_replaced(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    """`--min-confidence 5` used to write a graph whose every edge was weak over the last good one."""
    assert main(deps(world)) == 0
    last = world["out"].read_bytes()
    capsys.readouterr()
    refused(capsys, [*deps(world), option, value], repr(option))
    assert world["out"].read_bytes() == last


# ---------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name, text", [
    ("deep.json", "[" * 100_000 + "]" * 100_000),
    ("deep.yaml", "[" * 100_000 + "]" * 100_000),
    ("deep900.json", '{"a":' * 900 + "1" + "}" * 900),
    # "billion laughs": 9^7 values once the aliases are expanded
    ("laughs.yaml", 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(6))),
])
def test_a_hostile_config_file_is_skipped_with_a_warning(world: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                         name: str, text: str) -> None:
    (world["cfg"] / name).write_text(text)
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    err = capsys.readouterr().err
    assert any(line.startswith("warning:") and name in line and "skipped" in line for line in err.splitlines())


def test_a_configmap_embedding_deep_json_costs_nothing_else(world: dict[str, Path]) -> None:
    (world["cfg"] / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata:\n"
                                          "  x.json: '" + "[" * 5000 + "]" * 5000 + "'\n")
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES


@pytest.mark.parametrize("name, content", [
    ("bad.yaml", b"a: [1, 2\nb: c\n"),
    ("binary.yaml", b"a: 1\n" + bytes(range(256)) * 8),  # PyYAML's reason spans two lines
    ("binary.json", bytes(range(256)) * 8),
    ("empty.json", b""),
    ("tab.yaml", b"a:\n\tb: 1\n"),
])
def test_broken_config_files_are_warned_about_and_cost_nothing(world: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str], name: str,
                                                               content: bytes) -> None:
    (world["cfg"] / name).write_bytes(content)
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any(line.startswith("warning:") and f"{name}:" in line for line in lines)
    assert all(line.startswith(("warning:", "INFO ", "DEBUG ")) for line in lines), lines  # one line each


@pytest.mark.parametrize("upper_first", [True, False])
def test_service_names_differing_by_case_give_the_same_graph_in_any_file_order(world: dict[str, Path],
                                                                               upper_first: bool) -> None:
    """`API` in one compose file and `api` in another are one DNS name: the node used to be named after
    whichever file sorted first."""
    (world["cfg"] / "docker-compose.yml").unlink()
    first, second = ("a", "b") if upper_first else ("b", "a")
    (world["cfg"] / f"{first}-compose.yml").write_text("services:\n  API:\n    image: api:2\n")
    (world["cfg"] / f"{second}-compose.yml").write_text(COMPOSE)
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    assert sorted(n["id"] for n in json.loads(world["out"].read_text())["nodes"]) == ["api", "db", "web"]


def test_compose_interpolation_takes_defaults_and_reports_what_it_cannot_resolve(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """`${DB_HOST:-db}` is db to docker compose; it used to be no address at all, and `${API_HOST}` vanished
    without a word."""
    (world["cfg"] / "docker-compose.yml").write_text(COMPOSE.replace("http://api:8080", "http://${API_HOST}:8080")
                                                     .replace("db:5432", "${DB_HOST:-db}:5432"))
    argv = ["deps", "--configs", str(world["cfg"]), "--out", str(world["out"])]
    assert main(argv) == 0
    assert edges_of(world["out"]) == [("api", "db")]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {world['cfg'] / 'docker-compose.yml'}: service 'web' environment API_URL: "
                        "${API_HOST} is not set here (no default); the address it holds is unknown"]


def test_an_empty_config_folder_is_reported(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    empty = world["tmp"] / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no configuration here\n")
    assert main(["deps", "--configs", str(empty), "--out", str(world["out"])]) == 0
    assert json.loads(world["out"].read_text())["edges"] == []
    assert any(line.startswith(f"warning: {empty}: no configuration file")
               for line in capsys.readouterr().err.splitlines())


def test_a_symlink_loop_and_an_empty_folder_are_harmless(world: dict[str, Path]) -> None:
    (world["cfg"] / "loop").symlink_to(world["cfg"])
    (world["cfg"] / "self").symlink_to(world["cfg"] / "self")
    (world["cfg"] / "empty").mkdir()
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES


# ---------------------------------------------------------------------------------------------- flow logs


def test_a_gzip_flow_log_maps_as_its_text(world: dict[str, Path]) -> None:
    assert main(deps(world)) == 0
    plain = observed(world["out"])
    assert all(any(x["kind"] == "flow" for x in evidence) for evidence in plain)
    packed = world["tmp"] / "flow.log.gz"
    packed.write_bytes(gzip.compress(world["flow"].read_bytes()))
    assert main(deps(world, flow=packed)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    assert observed(world["out"]) == plain


def decoded_before_cut(packed: bytes) -> bytes:
    """Everything zlib inflates of a cut-off gzip stream, fed one byte at a time (the reference)."""
    inflater = zlib.decompressobj(wbits=31)
    decoded = b"".join(inflater.decompress(packed[i:i + 1]) for i in range(len(packed)))
    assert not inflater.eof  # really cut off
    return decoded


@pytest.mark.parametrize("cut", [30, 200, 700])  # compressed bytes cut off the end (trailer, data blocks)
def test_a_truncated_gzip_flow_log_keeps_every_complete_line_and_warns_where_it_was_cut(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str], cut: int) -> None:
    """A cut-off delivery used to be refused as a whole: every complete record before the cut was lost."""
    lines = [flow_lines()[0]] + [line.replace("eni-1", f"eni-{n}") for n in range(120) for line in flow_lines()[1:]]
    packed = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)[:-cut]
    decoded = decoded_before_cut(packed)
    complete = decoded[:decoded.rfind(b"\n") + 1]
    kept = complete.count(b"\n")
    assert 1 < kept < len(lines) and len(decoded) > len(complete)  # the cut falls inside a record
    assert complete.decode().splitlines() == lines[:kept]
    world["flow"].write_bytes(complete)  # the reference: exactly the complete lines, as a plain file
    assert main(deps(world)) == 0
    expected = json.loads(world["out"].read_text())
    capsys.readouterr()
    (world["tmp"] / "flow.log.gz").write_bytes(packed)
    assert main(deps(world, flow=world["tmp"] / "flow.log.gz")) == 0
    graph = json.loads(world["out"].read_text())
    assert edges_of(world["out"]) == GOOD_EDGES
    assert graph["graph"]["stats"]["flow_records"] == expected["graph"]["stats"]["flow_records"] == kept - 1
    assert [[x for x in e["evidence"] if x["kind"] != "config"] for e in graph["edges"]] == \
        [[x for x in e["evidence"] if x["kind"] != "config"] for e in expected["edges"]]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warning = next(line for line in err.splitlines() if "flow.log.gz" in line)
    assert warning.startswith("warning: ") and f"compressed byte {len(packed)}" in warning, warning
    assert f"kept lines 1–{kept} " in warning and f"dropped the partial line {kept + 1} " in warning, warning
    assert any("flow.log.gz" in w and "cut off" in w for w in graph["graph"]["warnings"])


@pytest.mark.parametrize("body", [
    pytest.param(lambda text: gzip.compress(text)[:12] + bytes(range(256)) * 4, id="corrupt-blocks"),
    pytest.param(lambda text: gzip.compress(text)[:-8] + b"\0\0\0\0" + gzip.compress(text)[-4:], id="bad-crc"),
    pytest.param(lambda text: gzip.compress(text) + b"trailing words", id="trailing-garbage"),
    pytest.param(lambda text: b"\x1f\x8b\x63" + text, id="unknown-method"),
])
def test_a_corrupt_gzip_flow_log_is_refused_naming_it_and_the_last_graph_kept(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str], body: object) -> None:
    assert main(deps(world)) == 0
    last = world["out"].read_bytes()
    capsys.readouterr()
    packed = world["tmp"] / "flow.log.gz"
    packed.write_bytes(body(("\n".join(flow_lines() * 50) + "\n").encode()))  # type: ignore[operator]
    refused(capsys, deps(world, flow=packed), "flow.log.gz", "not a readable gzip file")
    assert world["out"].read_bytes() == last


@pytest.mark.parametrize("record", [
    "2 123 eni-1 10.0.0.1 10.0.0.3 40000 99999 6 10 1000 1700000000 1700000030 ACCEPT OK",
    "2 123 eni-1 10.0.0.1 10.0.0.3 -5 5432 6 10 1000 1700000000 1700000030 ACCEPT OK",
    "2 123 eni-1 10.0.0.1 10.0.0.3 40000 5432 6 -10 -1000 1700000000 1700000030 ACCEPT OK",
    "2 123 eni-1 10.0.0.1 10.0.0.3 40000 5432 6 10 1000 -5 -5 ACCEPT OK",
])
@pytest.mark.parametrize("copies", [1, 9])  # 9: enough for the listening-port rule to count the bogus port
def test_impossible_flow_records_are_skipped_with_a_warning_and_change_nothing(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str], record: str, copies: int) -> None:
    """Port 99999 used to be clipped to 65535 and orient a phantom weak edge db -> web."""
    assert main(deps(world)) == 0
    expected = json.loads(world["out"].read_text())
    capsys.readouterr()
    world["flow"].write_text("\n".join([*flow_lines(), *[record] * copies]) + "\n")
    assert main(deps(world)) == 0
    graph = json.loads(world["out"].read_text())
    assert observed(world["out"]) == [[x for x in e["evidence"] if x["kind"] != "config"]
                                      for e in expected["edges"]]
    assert graph["graph"]["weak_edges"] == expected["graph"]["weak_edges"]
    assert [w for w in graph["graph"]["warnings"] if w not in expected["graph"]["warnings"]] == [
        f"{world['flow']}: {copies} flow record(s) with a port outside 0–65535 or negative bytes or start skipped"]
    assert f"warning: {world['flow']}: {copies} flow record(s)" in capsys.readouterr().err


def test_the_dag_path_reports_impossible_records_too() -> None:
    """`map_sources` (the DAG's tables from CloudWatch/S3) drops them like the CLI, and says so."""
    from shadowing.dependencies.configs import ConfigFindings
    from shadowing.dependencies.flowlogs import read_flow_log
    from shadowing.dependencies.inventory import inventory_from_records
    from shadowing.dependencies.mapper import map_sources

    bogus = "2 123 eni-1 10.0.0.1 10.0.0.3 40000 99999 6 10 1000 1700000000 1700000030 ACCEPT OK"
    table = read_flow_log(("\n".join([*flow_lines(), bogus]) + "\n").encode())
    inventory = inventory_from_records([{"ip": f"10.0.0.{i}", "service": s}
                                        for i, s in enumerate(("web", "api", "db"), start=1)])
    graph = map_sources(ConfigFindings(), inventory, flow_tables=[table], now=1_700_001_000.0)
    assert sorted((e["source"], e["target"]) for e in graph["edges"]) == GOOD_EDGES
    assert graph["graph"]["weak_edges"] == []
    assert "flow-log records: 1 with a port outside 0–65535 or negative bytes or start skipped" in \
        graph["graph"]["warnings"]


def test_a_flow_log_header_naming_a_field_twice_is_refused(world: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """It used to end in pyarrow's KeyError ('Field "srcaddr" exists 2 times in schema')."""
    world["flow"].write_text("srcaddr srcaddr dstaddr srcport dstport\n10.0.0.1 10.0.0.1 10.0.0.2 40000 8080\n")
    refused(capsys, deps(world), "flow.log:1", "'srcaddr'", "twice")


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda lines: "\r\n".join(lines) + "\r\n", id="crlf"),
    pytest.param(lambda lines: "\n".join([*lines[:3], lines[0], *lines[3:]]) + "\n", id="header-in-the-middle"),
    pytest.param(lambda lines: "\n".join([*lines, "2 123 eni-1 - - - - - - - 1700000000 1700000060 - NODATA",
                                          "2 123 eni-1 - - - - - - - 1700000000 1700000060 - SKIPDATA"]) + "\n",
                 id="nodata-skipdata"),
    pytest.param(lambda lines: "\n".join([*lines, "2 123 eni-1 fd00::1 fd00::2 40000 8080 6 10 1000 1700000000 "
                                          "1700000030 ACCEPT OK"]) + "\n", id="ipv6-outside-inventory"),
    pytest.param(lambda lines: "\n".join(lines[1:]) + "\n", id="default-v2-without-header"),
    pytest.param(lambda lines: "\ufeff" + "\n".join(lines) + "\n", id="byte-order-mark"),  # used to exit 2
    pytest.param(lambda lines: "\ufeff" + "\r\n".join(lines[1:]) + "\r\n", id="byte-order-mark-v2-crlf"),
])
def test_harmless_flow_log_oddities_change_nothing(world: dict[str, Path], mangle: object) -> None:
    assert main(deps(world)) == 0
    expected = observed(world["out"])
    world["flow"].write_bytes(mangle(flow_lines()).encode())  # type: ignore[operator]
    assert main(deps(world)) == 0
    assert observed(world["out"]) == expected


def test_a_truncated_last_flow_line_is_refused_naming_it(world: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    world["flow"].write_text("\n".join(flow_lines()) + "\n2 123 eni-1 10.0.0.1 10.0.0.3 400")
    refused(capsys, deps(world), "flow.log:8")


@pytest.mark.parametrize("which", ["flow", "disc"])
def test_a_folder_given_as_a_log_is_refused_in_one_line(world: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                        which: str) -> None:
    refused(capsys, deps(world, **{which: world["cfg"]}), str(world["cfg"]), "folder" if which == "flow" else
            "not readable")


# ---------------------------------------------------------------------------------------------- discovery


@pytest.mark.parametrize("event, what", [
    ('{"eventName": "RegisterInstance", "requestParameters": "x"}', "requestParameters"),
    ('{"eventName": "DiscoverInstances", "requestParameters": [1], "sourceIPAddress": "10.0.0.1"}',
     "requestParameters"),
    ('{"eventName": "RegisterInstance", "requestParameters": {"serviceName": {"a": 1}}}', "serviceName"),
])
def test_a_misshapen_cloud_map_event_is_skipped_naming_its_line(world: dict[str, Path],
                                                                capsys: pytest.CaptureFixture[str], event: str,
                                                                what: str) -> None:
    world["disc"].write_text(CONSUL + event + "\n")
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    assert any(line.startswith("warning:") and "disc.log:2" in line and what in line
               for line in capsys.readouterr().err.splitlines())


def test_a_gzip_discovery_log_reads_as_its_text_and_a_truncated_one_keeps_its_complete_lines(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """A gzip log used to be read as replacement characters: no event, no word. A cut-off one used to be refused
    as a whole."""
    lookup = "2024-01-01T00:00:00 GET /v1/health/service/db?passing from=10.0.0.1:5555\n"
    world["disc"].write_text(CONSUL + lookup)
    assert main(deps(world)) == 0
    plain = json.loads(world["out"].read_text())["graph"]["stats"]
    assert plain["registrations"] == 1 and plain["lookups"] == 1
    packed = world["tmp"] / "disc.log.gz"
    packed.write_bytes(gzip.compress((CONSUL + lookup).encode()))
    assert main(deps(world, disc=packed)) == 0
    assert json.loads(world["out"].read_text())["graph"]["stats"] == plain
    assert edges_of(world["out"]) == [("api", "db"), ("web", "api"), ("web", "db")]
    capsys.readouterr()
    cut = gzip.compress(((CONSUL + lookup) * 500).encode(), mtime=0)[:-40]
    packed.write_bytes(cut)
    complete = decoded_before_cut(cut)
    complete = complete[:complete.rfind(b"\n") + 1].decode()
    assert 2 < complete.count("\n") < 1000
    assert main(deps(world, disc=packed)) == 0
    stats = json.loads(world["out"].read_text())["graph"]["stats"]
    assert (stats["registrations"], stats["lookups"]) == (complete.count("Synced"), complete.count("GET "))
    assert edges_of(world["out"]) == [("api", "db"), ("web", "api"), ("web", "db")]
    err = capsys.readouterr().err
    assert f"warning: {packed}: gzip stream cut off at compressed byte {len(cut)}" in err, err
    assert f"dropped the partial line {complete.count(chr(10)) + 1} " in err, err
    packed.write_bytes(gzip.compress(b"x" * 4000)[:10] + b"\xff" * 64)
    refused(capsys, deps(world, disc=packed), "disc.log.gz", "not a readable gzip file")


def test_a_discovery_log_with_no_event_read_is_reported(world: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    world["disc"].write_text("hello\nworld\n")
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    assert f"warning: {world['disc']}: none of its 2 line(s)" in capsys.readouterr().err


@pytest.mark.parametrize("line", [
    "2024/13/45 99:00:00 [INFO] GET /v1/health/service/db?passing from=10.0.0.1:5555",
    '{"eventName": "DiscoverInstances", "eventTime": "yesterday", "requestParameters": {"serviceName": "db"}, '
    '"sourceIPAddress": "10.0.0.1"}',
])
def test_a_lookup_whose_time_cannot_be_read_is_reported_naming_its_line(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Its caller is looked up as of 1970: with addresses given out later, it used to vanish without a word."""
    world["inv"].write_text("ip,service,valid_from,valid_to\n10.0.0.1,web,1600000000,\n10.0.0.2,api,,\n"
                            "10.0.0.3,db,,\n")
    world["disc"].write_text(CONSUL + line + "\n")
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    assert f"warning: {world['disc']}: 1 lookup line(s) without a readable time (first: line 2)" in \
        capsys.readouterr().err


def test_a_discovery_json_line_nested_too_deeply_is_refused_naming_it(world: dict[str, Path],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    world["disc"].write_text(CONSUL + '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    refused(capsys, deps(world), "disc.log:2")


# ---------------------------------------------------------------------------------------------- inventory


@pytest.mark.parametrize("value, field", [
    ("inf", "valid_to"), ("1e30", "valid_to"), ("-100", "valid_from"), ("9999999999", "valid_from"),
    ("0001-01-01", "valid_from"),
])
def test_inventory_times_outside_the_lookup_range_are_refused(world: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str], value: str,
                                                              field: str) -> None:
    cells = {"valid_from": ("", ""), "valid_to": ("", "")}
    cells[field] = (value, "") if field == "valid_from" else ("", value)
    world["inv"].write_text("ip,service,valid_from,valid_to\n"
                            f"10.0.0.1,web,{cells[field][0]},{cells[field][1]}\n10.0.0.2,api,,\n10.0.0.3,db,,\n")
    refused(capsys, deps(world), "inv.csv:2", repr(field))


@pytest.mark.parametrize("extra", [
    "10.0.0.2,other,,",  # both open-ended
    "10.0.0.2,other,1600000000,",  # from a time when api still holds it
])
def test_an_address_claimed_by_two_services_at_once_is_refused_naming_both_lines(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: str) -> None:
    """It used to attribute api's traffic to both, inventing web -> other and other -> db."""
    world["inv"].write_text("ip,service,valid_from,valid_to\n10.0.0.1,web,,\n10.0.0.2,api,,\n10.0.0.3,db,,\n"
                            f"{extra}\n")
    refused(capsys, deps(world), "inv.csv:5", "line 3", "'api'", "'other'")


def test_an_inventory_saved_with_a_byte_order_mark_is_read(world: dict[str, Path]) -> None:
    """Spreadsheets save CSV as UTF-8 with a BOM: the header used to read as '\\ufeffip', 'missing column ip'."""
    world["inv"].write_bytes(b"\xef\xbb\xbf" + INVENTORY.encode())
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES
    assert all(any(x["kind"] == "flow" for x in evidence) for evidence in observed(world["out"]))


def test_an_inventory_header_naming_a_column_twice_is_refused(world: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`ip,ip,service` used to take the second column silently (10.0.0.9 here, so web's flows vanished)."""
    world["inv"].write_text("ip,ip,service\n10.0.0.1,10.0.0.9,web\n10.0.0.2,10.0.0.2,api\n10.0.0.3,10.0.0.3,db\n")
    refused(capsys, deps(world), "inv.csv:1", "'ip'", "twice")


def test_an_address_handed_over_in_time_is_fine(world: dict[str, Path]) -> None:
    world["inv"].write_text("ip,service,valid_from,valid_to\n10.0.0.1,web,,\n10.0.0.2,api,,1800000000\n"
                            "10.0.0.3,db,,\n10.0.0.2,other,1800000000,\n10.0.0.2,api,1500000000,1600000000\n")
    assert main(deps(world)) == 0
    assert edges_of(world["out"]) == GOOD_EDGES


# ---------------------------------------------------------------------------------------------- real processes


@pytest.mark.parametrize("corrupt", ["inventory-inf", "discovery-folder"])
def test_a_real_process_never_prints_a_traceback(world: dict[str, Path], corrupt: str) -> None:
    override: dict[str, Path] = {}
    if corrupt == "inventory-inf":
        world["inv"].write_text("ip,service,valid_from,valid_to\n10.0.0.1,web,,inf\n")
    else:
        override["disc"] = world["cfg"]
    run = shadowing_process(deps(world, **override))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("shadowing deps: error:")
    assert not world["out"].exists()
