"""The whole failover in one process, without Airflow: the same steps the DAG runs, in the same order.

Used by the CLI (``python -m shadowing failover run``), ``make drill`` and the benchmark's lower bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from shadowing.failover import steps
from shadowing.failover.identity import failover_id as make_failover_id
from shadowing.failover.steps import FailoverEnv, FailoverRequest, FailoverState

log = logging.getLogger(__name__)

StepFunction = Callable[[FailoverEnv, FailoverState], dict[str, Any]]
PIPELINE: tuple[tuple[str, StepFunction], ...] = (
    ("preflight", steps.run_preflight),
    ("launch", steps.launch),
    ("network", steps.configure_network),
    ("traffic", steps.redirect_traffic),
    ("replication", steps.trigger_replication),
    ("verify", steps.verify_failover),
)


def run_failover(env: FailoverEnv, request: FailoverRequest, *, run_id: str, allowed_primaries: list[str],
                 only: set[str] | None = None, teardown: bool = True) -> dict[str, Any]:
    """Run the failover (or only some steps of it, e.g. ``{"launch"}`` to resume a killed launch).

    Wall-clock seconds per step (including the warehouse bookkeeping) are returned under ``wall``; a drill is
    torn down afterwards unless ``teardown`` is False. ``finalize`` always runs when the whole pipeline ran.
    """
    fid = make_failover_id("regional_failover", run_id)
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    state = steps.prepare(env, request, failover_id=fid, dag_run_id=run_id, allowed_primaries=allowed_primaries)
    wall["prepare"] = time.perf_counter() - t0
    results: dict[str, Any] = {}
    error: BaseException | None = None
    try:
        for name, function in PIPELINE:
            if only is not None and name not in only:
                continue
            started = time.perf_counter()
            if name == "network":  # the launch step's answer carries the addresses for the DNS records
                results[name] = steps.configure_network(env, state, results.get("launch"))
            else:
                results[name] = function(env, state)
            wall[name] = time.perf_counter() - started
    except BaseException as exc:  # recorded in the event by the step; finalize still closes it
        error = exc
    finally:
        if only is None:
            try:
                if teardown and state.mode == "drill":
                    started = time.perf_counter()
                    results["teardown"] = steps.teardown_drill(env, state)
                    wall["teardown"] = time.perf_counter() - started
            except BaseException as exc:  # a failed teardown must not leave the event open and the lock held
                error = error or exc
            finally:
                results["finalize"] = steps.finalize(env, state)
    if error is not None:
        raise error
    return {"failover_id": fid, "state": state.to_dict(), "results": results, "wall": wall,
            "total_seconds": time.perf_counter() - t0}
