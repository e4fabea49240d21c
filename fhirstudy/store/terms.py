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
    """The term id of each of ``texts``, storing those not stored yet."""
    ordered = sorted(set(texts))
    found = _known(conn, ordered)
    missing = [t for t in ordered if t not in found]
    statement = sa.insert(term).returning(term.c.text, term.c.tid, sort_by_parameter_order=True)
    for chunk in chunks(missing, 5000):
        found.update((text, tid) for text, tid in conn.execute(statement, [{"text": t} for t in chunk]))
    return found


def _known(conn: sa.Connection, texts: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(texts):
        found.update((text, tid) for text, tid in conn.execute(sa.select(term.c.text, term.c.tid).where(term.c.text.in_(chunk))))
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
