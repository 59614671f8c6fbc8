"""Write transactions that serialise correctly on SQLite and PostgreSQL and retry on contention.

SQLite: ``BEGIN IMMEDIATE`` takes the database write lock up front (waiting up to the busy timeout), so a
read-then-write transaction never works from a stale snapshot. PostgreSQL: callers lock rows with
``FOR UPDATE``; races the locks cannot see (two inserts where no row existed yet) end in a unique-index
violation, which is retried from the start and then sees the winner's row.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock, lock not available.
_RETRYABLE_PG = {"40001", "40P01", "55P03"}


@contextmanager
def write_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """A connection in a write transaction: committed on success, rolled back on any exception."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(exc.orig, "pgcode", None)
    if code in _RETRYABLE_PG:
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def run_in_write_transaction(engine: Engine, work: Callable[[sa.Connection], T], *, attempts: int = 8,
                             retry_integrity: bool = True) -> T:
    """Run ``work(conn)`` in a write transaction, retrying (jittered backoff) when a concurrent writer won."""
    for attempt in range(1, attempts + 1):
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == attempts or not _retryable(exc) or (
                    isinstance(exc, IntegrityError) and not retry_integrity):
                raise
            log.info("write contention (%s), retry %d/%d", type(exc.orig).__name__, attempt, attempts)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")
