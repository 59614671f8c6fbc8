"""A small reusable Great Expectations 1.x runner: a pandas frame + a suite (JSON file or dict) → a report.

GX is imported lazily (it takes seconds) and its ephemeral context is created once per process.

    report = run_suite(df, Path("include/expectations/capacity_fingerprint.json"), name="capacity")
    if not report.success: ...  # report.failures: one readable line per failed expectation
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

_context: Any = None
_lock = threading.Lock()
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    failures: list[str] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)


def context() -> Any:
    """The process-wide ephemeral GX context."""
    global _context
    with _lock:
        if _context is None:
            import logging

            # GX logs every decorator it registers at INFO and draws progress bars: keep the logs readable.
            for logger in ("great_expectations", "great_expectations._docs_decorators"):
                logging.getLogger(logger).setLevel(logging.WARNING)
            import great_expectations as gx

            for logger in ("great_expectations", "great_expectations._docs_decorators",
                           "great_expectations.data_context.types.base"):
                logging.getLogger(logger).setLevel(logging.WARNING)

            _context = gx.get_context(mode="ephemeral")
            try:
                from great_expectations.data_context.types.base import ProgressBarsConfig

                _context.variables.progress_bars = ProgressBarsConfig(globally=False)
            except (ImportError, AttributeError, TypeError):
                pass
        return _context


def load_suite_dict(suite: Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(suite, dict):
        return suite
    return json.loads(Path(suite).read_text())


def validate_frame(df: pd.DataFrame, suite: Path | dict[str, Any], *, name: str,
                   result_format: str = "COMPLETE") -> Any:
    """The GX ``ExpectationSuiteValidationResult`` of ``df`` against ``suite`` (what Data Docs render)."""
    ctx = context()  # first: it quiets GX's import-time logging
    import great_expectations as gx

    spec = load_suite_dict(suite)
    with _lock:
        try:
            source = ctx.data_sources.get(name)
        except (KeyError, ValueError):
            source = ctx.data_sources.add_pandas(name)
        try:
            asset = source.get_asset(name)
        except (LookupError, ValueError):
            asset = source.add_dataframe_asset(name)
        try:
            batch_def = asset.get_batch_definition(name)
        except (KeyError, ValueError):
            batch_def = asset.add_batch_definition_whole_dataframe(name)
    gx_suite = gx.ExpectationSuite(name=spec.get("name", name), expectations=[
        {"type": e["type"], "kwargs": dict(e.get("kwargs", {})), "meta": e.get("meta", {})}
        for e in spec.get("expectations", [])])
    return batch_def.get_batch(batch_parameters={"dataframe": df}).validate(
        gx_suite, result_format={"result_format": result_format})


def run_suite(df: pd.DataFrame, suite: Path | dict[str, Any], *, name: str,
              label_columns: tuple[str, ...] = ()) -> ValidationReport:
    """Validate ``df`` against ``suite``; failures name the expectation, column and (with ``label_columns``)
    the offending rows by those columns' values."""
    if df.empty:
        return ValidationReport(False, [f"{name}: nothing to validate (empty table)"])
    result = validate_frame(df, suite, name=name)
    failures = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kwargs = cfg.kwargs
        column = kwargs.get("column") or kwargs.get("column_A") or ""
        where = f" {column}" if column else ""
        detail = ""
        res = r.result or {}
        idx = res.get("unexpected_index_list") or []
        if label_columns and idx:
            rows = []
            for i in idx[:_MAX_EXAMPLES]:
                pos = i if isinstance(i, int) else None
                if pos is None or pos not in df.index:
                    continue
                rows.append("/".join(str(df.at[pos, c]) for c in label_columns if c in df.columns))
            detail = f" at {', '.join(rows)}" + ("…" if len(idx) > _MAX_EXAMPLES else "")
        elif res.get("partial_unexpected_list"):
            detail = f" unexpected {res['partial_unexpected_list'][:_MAX_EXAMPLES]}"
        elif "observed_value" in res:
            detail = f" observed {res['observed_value']!r}"
        if r.exception_info and r.exception_info.get("raised_exception"):
            detail += f" (error: {r.exception_info.get('exception_message')})"
        note = (cfg.meta or {}).get("notes") or ""
        failures.append(f"{name}: {cfg.type}{where}{detail}{' — ' + note if note else ''}")
    return ValidationReport(bool(result.success), failures, dict(result.statistics or {}))
