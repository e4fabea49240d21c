"""Engines for a database URL, how SQLite transactions begin, and the one boundary where
database errors become ours.

:func:`engine_for` makes the engine (SQLite file or memory, PostgreSQL; anything else is a
:class:`StoreError` saying why, :mod:`fhirstudy.store.urls`).  SQLite write transactions start
with ``BEGIN IMMEDIATE`` (a connection opened with the :data:`WRITE_OPTION` execution option),
so writers queue instead of failing on a stale snapshot.  :func:`db_errors` translates
SQLAlchemy errors by a lookup table (``_ERRORS``): a lost race (unique violation, serialization
failure, deadlock) is :class:`WriteConflict`, anything else :class:`StoreError`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from fhirstudy.errors import StoreError, WriteConflict
from fhirstudy.store.urls import MEMORY, database_url, driver_missing

CHUNK = 500  # rows per IN (...) list and per executemany batch
WRITE_OPTION = "fhirstudy_write"  # execution option of a write connection (BEGIN IMMEDIATE on SQLite)

# Third-party errors -> our message, most specific first.
_ERRORS = (
    (sa_exc.IntegrityError, "the database refused the change (constraint violated)"),
    (sa_exc.OperationalError, "the database is unavailable or failed"),
    (sa_exc.SQLAlchemyError, "database error"),
)


# SQLSTATEs of a lost race on PostgreSQL: unique_violation, serialization_failure, deadlock_detected
_CONFLICT_STATES = frozenset({"23505", "40001", "40P01"})


def _lost_race(exc: sa_exc.SQLAlchemyError) -> bool:
    """Whether ``exc`` means another transaction wrote the same rows first (run again to fix)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _CONFLICT_STATES:
        return True
    return isinstance(exc, sa_exc.IntegrityError) and "UNIQUE constraint failed" in str(orig)


@contextmanager
def db_errors() -> Iterator[None]:
    """Translate database errors raised inside the block (:class:`WriteConflict`, :class:`StoreError`)."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        detail = exc.orig if getattr(exc, "orig", None) else exc
        if _lost_race(exc):
            raise WriteConflict(f"a concurrent write changed the same resource: {detail}") from exc
        message = next(text for kind, text in _ERRORS if isinstance(exc, kind))
        raise StoreError(f"{message}: {detail}") from exc


def engine_for(url: str) -> sa.Engine:
    """An engine for ``url``: ``sqlite:///path.db``, ``sqlite://`` (memory) or ``postgresql://...``
    (:mod:`fhirstudy.store.urls`: anything else is a :class:`StoreError` saying why)."""
    url = database_url(url)
    try:
        if url in MEMORY:
            # one shared connection, so every thread sees the same in-memory database
            engine = sa.create_engine("sqlite://", poolclass=StaticPool,
                                      connect_args={"check_same_thread": False})
        else:
            engine = sa.create_engine(url)
    except ImportError as exc:
        raise driver_missing(url, exc) from exc
    except sa_exc.ArgumentError as exc:
        raise StoreError(f"{url!r} is not a usable database URL: {exc}") from exc
    if engine.dialect.name == "sqlite":
        memory = engine.url.database in (None, "", ":memory:")
        sa.event.listen(engine, "connect", lambda conn, _: _sqlite_pragmas(conn, memory))
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(conn: sa.Connection) -> None:
    """Start SQLite transactions ourselves: ``BEGIN IMMEDIATE`` for writes, so that a writer
    takes the write lock before reading what it will change (pysqlite's own BEGIN is deferred)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def _sqlite_pragmas(connection, memory: bool) -> None:
    connection.isolation_level = None  # transactions are begun by _sqlite_begin
    cursor = connection.cursor()
    if not memory:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    """``items`` in lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
