"""A time limit on the statements of one search or history request, so that no anonymous request
holds a database connection and a CPU for seconds (``description:contains=a`` over 10,000
studies, ``/_history?_offset=10000000``).

PostgreSQL: ``SET LOCAL statement_timeout`` in the request's transaction.  SQLite: a progress
handler on the connection that interrupts the statement once the limit has passed.  Either way
the request ends with :class:`QueryTooCostly` (400 ``too-costly``) naming the limit.

The limit is :data:`DEFAULT_SEARCH_TIMEOUT_MS`, or ``FHIRSTUDY_SEARCH_TIMEOUT_MS`` from the
environment (:mod:`fhirstudy.config`), or ``open_store(..., search_timeout_ms=N)``; 0 turns it off.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from fhirstudy import config
from fhirstudy.config import DEFAULT_SEARCH_TIMEOUT_MS  # noqa: F401 - the named default, defined there
from fhirstudy.errors import QueryTooCostly
from fhirstudy.limits import parse_integer

TIMEOUT_ENV = config.BY_KEY["SEARCH_TIMEOUT_MS"].env
PROGRESS_STEPS = 20_000  # SQLite virtual-machine steps between two looks at the clock
_CANCELED = "57014"  # PostgreSQL query_canceled (statement_timeout)


def search_timeout_ms(value: int | str | None = None) -> int:
    """The limit in milliseconds: ``value``, else the environment's, else the default."""
    if value is None:
        return config.value("SEARCH_TIMEOUT_MS")
    return parse_integer(value, TIMEOUT_ENV)


@contextmanager
def time_limit(conn: sa.Connection, limit_ms: int, what: str) -> Iterator[None]:
    """Statements run on ``conn`` inside this block end with :class:`QueryTooCostly` once they
    take more than ``limit_ms`` in all (0: no limit)."""
    if not limit_ms:
        yield
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(limit_ms)}")
        try:
            yield
        except sa_exc.DBAPIError as exc:
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == _CANCELED:
                raise _too_costly(what, limit_ms) from exc
            raise
        return
    raw = conn.connection.driver_connection
    deadline = time.monotonic() + limit_ms / 1000
    fired = []

    def check() -> int:
        if time.monotonic() > deadline:
            fired.append(True)
            return 1  # interrupt the statement
        return 0

    raw.set_progress_handler(check, PROGRESS_STEPS)
    try:
        yield
    except sa_exc.OperationalError as exc:
        if fired:
            raise _too_costly(what, limit_ms) from exc
        raise
    finally:
        raw.set_progress_handler(None, 0)


def _too_costly(what: str, limit_ms: int) -> QueryTooCostly:
    return QueryTooCostly(f"The {what} took longer than the {limit_ms} ms this server allows for one; "
                          f"narrow it (more selective parameters, no :contains on short or common text, "
                          f"a smaller _offset)")
