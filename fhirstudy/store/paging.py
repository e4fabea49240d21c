"""Keyset paging, in both directions: which matches make up one page, and the cursors around it.

A page starts after the sort values and primary key of the previous page's last entry
(``SearchQuery.cursor``), or ends before those of the next page's first (``SearchQuery.before``,
read backwards and turned round), so a write between two page requests neither repeats nor
skips a resource that did not itself change (an offset would shift every later match by one).
Order: the ``_sort`` keys (a key on an index table by the per-resource minimum, maximum when
descending; resources without a value last), then the primary key (the order first stored).
"""
from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa

from fhirstudy.errors import InvalidRequest
from fhirstudy.search.query import SearchQuery, SortKey
from fhirstudy.store.compiler import param_rows
from fhirstudy.store.schema import INDEX_TABLES, RESOURCE_COLUMNS, SORT_COLUMNS, TERM_COLUMNS, resource, term


class Page(NamedTuple):
    """The primary keys of one page of matches, in order, and the cursors of the pages beside it
    (None where there is none)."""

    pks: list[int]
    next_cursor: tuple | None
    prev_cursor: tuple | None


def page(conn: sa.Connection, query: SearchQuery, where: list | None = None,
         matches: sa.Subquery | None = None) -> Page:
    """The page of ``query`` among the live resources meeting ``where`` (ordered by ``query.sort``)
    or among the primary keys ``matches`` (:func:`~fhirstudy.store.compiler.index_matches`,
    no ``_sort``): ``query.count`` of them after ``query.cursor`` (then ``query.offset`` more),
    or before ``query.before``."""
    backwards = query.before is not None
    if matches is None:
        statement, keys = sorted_by(sa.select(resource.c.pk).where(*where),
                                    query.resource_type, query.sort, reverse=backwards)
    else:
        statement = sa.select(matches.c.pk).order_by(matches.c.pk.desc() if backwards else matches.c.pk)
        keys = [(matches.c.pk, False)]
    if query.cursor is not None:
        statement = statement.where(beyond(keys, query.cursor))
    if backwards:
        statement = statement.where(beyond(keys, query.before, backwards=True))
    statement = statement.add_columns(*(column.label(f"k{n}") for n, (column, _) in enumerate(keys)))
    # order and cut on keys only (one row more: is there a page beyond?); the caller fetches
    # the page's content by primary key
    rows = conn.execute(statement.limit(query.count + 1).offset(0 if backwards else query.offset)).all()
    found = rows[:query.count]

    def position(row) -> tuple:
        return tuple(getattr(row, f"k{n}") for n in range(len(keys)))

    next_cursor = prev_cursor = None
    if backwards:  # the page before ``before``, read from its end: turn it round
        found.reverse()
        if len(rows) > query.count:
            prev_cursor = position(found[0])
        if found:
            next_cursor = position(found[-1])
    else:
        if len(rows) > query.count:
            next_cursor = position(found[-1])
        if found and (query.cursor is not None or query.offset):
            prev_cursor = position(found[0])
    return Page([row.pk for row in found], next_cursor, prev_cursor)


def beyond(keys: list[tuple[sa.ColumnElement, bool]], values: tuple,
          backwards: bool = False) -> sa.ColumnElement[bool]:
    """Rows strictly after ``values`` in the order ``keys`` (column, descending), nulls last, or
    strictly before them when ``backwards``."""
    name = "_before" if backwards else "_cursor"
    if len(values) != len(keys):
        raise InvalidRequest(f"{name} does not belong to this search", expression=name)
    alternatives, equal = [], []
    for (column, descending), value in zip(keys, values):
        if value is None:  # a missing value sorts after every value
            step = column.is_not(None) if backwards else sa.false()
        else:
            step = column < value if descending != backwards else column > value
            if not backwards:
                step = sa.or_(step, column.is_(None))
        alternatives.append(sa.and_(*equal, step))
        equal.append(column.is_(None) if value is None else column == value)
    return sa.or_(*alternatives)


def sorted_by(statement: sa.Select, rtype: str, keys: list[SortKey],
              reverse: bool = False) -> tuple[sa.Select, list]:
    """``statement`` ordered by ``keys`` then by primary key, and the (column, descending) pairs it is
    ordered by; a key on an index table joins that table's per-resource minimum (maximum when
    descending; a date by the start of its range either way), and resources without a value
    sort last.  ``reverse`` orders the same way backwards (for the page before a position); the
    pairs returned are those of the forward order."""
    order = []
    columns = []
    for number, key in enumerate(keys):
        column = RESOURCE_COLUMNS.get(key.param.expression.text)
        if column is not None and column.name == "source":  # a term id: sorted by its text
            column = sa.select(term.c.text).where(term.c.tid == resource.c.source).scalar_subquery()
            order.append(column.is_(None).desc() if reverse else column.is_(None))
        elif column is None:
            table = INDEX_TABLES[key.param.type]
            name = SORT_COLUMNS[key.param.type]
            rows = table
            source = table.c[name]
            if name in TERM_COLUMNS.get(key.param.type, ()):  # sorted by the texts of the terms
                rows = table.join(term, term.c.tid == source)
                source = term.c.text
            aggregate = sa.func.max(source) if key.descending else sa.func.min(source)
            values = (sa.select(table.c.resource_pk, aggregate.label("value")).select_from(rows)
                      .where(param_rows(table, rtype, key.param))
                      .group_by(table.c.resource_pk)
                      .subquery(f"sort_{number}"))
            statement = statement.outerjoin(values, values.c.resource_pk == resource.c.pk)
            column = values.c.value
            order.append(column.is_(None).desc() if reverse else column.is_(None))
        order.append(column.desc() if key.descending != reverse else column.asc())
        columns.append((column, key.descending))
    order.append(resource.c.pk.desc() if reverse else resource.c.pk)  # ties: the order first stored
    columns.append((resource.c.pk, False))
    return statement.order_by(*order), columns
