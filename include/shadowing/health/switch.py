"""Auditing the auto-failover switch: who turned it on or off, and when it was seen to change. Airflow-free.

The switch is an Airflow Variable (``shadowing_auto_failover``, ``{region: bool}``). Every monitor run compares
each region's state with the last audited one and writes an ``auto_failover_audit`` row (``switch_enabled`` /
``switch_disabled``) when it differs. Who changed it comes from Airflow's own audit trail, the event log: the
REST API (and so the UI) logs ``post_variable``/``patch_variable``/``delete_variable``/``bulk_variables`` with
the authenticated user as owner and the key in ``extra`` (the value masked), and the CLI logs
``cli_variables_set``/``…_delete``/``…_import`` with the OS user and the command line. A change that left no
trace there (an ``AIRFLOW_VAR_*`` environment variable, a secrets backend, a direct database edit, a task
calling ``Variable.set``) is audited as ``unknown (observed by primary_health_monitor run …)``.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from shadowing.errors import ShadowingError
from shadowing.warehouse.operations import last_switch_change, record_switch_state

log = logging.getLogger(__name__)

# Event names Airflow 3 writes to its `log` table when a Variable is created, edited or deleted.
VARIABLE_EVENTS = ("post_variable", "patch_variable", "delete_variable", "bulk_variables",
                   "cli_variables_set", "cli_variables_delete", "cli_variables_import")
MONITOR = "primary_health_monitor"


@dataclass(frozen=True)
class VariableEdit:
    """One edit of a Variable found in Airflow's event log."""

    at: datetime
    who: str
    event: str
    event_log_id: int | None = None
    certain: bool = True  # False: an import from a file, whose keys Airflow does not log

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "who": self.who, "event": self.event, "event_log_id": self.event_log_id,
                "certain": self.certain}


def _extra(entry: Mapping[str, Any]) -> dict[str, Any]:
    raw = entry.get("extra")
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _command_words(extra: Mapping[str, Any]) -> list[str]:
    """The CLI's logged command line (``str(sys.argv)``, secrets masked) as words."""
    text = extra.get("full_command")
    try:
        words = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError):
        return str(text or "").split()
    return [str(w) for w in words] if isinstance(words, list) else []


def _names_key(event: str, extra: Mapping[str, Any], key: str) -> bool | None:
    """True when the entry edited ``key``, None when it may have (an import), False otherwise."""
    if event in ("post_variable", "patch_variable", "delete_variable"):
        return key in (extra.get("key"), extra.get("variable_key"))
    if event == "bulk_variables":
        for action in extra.get("actions") or []:
            for entity in (action.get("entities") or []) if isinstance(action, dict) else []:
                if entity == key or (isinstance(entity, dict) and entity.get("key") == key):
                    return True
        return False
    if event in ("cli_variables_set", "cli_variables_delete"):
        return key in _command_words(extra)
    if event == "cli_variables_import":
        return None
    return False


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def variable_edits(entries: Iterable[Mapping[str, Any]], key: str) -> list[VariableEdit]:
    """The edits of Variable ``key`` among event-log entries (REST ``/api/v2/eventLogs`` items), oldest first."""
    edits = []
    for entry in entries:
        event = str(entry.get("event") or "")
        extra = _extra(entry)
        named = _names_key(event, extra, key)
        at = _parse_time(entry.get("when") or entry.get("dttm"))
        if named is False or at is None:
            continue
        who = str(entry.get("owner") or "anonymous")
        if event.startswith("cli_"):
            host = extra.get("host_name")
            who = f"{who} (CLI{f' on {host}' if host else ''})"
        event_id = entry.get("event_log_id", entry.get("id"))
        edits.append(VariableEdit(at, who, event, int(event_id) if isinstance(event_id, int) else None,
                                  certain=named is True))
    return sorted(edits, key=lambda e: (e.at, e.event_log_id or 0))


def attribute(edits: Sequence[VariableEdit], *, run_id: str | None) -> tuple[str, dict[str, Any]]:
    """Who changed the switch (the latest edit), and the evidence; ``unknown (…)`` without any edit."""
    certain = [e for e in edits if e.certain]
    chosen = certain[-1] if certain else (edits[-1] if edits else None)
    if chosen is None:
        return (f"unknown (observed by {MONITOR} run {run_id})",
                {"source": "none: no edit of the Variable in Airflow's event log"})
    who = chosen.who if chosen.certain else f"{chosen.who}? (variables imported from a file)"
    return who, {"source": "airflow_event_log", "event": chosen.event, "event_log_id": chosen.event_log_id,
                 "edited_at": chosen.at.isoformat(), "edits": [e.to_dict() for e in edits[-10:]]}


EditFinder = Callable[[datetime | None, datetime], Sequence[VariableEdit]]


def audit_switch(engine: Engine, region: str, enabled: bool, *, run_id: str | None, now: datetime,
                 find_edits: EditFinder | None) -> int | None:
    """Audit a flip of ``region``'s switch as observed by this monitor run; None when it did not change.

    ``find_edits(after, before)``: the edits of the Variable between the last audited flip and now (None:
    no access to Airflow's event log). The event log is only read when the state changed."""
    last = last_switch_change(engine, region)
    if (last.auto_failover if last else False) == enabled:
        return None
    after = last.decided_at if last else None
    edits: Sequence[VariableEdit] = []
    lookup_error = None
    if find_edits is not None:
        try:
            edits = find_edits(after, now)
        except (OSError, ValueError, KeyError, ShadowingError) as exc:  # the flip is audited regardless
            lookup_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: could not read Airflow's event log to attribute the switch change (%s)", region,
                        lookup_error)
    else:
        lookup_error = "no access to Airflow's event log configured"
    changed_by, evidence = attribute(edits, run_id=run_id)
    if lookup_error:
        evidence["lookup_error"] = lookup_error
    evidence["observed_by"] = f"{MONITOR} run {run_id}"
    row = record_switch_state(engine, primary_region=region, enabled=enabled, changed_by=changed_by, run_id=run_id,
                              detail=evidence, observed_at=now)
    if row is not None:
        log.warning("%s: auto-failover switch turned %s by %s", region, "ON" if enabled else "OFF", changed_by)
    return row
