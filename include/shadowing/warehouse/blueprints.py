"""Blueprint versions as a slowly changing dimension (SCD type 2) per primary region.

A refresh calls :func:`upsert_blueprint_version`: when the content hash equals the current version's nothing is
written; otherwise, in ONE transaction, the current row is closed (``valid_to``, ``is_current = false``) and the
new one inserted with the next version number and a diff summary against the previous one. A crash between the
two statements rolls both back; two concurrent refreshes cannot leave two current rows (partial unique index on
``primary_region WHERE is_current``; the loser retries and then sees the winner's content).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shadowing.errors import InputError, ShadowingError
from shadowing.settings import is_region_name
from shadowing.warehouse.codec import content_hash
from shadowing.warehouse.codec import utc as _utc
from shadowing.warehouse.tables import blueprint_versions as bv
from shadowing.warehouse.transactions import run_in_write_transaction

DiffFunction = Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class BlueprintVersion:
    id: int
    primary_region: str
    shadow_region: str
    version: int
    content_hash: str
    payload: dict[str, Any]
    valid_from: datetime
    valid_to: datetime | None
    is_current: bool
    fingerprint_id: int | None
    graph_id: int | None
    run_id: str | None
    primary_inventory_hash: str | None
    diff_summary: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class UpsertOutcome:
    version: BlueprintVersion
    created: bool  # False: the content was unchanged, the current version stays


def blueprint_content_hash(payload: dict[str, Any]) -> str:
    """Hash of a blueprint dict without its provenance (same as shadowing.blueprint.model.blueprint_hash)."""
    return content_hash({k: v for k, v in payload.items() if k != "provenance"})


def _version(row: Any) -> BlueprintVersion:
    return BlueprintVersion(
        id=row["id"], primary_region=row["primary_region"], shadow_region=row["shadow_region"],
        version=row["version"], content_hash=row["content_hash"], payload=row["payload"],
        valid_from=_utc(row["valid_from"]), valid_to=_utc(row["valid_to"]),  # type: ignore[arg-type]
        is_current=bool(row["is_current"]), fingerprint_id=row["fingerprint_id"], graph_id=row["graph_id"],
        run_id=row["run_id"], primary_inventory_hash=row["primary_inventory_hash"],
        diff_summary=row["diff_summary"] or {}, created_at=_utc(row["created_at"]))  # type: ignore[arg-type]


def upsert_blueprint_version(engine: Engine, *, primary_region: str, shadow_region: str,
                             payload: dict[str, Any], hash_: str | None = None,
                             fingerprint_id: int | None = None, graph_id: int | None = None,
                             run_id: str | None = None, primary_inventory_hash: str | None = None,
                             diff: DiffFunction | None = None, now: datetime | None = None) -> UpsertOutcome:
    """Make ``payload`` the current blueprint of ``primary_region`` unless it already is (by content hash)."""
    digest = hash_ or blueprint_content_hash(payload)

    def work(conn: sa.Connection) -> UpsertOutcome:
        current_q = sa.select(bv).where(bv.c.primary_region == primary_region, bv.c.is_current.is_(True))
        if conn.dialect.name == "postgresql":
            current_q = current_q.with_for_update()
        current = conn.execute(current_q).mappings().first()
        if current is not None and current["content_hash"] == digest:
            return UpsertOutcome(_version(current), created=False)
        stamp = _utc(now) or datetime.now(UTC)
        last = conn.execute(sa.select(sa.func.max(bv.c.version), sa.func.max(bv.c.valid_from))
                            .where(bv.c.primary_region == primary_region)).first()
        next_version = (last[0] or 0) + 1 if last else 1
        latest_from = _utc(last[1]) if last else None
        if latest_from is not None and stamp <= latest_from:
            stamp = latest_from + timedelta(microseconds=1)  # keep SCD2 intervals non-overlapping
        summary = diff(None if current is None else current["payload"], payload) if diff else {}
        if current is not None:
            conn.execute(sa.update(bv).where(bv.c.id == current["id"]).values(valid_to=stamp, is_current=False))
        row = {"primary_region": primary_region, "shadow_region": shadow_region, "version": next_version,
               "content_hash": digest, "payload": payload, "valid_from": stamp, "valid_to": None,
               "is_current": True, "fingerprint_id": fingerprint_id, "graph_id": graph_id, "run_id": run_id,
               "primary_inventory_hash": primary_inventory_hash, "diff_summary": summary,
               "created_at": datetime.now(UTC)}
        new_id = conn.execute(sa.insert(bv).values(**row)).inserted_primary_key[0]
        return UpsertOutcome(BlueprintVersion(id=int(new_id), **{**row, "is_current": True}), created=True)

    return run_in_write_transaction(engine, work)


def current_blueprint(engine: Engine, primary_region: str) -> BlueprintVersion | None:
    """The current blueprint version of ``primary_region`` (None before the first valid refresh)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(bv).where(bv.c.primary_region == primary_region,
                                               bv.c.is_current.is_(True))).mappings().first()
    return None if row is None else _version(row)


