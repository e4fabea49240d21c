"""One consistent view of the store for a long read (a Bulk Data export): every read of a
:class:`Snapshot` sees the store as it was when the snapshot began, while writes go on.

The snapshot is one read transaction: on SQLite (WAL) a reader keeps the view of its first read
until it ends; on PostgreSQL the transaction is ``REPEATABLE READ``. ``transaction_time`` is the
store clock's reading just after the view was taken, and reads leave out anything stamped later,
so every resource read carries a ``meta.lastUpdated`` at or before it.

Resources are read a page at a time in ``(type, id)`` order (the unique index), by keyset, so a
read of 100,000 studies holds one page in memory. The resources an export follows references to
are kept in a temporary table of the same connection (:meth:`Snapshot.want`,
:meth:`Snapshot.wanted`), not in memory.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import sqlalchemy as sa

from fhirstudy.search.query import SearchQuery
from fhirstudy.store.compiler import check_query, index_matches, search_conditions
from fhirstudy.store.content import Codec
from fhirstudy.store.engine import chunks, db_errors
from fhirstudy.store.repository import Head, StoredResource
from fhirstudy.store import terms
from fhirstudy.store.schema import INDEX_TABLES, param_id, resource, term

PAGE = 500   # resources read at a time

_temp = sa.MetaData()
wanted_table = sa.Table("fhirstudy_export_wanted", _temp,
                        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
                        sa.Column("type", sa.String(64), nullable=False),
                        sa.Column("id", sa.String(64), nullable=False),
                        sa.Column("done", sa.Boolean, nullable=False, default=False),
                        sa.UniqueConstraint("type", "id"), prefixes=["TEMPORARY"])
pointing_table = sa.Table("fhirstudy_export_pointing", _temp,
                          sa.Column("pk", sa.Integer, primary_key=True, autoincrement=False), prefixes=["TEMPORARY"])


@contextmanager
def open_snapshot(engine: sa.Engine, codec: Codec, clock) -> Iterator["Snapshot"]:
    """A :class:`Snapshot` of the store on ``engine`` for the ``with`` block."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with db_errors(), engine.connect() as conn:
        conn = conn.execution_options(**options)
        with conn.begin():
            conn.execute(sa.select(sa.func.count()).select_from(
                sa.select(resource.c.pk).limit(1).subquery())).scalar()   # the view is taken here
            snapshot = Snapshot(conn, codec, clock())
            try:
                yield snapshot
            finally:
                snapshot.close()


