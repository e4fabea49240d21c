"""The texts of index rows, each stored once in ``idx_term`` and named in the rows by its ``tid``.

Writing: :func:`encode` replaces the texts of a batch of index rows (the columns of
:data:`~fhirstudy.store.schema.TERM_COLUMNS`) by their term ids, adding the terms it does not
see yet.  The text is not unique: two transactions adding the same new text at once each add
their own term (neither waits for the other, as a unique index would make the second do until
the first commits), so every condition below matches a text by *all* its terms.  Searching: the
conditions compare a term column with texts through ``idx_term``, whose index keeps the texts in
byte order: equality looks a text's terms up, "starts with" and ``LIKE`` select the matching
terms.  Term ids are permanent (no term is removed or renumbered; a write rolled back may leave
terms nothing names).
"""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from fhirstudy.store.engine import chunks
from fhirstudy.store.schema import TERM_COLUMNS, term

MAX_CHAR = "\U0010ffff"  # upper bound for starts-with range scans


def encode(conn: sa.Connection, pending: dict[str, list[dict]]) -> None:
    """Replace, in place, the texts of the term columns of ``pending`` (index rows by table kind)
    by their term ids, storing the terms that are new."""
    texts = {row[name] for kind, rows in pending.items() for name in TERM_COLUMNS.get(kind, ())
             for row in rows if row.get(name) is not None}
    if not texts:
        return
    ids = term_ids(conn, texts)
    for kind, rows in pending.items():
        names = TERM_COLUMNS.get(kind, ())
        for row in rows:
            for name in names:
                if row.get(name) is not None:
                    row[name] = ids[row[name]]


def term_ids(conn: sa.Connection, texts: Iterable[str]) -> dict[str, int]:
    """The term id of each of ``texts``, storing those not stored yet (straight through the
    driver: a load names tens of thousands of texts a transaction)."""
    ordered = sorted(set(texts))
    if not ordered:
        return {}
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "postgresql":  # one statement each way, the texts as one array
            cursor.execute(f"SELECT text, tid FROM {term.name} WHERE text = ANY(%s)", (ordered,))
            found = dict(cursor.fetchall())
            missing = [t for t in ordered if t not in found]
            if missing:
                cursor.execute(f"INSERT INTO {term.name} (text) SELECT unnest(%s::varchar[]) RETURNING text, tid",
                               (missing,))
                found.update(cursor.fetchall())
            return found
        found = _sqlite_known(cursor, ordered)
        missing = [t for t in ordered if t not in found]
        if missing:
            cursor.executemany(f"INSERT INTO {term.name} (text) VALUES (?)", [(t,) for t in missing])
            found.update(_sqlite_known(cursor, missing))
        return found
    except dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance(f"terms of {len(ordered)} texts", None, exc, dbapi.Error) from exc
    finally:
        cursor.close()


def _sqlite_known(cursor, texts: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(texts):
        cursor.execute(f"SELECT text, tid FROM {term.name} WHERE text IN ({', '.join(['?'] * len(chunk))})", chunk)
        found.update(cursor.fetchall())
    return found


def equals(column: sa.ColumnElement, text: str | None) -> sa.ColumnElement[bool]:
    """Whether term column ``column`` holds ``text``."""
    return column.in_(sa.select(term.c.tid).where(term.c.text == text))


def starts_with(column: sa.ColumnElement, text: str) -> sa.ColumnElement[bool]:
    """Whether term column ``column`` holds a text starting with ``text``."""
    return column.in_(sa.select(term.c.tid).where(term.c.text >= text, term.c.text < text + MAX_CHAR))


def like(column: sa.ColumnElement, pattern: str, escape: str = "\\") -> sa.ColumnElement[bool]:
    """Whether term column ``column`` holds a text ``LIKE`` ``pattern``."""
    return column.in_(sa.select(term.c.tid).where(term.c.text.like(pattern, escape=escape)))


def one_of(column: sa.ColumnElement, texts) -> sa.ColumnElement[bool]:
    """Whether term column ``column`` holds one of ``texts`` (a list, or a select of texts)."""
    return column.in_(sa.select(term.c.tid).where(term.c.text.in_(texts)))
