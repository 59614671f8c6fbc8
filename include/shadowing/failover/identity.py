"""Deterministic identities: the failover id (from the DAG run) and the EC2 ClientTokens derived from it.

A retried or re-run task must recognise what an earlier attempt created, so every id is a pure function of
the run: the same DAG run always yields the same failover id, tags and client tokens.
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def failover_id(dag_id: str, run_id: str) -> str:
    """``fo-<hash>``: stable for one DAG run, distinct across runs (≤ 64 chars)."""
    digest = hashlib.sha256(f"{dag_id}\x00{run_id}".encode()).hexdigest()[:16]
    return f"fo-{digest}"


FAILBACK_PREFIX = "fb-"


def failback_id(dag_id: str, run_id: str) -> str:
    """``fb-<hash>``: the event id of one failback run (its own row in ``failover_events``)."""
    digest = hashlib.sha256(f"{dag_id}\x00{run_id}".encode()).hexdigest()[:16]
    return f"{FAILBACK_PREFIX}{digest}"


def client_token(*parts: object) -> str:
    """An EC2 ClientToken (≤ 64 ASCII chars) from the parts that identify one create call.

    Real AWS returns the original result for a repeated token instead of creating again; moto ignores it, so
    idempotency must ALSO hold by counting tagged resources (see :mod:`shadowing.failover.launcher`).
    """
    blob = "\x00".join(str(p) for p in parts).encode()
    return hashlib.sha256(blob).hexdigest()[:64]


def safe_name(text: str, limit: int = 63) -> str:
    """A name usable in AWS identifiers (caller references, set identifiers)."""
    return _SAFE.sub("-", text)[:limit].strip("-") or "x"