class Snapshot:
    """Reads of one view of the store (see the module)."""

    def __init__(self, conn: sa.Connection, codec: Codec, transaction_time: str):
        self.conn = conn
        self.codec = codec
        self.transaction_time = transaction_time
        self._wanted = False

    def close(self) -> None:
        if self._wanted:
            wanted_table.drop(self.conn, checkfirst=True)

    # -- resources ----------------------------------------------------------------------------

    def _where(self, rtype: str, since: str | None, until: str | None,
               filters: Iterable[SearchQuery] | None) -> list:
        where = [resource.c.type == rtype, resource.c.deleted.is_(False),
                 resource.c.last_updated <= min(until or self.transaction_time, self.transaction_time)]
        if since is not None:
            where.append(resource.c.last_updated > since)
        filters = list(filters or ())
        if filters:
            where.append(resource.c.pk.in_(sa.union(*map(_matches, filters)) if len(filters) > 1
                                           else _matches(filters[0])))
        return where

    def count(self, rtype: str, since: str | None = None, until: str | None = None,
              filters: Iterable[SearchQuery] | None = None) -> int:
        """How many live ``rtype`` resources :meth:`pages` would read."""
        where = self._where(rtype, since, until, filters)
        return self.conn.execute(sa.select(sa.func.count()).select_from(resource).where(*where)).scalar_one()

    def pages(self, rtype: str, since: str | None = None, until: str | None = None,
              filters: Iterable[SearchQuery] | None = None) -> Iterator[list[StoredResource]]:
        """The live ``rtype`` resources updated after ``since`` up to ``until`` (and the snapshot's
        time) that match one of ``filters`` (search queries on ``rtype``; none: all), a page at a
        time."""
        where = self._where(rtype, since, until, filters)
        after = None
        while True:
            statement = sa.select(resource.c.id, resource.c.version, resource.c.last_updated, resource.c.content)\
                .where(*where, *([resource.c.id > after] if after is not None else []))\
                .order_by(resource.c.id).limit(PAGE)
            rows = self.conn.execute(statement).all()
            if rows:
                yield [StoredResource(rtype, r.id, r.version, r.last_updated, self.codec.decode(r.content))
                       for r in rows]
            if len(rows) < PAGE:
                return
            after = rows[-1].id

    def deleted(self, rtype: str, since: str, until: str | None = None) -> Iterator[list[Head]]:
        """The ``rtype`` resources deleted after ``since`` (up to ``until``), a page at a time."""
        where = [resource.c.type == rtype, resource.c.deleted.is_(True), resource.c.last_updated > since,
                 resource.c.last_updated <= min(until or self.transaction_time, self.transaction_time)]
        after = None
        while True:
            rows = self.conn.execute(
                sa.select(resource.c.id, resource.c.version, resource.c.last_updated)
                .where(*where, *([resource.c.id > after] if after is not None else []))
                .order_by(resource.c.id).limit(PAGE)).all()
            if rows:
                yield [Head(rtype, r.id, r.version, r.last_updated, True) for r in rows]
            if len(rows) < PAGE:
                return
            after = rows[-1].id

    # -- references followed ------------------------------------------------------------------

    def want(self, keys: Iterable[tuple[str, str]], done: bool = False) -> None:
        """Note resources to read later by :meth:`wanted` (each once, however often noted), or
        with ``done`` as already read (so that :meth:`wanted` never hands them out)."""
        if not self._wanted:
            wanted_table.create(self.conn, checkfirst=True)
            self._wanted = True
        rows = [{"type": t, "id": i, "done": done} for t, i in dict.fromkeys(keys)]
        for chunk in chunks(rows):
            insert = (sa.dialects.postgresql.insert(wanted_table) if self.conn.dialect.name == "postgresql"
                      else sa.dialects.sqlite.insert(wanted_table))
            self.conn.execute(insert.on_conflict_do_nothing(), chunk)

    def wanted(self) -> Iterator[list[tuple[str, str]]]:
        """The noted resources not noted as done, a page at a time in the order noted (each handed
        out once; ones noted meanwhile come in later pages)."""
        if not self._wanted:
            return
        after = 0   # in the order noted: what is noted meanwhile comes after
        while True:
            rows = self.conn.execute(sa.select(wanted_table.c.seq, wanted_table.c.type, wanted_table.c.id)
                                     .where(wanted_table.c.seq > after, wanted_table.c.done.is_(False))
                                     .order_by(wanted_table.c.seq).limit(PAGE)).all()
            if not rows:
                return
            after = rows[-1].seq
            yield [(r.type, r.id) for r in rows]

    def unseen(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of ``keys`` never noted."""
        keys = set(keys)
        if not self._wanted or not keys:
            return keys
        for rtype in {t for t, _ in keys}:
            ids = [i for t, i in keys if t == rtype]
            for chunk in chunks(ids):
                known = self.conn.execute(sa.select(wanted_table.c.id).where(
                    wanted_table.c.type == rtype, wanted_table.c.id.in_(chunk))).scalars()
                keys -= {(rtype, i) for i in known}
        return keys

    def pointing_at(self, rtype: str, target_type: str, target_id: str) -> Iterator[list[str]]:
        """Ids of the live ``rtype`` resources with a reference (any indexed parameter) to
        ``target_type/target_id``, a page at a time."""
        rows_table = INDEX_TABLES["reference"]
        pks = sa.select(rows_table.c.resource_pk).where(terms.equals(rows_table.c.target_type, target_type),
                                                        terms.equals(rows_table.c.target_id, target_id))
        yield from self._ids(rtype, pks)

    def read(self, rtype: str, ids: list[str], since: str | None = None, until: str | None = None,
             filters: Iterable[SearchQuery] | None = None) -> list[StoredResource]:
        """The live ``rtype`` resources of ``ids`` that :meth:`pages` would read."""
        where = self._where(rtype, since, until, filters)
        out = []
        for chunk in chunks(list(dict.fromkeys(ids))):
            rows = self.conn.execute(sa.select(resource.c.id, resource.c.version, resource.c.last_updated,
                                               resource.c.content).where(*where, resource.c.id.in_(chunk))).all()
            out.extend(StoredResource(rtype, r.id, r.version, r.last_updated, self.codec.decode(r.content))
                       for r in rows)
        return out

    def pointing_at_wanted(self, rtype: str, code: str) -> Iterator[list[str]]:
        """Ids of the live ``rtype`` resources whose reference parameter ``code`` (``Provenance``
        ``target``) points at a noted resource, a page at a time. Their keys are gathered by one
        join into a temporary table first, then read from it by keyset."""
        if not self._wanted:
            return
        rows_table = INDEX_TABLES["reference"]
        pointing_table.create(self.conn, checkfirst=True)
        try:
            self.conn.execute(pointing_table.delete())
            target_type, target_id = term.alias("target_type"), term.alias("target_id")
            targets = (rows_table.join(target_type, target_type.c.tid == rows_table.c.target_type)
                       .join(target_id, target_id.c.tid == rows_table.c.target_id)
                       .join(wanted_table, sa.and_(wanted_table.c.type == target_type.c.text,
                                                   wanted_table.c.id == target_id.c.text)))
            self.conn.execute(pointing_table.insert().from_select(
                ["pk"], sa.select(rows_table.c.resource_pk).distinct().select_from(targets)
                .where(rows_table.c.pid == param_id(rtype, code))))
            after = 0
            while True:
                pks = self.conn.execute(sa.select(pointing_table.c.pk).where(pointing_table.c.pk > after)
                                        .order_by(pointing_table.c.pk).limit(PAGE)).scalars().all()
                if not pks:
                    return
                after = pks[-1]
                ids = self.conn.execute(sa.select(resource.c.id).where(
                    *self._where(rtype, None, None, None), resource.c.pk.in_(pks))).scalars().all()
                if ids:
                    yield ids
        finally:
            pointing_table.drop(self.conn, checkfirst=True)

    def _ids(self, rtype: str, pks: sa.Select) -> Iterator[list[str]]:
        where = self._where(rtype, None, None, None) + [resource.c.pk.in_(pks)]
        after = None
        while True:
            rows = self.conn.execute(sa.select(resource.c.id).where(
                *where, *([resource.c.id > after] if after is not None else [])).order_by(resource.c.id)
                .limit(PAGE)).all()
            if rows:
                yield [r.id for r in rows]
            if len(rows) < PAGE:
                return
            after = rows[-1].id


def _matches(query: SearchQuery) -> sa.Select:
    """The primary keys of the live resources meeting ``query``'s clauses (its sort and paging
    ignored)."""
    check_query(query)
    matches = index_matches(query)
    if matches is not None:
        return sa.select(matches.c.pk)
    return sa.select(resource.c.pk).where(*search_conditions(query))
