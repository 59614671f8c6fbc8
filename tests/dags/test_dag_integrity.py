"""House rules for every DAG file: loads without import errors, is thin, and carries its metadata."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
# Heavy or side-effectful modules must not be imported at a DAG file's top level: DAG files are parsed constantly.
FORBIDDEN_TOP_LEVEL = {"pandas", "numpy", "great_expectations", "boto3", "botocore", "sqlalchemy", "networkx",
                       "pyarrow", "duckdb", "requests", "moto"}


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dag_files_exist() -> None:
    assert DAG_FILES, "dags/ holds no DAG file"


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert not dagbag.import_errors, dagbag.import_errors


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_each_file_defines_the_dag_named_after_it(dagbag, path: Path) -> None:  # type: ignore[no-untyped-def]
    assert path.stem in dagbag.dags, f"{path.name} must define dag_id {path.stem!r}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_house_rules(dagbag, path: Path) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags[path.stem]
    assert dag.tags, "tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, "doc_md (use doc_md=__doc__)"
    assert dag.catchup is False, "catchup=False"
    assert dag.default_args.get("owner") not in (None, "", "airflow"), "an owner in default_args"
    # Retries are a DAG-wide default; a task may opt out deliberately (a failed validation is deterministic).
    assert dag.default_args.get("retries", 0) >= 1, "retries in default_args"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_no_heavy_imports_at_top_level(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_TOP_LEVEL, f"{path.name}: top-level import of {name}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_parsing_stays_light(path: Path) -> None:
    """Importing a DAG file must not pull pandas/GX/numpy in transitively (checked in a fresh interpreter).

    boto3 is not on this list: Airflow itself imports it when an Asset is defined (the Amazon provider's
    asset-URI handlers are discovered at Asset creation), whatever the DAG file does.
    """
    probe = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "heavy = sorted({'pandas', 'great_expectations', 'numpy', 'networkx'} "
        "& set(sys.modules)); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{path.name} imports {out.stdout.strip()} at parse time"