def blueprint_version(engine: Engine, primary_region: str, version: int) -> BlueprintVersion | None:
    """A specific version (current or historical)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(bv).where(bv.c.primary_region == primary_region,
                                               bv.c.version == version)).mappings().first()
    return None if row is None else _version(row)


def blueprint_as_of(engine: Engine, primary_region: str, at: datetime) -> BlueprintVersion | None:
    """The version that was current at ``at``."""
    at = _utc(at)  # type: ignore[assignment]
    with engine.connect() as conn:
        row = conn.execute(sa.select(bv).where(
            bv.c.primary_region == primary_region, bv.c.valid_from <= at,
            sa.or_(bv.c.valid_to.is_(None), bv.c.valid_to > at))).mappings().first()
    return None if row is None else _version(row)


def blueprint_history(engine: Engine, primary_region: str) -> list[BlueprintVersion]:
    """All versions, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(bv).where(bv.c.primary_region == primary_region)
                            .order_by(bv.c.version)).mappings().all()
    return [_version(r) for r in rows]


def blueprint_regions(engine: Engine) -> list[str]:
    """Primary regions that have a current blueprint."""
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(bv.c.primary_region).where(bv.c.is_current.is_(True))).scalars())


# pg_try_advisory_lock(class, key) class of the per-primary lock that serialises pre-staging of its shadow.
_PRESTAGE_LOCK_CLASS = 727276
_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@contextmanager
def prestage_lock(engine: Engine, primary_region: str, *, timeout: float = 900.0,
                  poll: float = 0.2) -> Iterator[None]:
    """Hold the pre-staging lock of ``primary_region``'s shadow (across processes) for the ``with`` block.

    Pre-staging finds resources by tags, then creates what it did not find: two refreshes of one region at once
    (an operator's CLI run beside the DAG's, a retried task beside its zombie) both found nothing and both
    created a VPC, subnets, security groups and AMI copies, then failed on the launch templates' names.
    PostgreSQL: a session advisory lock on a connection held for the block (released if the worker dies).
    SQLite (one host): an exclusive ``flock`` on a lock file beside the database file. Raises ShadowingError
    naming the region when the lock is not free within ``timeout`` seconds."""
    if not is_region_name(primary_region):  # it names a lock file: never a path
        raise InputError(f"not an AWS region name: {primary_region!r}", field="primary_region")
    deadline = time.monotonic() + timeout

    def waited_too_long() -> None:
        if time.monotonic() > deadline:
            raise ShadowingError(f"pre-staging of {primary_region}'s shadow is still locked by another refresh "
                                 f"after {timeout:g} s")
        time.sleep(poll)

    if engine.dialect.name == "postgresql":
        key = (_PRESTAGE_LOCK_CLASS, sa.func.hashtext(primary_region))
        with engine.connect() as conn:
            while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(*key))).scalar():
                conn.commit()
                waited_too_long()
            conn.commit()  # a session lock: no transaction stays open while the shadow is pre-staged
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(*key)))
                conn.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        import fcntl

        path = Path(f"{database}.prestage-{primary_region}.lock")
        with path.open("a+b") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited_too_long()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with _local_locks_guard:  # an in-memory or other database: one process, so a process lock serves
        lock = _local_locks.setdefault(primary_region, threading.Lock())
    while not lock.acquire(blocking=False):
        waited_too_long()
    try:
        yield
    finally:
        lock.release()
