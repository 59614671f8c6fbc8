"""`shadowing blueprint show|query|refresh` against a SQLite warehouse (errors are one line, exit 2)."""

from __future__ import annotations

import json

import pytest

from shadowing.cli import main
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.store import upsert_blueprint_version


def test_show_and_query(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = open_warehouse(sqlite_url)
    upsert_blueprint_version(engine, primary_region="us-east-1", shadow_region="us-west-2",
                             payload={"services": {"web": {"count": 2}}})
    assert main(["blueprint", "show", "--warehouse-url", sqlite_url, "--region", "us-east-1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"services": {"web": {"count": 2}}}
    assert main(["blueprint", "query", "--warehouse-url", sqlite_url, "blueprint_history",
                 "--param", "region=us-east-1"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["version"] == 1 and row["is_current"] is True


@pytest.mark.parametrize("argv", [
    ["blueprint", "show", "--region", "eu-west-1"],
    ["blueprint", "show", "--region", "us-east-1", "--version", "7"],
    ["blueprint", "query", "no_such_query"],
    ["blueprint", "query", "blueprint_history", "--param", "region"],
    ["blueprint", "refresh", "--region", "ap-south-1"],
])
def test_bad_input_is_a_one_line_error(sqlite_url: str, capsys: pytest.CaptureFixture[str],
                                       argv: list[str]) -> None:
    assert main([*argv[:2], "--warehouse-url", sqlite_url, *argv[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("shadowing blueprint: error:")
