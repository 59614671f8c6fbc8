"""Bad-input corpus: every case in cases.json is a small file (or folder) and an expected outcome.

Outcomes: ``error`` — the CLI exits 2 with ONE line on stderr naming the place (``match``), or the package
function raises a ShadowingError whose message matches; ``ok`` — accepted (bad parts skipped with a warning),
and what was good survives (``check``); ``any`` — either of the two, but never an unhandled exception and,
when refused, the one-line reason names the place. A ``known_bug`` case is an expected failure (strict): it
documents a crash found in the code and turns red when fixed, so the entry can be corrected.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shadowing.cli import main
from shadowing.errors import ShadowingError

HERE = Path(__file__).resolve().parent
CASES = json.loads((HERE / "cases.json").read_text())
GOOD_INVENTORY = "ip,service\n10.0.1.10,web\n10.0.1.20,api\n"
GOOD_COMPOSE = ("services:\n  web:\n    image: web\n    environment:\n      API_URL: http://api:8080\n"
                "  api:\n    image: api\n")


def test_corpus_is_broad_enough() -> None:
    kinds = {c["kind"] for c in CASES}
    assert len(CASES) >= 40
    assert {"metrics", "cloudwatch-export", "cloudwatch-response", "configs", "flowlogs", "discovery",
            "inventory", "dag-params", "warehouse-rows"} <= kinds
    for case in CASES:
        assert (HERE / "cases" / case["path"]).exists(), case["id"]


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def _judge_cli(case: dict[str, Any], rc: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and " error: " in line]
    if case["expect"] == "ok":
        assert rc == 0, f"{case['id']}: refused ({rc}): {err.strip()[-300:]}"
        return
    if case["expect"] == "error":
        assert rc == 2, f"{case['id']}: accepted but should be refused"
    if rc == 2:
        assert len(lines) == 1, f"{case['id']}: the reason must be one line: {err!r}"
        assert re.search(case["match"], lines[0]), f"{case['id']}: reason does not name the place: {lines[0]}"
    else:
        assert rc == 0, f"{case['id']}: exit {rc}"


def _graph_edges(path: Path) -> set[tuple[str, str]]:
    graph = json.loads(path.read_text())
    return {(e["source"], e["target"]) for e in graph["edges"]}


def _file_case(case: dict[str, Any], path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kind, check = case["kind"], case.get("check")
    out = tmp_path / "out.json"
    if kind in ("metrics", "cloudwatch-export"):
        rc, err = _run_cli(["fingerprint", "--metrics", str(path), "--out", str(out)], capsys)
        _judge_cli(case, rc, err)
        if rc == 0:
            fp = json.loads(out.read_text())
            if check == "fingerprint_metric":
                assert re.search(case["match"], json.dumps(sorted(fp["services"]["web"]["metrics"])))
                assert "cpu_utilization" in fp["services"]["web"]["metrics"]  # the good rows survive
            if check == "fingerprint_service":
                assert "web" in fp["services"]
        return
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(GOOD_INVENTORY)
    good = tmp_path / "good-configs"
    good.mkdir()
    (good / "docker-compose.yml").write_text(GOOD_COMPOSE)
    base = ["deps", "--configs", str(good), "--out", str(out)]
    flag = {"flowlogs": "--flow-logs", "discovery": "--discovery-logs", "configs": "--configs"}.get(kind)
    if kind == "inventory":
        argv = [*base, "--inventory", str(path)]
    else:
        argv = [*base, "--inventory", str(inventory), flag, str(path)]  # type: ignore[list-item]
    rc, err = _run_cli(argv, capsys)
    _judge_cli(case, rc, err)
    if rc == 0:
        # never a lost good graph: the good config's edge is still there beside whatever was bad
        assert ("web", "api") in _graph_edges(out), f"{case['id']}: the good edge was lost"
        if kind == "configs" and case["match"]:  # what was skipped is said, naming the file and the part
            warnings = json.loads(out.read_text())["graph"]["warnings"]
            assert any(re.search(case["match"], w) for w in warnings), f"{case['id']}: no warning: {warnings}"


class _CloudWatchReplay:
    """Stands in for CloudWatch to replay a malformed GetMetricData response (moto never sends one)."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        first = kwargs["MetricDataQueries"][0]["Id"]
        text = json.dumps(self.response).replace('"q0"', json.dumps(first))
        return json.loads(text)


def _cloudwatch_case(path: Path) -> None:
    from datetime import UTC, datetime

    from shadowing.metrics.cloudwatch import extract

    extract(_CloudWatchReplay(json.loads(path.read_text())), None, region="us-east-1",
            start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 1, 2, tzinfo=UTC),
            instances={"i-1": "web"}, dimension_sets={})


def _dag_params_case(spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    if "env" in spec:
        from shadowing.settings import region_pairs

        for key, value in spec["env"].items():
            monkeypatch.setenv(key, value)
        try:
            region_pairs()
        except ValueError as exc:  # settings raise ValueError at parse time; re-raised as the CLI would
            raise ShadowingError(str(exc)) from exc
        return
    if spec["dag"] == "regional_failover":
        from shadowing.failover.steps import FailoverRequest, validate_request

        validate_request(FailoverRequest(**spec["conf"]), ["us-east-1"])
        return
    from shadowing.health.policy import HealthPolicy

    HealthPolicy(**spec["conf"])


def _set(payload: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        payload = payload[key]
    payload[last] = value


def _warehouse_case(case: dict[str, Any], spec: dict[str, Any], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    if case.get("check") == "previous_fingerprint":
        previous = tmp_path / Path(case["path"]).name
        previous.write_text(json.dumps(spec["payload"]))
        metrics = HERE / "cases" / "metrics" / "utf8_bom.csv"
        rc, err = _run_cli(["fingerprint", "--metrics", str(metrics), "--previous", str(previous),
                            "--out", str(tmp_path / "fp.json")], capsys)
        _judge_cli(case, rc, err)
        return
    from shadowing.blueprint.model import Blueprint
    from tests.unit.blueprint.test_builder import build

    payload = spec.get("payload") or build().payload
    for dotted, value in (spec.get("mutate") or {}).items():
        _set(payload, dotted, value)
    Blueprint.from_dict(payload)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_gives_a_clear_outcome(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if case.get("known_bug"):  # still runs: strict, so a fix shows up as XPASS → failure → update the entry
        request.applymarker(pytest.mark.xfail(reason=case["known_bug"], strict=True))
    path = HERE / "cases" / case["path"]
    kind = case["kind"]
    if kind in ("metrics", "cloudwatch-export", "flowlogs", "discovery", "inventory", "configs"):
        _file_case(case, path, tmp_path, capsys)
        return
    spec = json.loads(path.read_text())
    try:
        if kind == "cloudwatch-response":
            _cloudwatch_case(path)
        elif kind == "dag-params":
            _dag_params_case(spec, monkeypatch)
        else:
            _warehouse_case(case, spec, tmp_path, capsys)
            if case.get("check") == "previous_fingerprint":
                return
    except ShadowingError as exc:
        assert case["expect"] in ("error", "any"), f"{case['id']}: refused: {exc}"
        assert re.search(case["match"], str(exc)), f"{case['id']}: reason does not name the place: {exc}"
        return
    assert case["expect"] in ("ok", "any"), f"{case['id']}: accepted but should be refused"
