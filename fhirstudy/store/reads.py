"""Reading stored resources: the current row, a version, a page of history, a page's content by
primary key, and the write generation.

The current version's bytes live in ``resource``, older ones in their history rows
(:func:`history_select` reads either); every content value read is decoded by the store's
:class:`~fhirstudy.store.content.Codec` (given as ``codec``), so callers get the JSON bytes written.  Two reads go straight through the driver because they
run on every request: a page's JSON (:func:`load`; through SQLAlchemy's result rows it cost a
third of an uncached search) and the generation (:func:`generation`, before every cached
search answer).
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from fhirstudy.errors import StoreError
from fhirstudy.search.geo import Position
from fhirstudy.store import state as _state
from fhirstudy.store.content import Codec
from fhirstudy.store.engine import chunks
from fhirstudy.store.repository import Head, HistoryEntry, HistoryPage, Placed, StoredResource
from fhirstudy.store.schema import INDEX_TABLES, history, ms_instant, resource, term


def read_entry(conn: sa.Connection, codec: Codec, rtype: str, rid: str) -> StoredResource | None:
    """The current version of ``rtype/rid`` with its bytes, or None (never stored, or deleted)."""
    row = conn.execute(
        sa.select(resource.c.type, resource.c.id, resource.c.version, resource.c.last_updated,
                  resource.c.content)
        .where(resource.c.type == rtype, resource.c.id == rid, resource.c.deleted.is_(False))
    ).first()
    return StoredResource(row.type, row.id, row.version, row.last_updated, codec.decode(row.content)) if row else None


def head(conn: sa.Connection, rtype: str, rid: str, lock: bool = False) -> Head | None:
    """The current state of ``rtype/rid`` (row locked with ``lock``), or None if never stored."""
    statement = (sa.select(resource.c.type, resource.c.id, resource.c.version, resource.c.last_updated,
                           resource.c.deleted)
                 .where(resource.c.type == rtype, resource.c.id == rid))
    row = conn.execute(statement.with_for_update() if lock else statement).first()
    return Head(row.type, row.id, row.version, row.last_updated, bool(row.deleted)) if row else None


def history_select() -> sa.Select:
    """Versions with their resource's type and id and their bytes: a history row's own, or for
    the current version (which keeps none of its own) the bytes in ``resource``."""
    current = sa.and_(resource.c.version == history.c.version, resource.c.deleted.is_(False),
                      history.c.method != "DELETE")
    return (sa.select(resource.c.type, resource.c.id, history.c.version, history.c.last_updated,
                      history.c.method, history.c.created,
                      sa.func.coalesce(history.c.content, sa.case((current, resource.c.content))).label("content"))
            .select_from(history.join(resource, resource.c.pk == history.c.resource_pk)))


def history_entry(codec: Codec, row) -> HistoryEntry:
    """A row of :func:`history_select` as a :class:`HistoryEntry`."""
    return HistoryEntry(row.type, row.id, row.version, row.last_updated, row.method, bool(row.created),
                        codec.decode(row.content) if row.content is not None else None)


def load(conn: sa.Connection, codec: Codec, pks: list[int]) -> list[StoredResource]:
    """The stored resources with primary keys ``pks``, in that order."""
    # straight through the driver (the same connection and transaction): a page's worth of JSON
    # read through SQLAlchemy's result rows costs a third of an uncached search
    rows = {}
    for chunk in chunks(list(dict.fromkeys(pks))):
        rows.update((row[0], StoredResource(row[1], row[2], row[3], ms_instant(row[4]), codec.decode(row[5])))
                    for row in driver_rows(conn, f"SELECT pk, type, id, version, last_updated, content FROM "
                                                 f"{resource.name} WHERE pk IN ({{}})", chunk))
    return [rows[pk] for pk in pks if pk in rows]


def keys(conn: sa.Connection, pks: list[int]) -> list[tuple[int, str, int]]:
    """``(pk, id, version)`` of the resources with primary keys ``pks``, in that order (no content;
    straight through the driver, as :func:`load`)."""
    rows: dict = {}
    for chunk in chunks(list(dict.fromkeys(pks))):
        rows.update((row[0], (row[0], row[1], row[2])) for row in driver_rows(
            conn, f"SELECT pk, id, version FROM {resource.name} WHERE pk IN ({{}})", chunk))
    return [rows[pk] for pk in pks if pk in rows]


def driver_rows(conn: sa.Connection, sql: str, values: list, *before) -> list[tuple]:
    """The rows of ``sql`` run straight through the driver on ``conn``'s connection (inside its
    transaction): its ``?`` are the placeholders of the parameters ``before`` and its ``{}`` becomes
    one placeholder per item of ``values``, bound after them (in the driver's paramstyle).  For the reads on every request, where SQLAlchemy's statement and
    result machinery would cost more than the query."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = sql.replace("?", mark).format(", ".join([mark] * len(values)))
    params = [*before, *values]
    dbapi = conn.dialect.loaded_dbapi
    try:
        cursor = conn.connection.cursor()
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        cursor.close()
    except dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance(sql, params, exc, dbapi.Error) from exc
    return rows


def read_many(conn: sa.Connection, codec: Codec, rtype: str, ids: list[str],
              content: bool = True) -> dict[str, StoredResource]:
    """The current versions of ``rtype`` resources ``ids`` that exist (deleted ones left out), by
    id; ``content=False`` leaves their bytes empty (straight through the driver, as :func:`load`)."""
    columns = "id, version, last_updated" + (", content" if content else "")
    out = {}
    for chunk in chunks(list(dict.fromkeys(ids))):
        for row in driver_rows(conn, f"SELECT {columns} FROM {resource.name} WHERE type = ? AND deleted = ? "
                                     f"AND id IN ({{}})", chunk, rtype, False):
            out[row[0]] = StoredResource(rtype, row[0], row[1], ms_instant(row[2]),
                                         codec.decode(row[3]) if content else b"")
    return out


def positions(conn: sa.Connection, rtype: str, ids: list[str], pid: int) -> dict[str, list[Placed]]:
    """The positions, and their sources, that the ``near`` rows of parameter ``pid`` hold for the
    live ``rtype`` resources ``ids``, by id (the index alone: no content is read).  Two lookups by key, straight
    through the driver (:func:`driver_rows`; through SQLAlchemy they cost 15 ms for 840 sites at
    100,000 studies, 6 ms so): joined in one statement, SQLite read every row of the parameter for
    500 ids (1.6 s)."""
    out: dict[str, list[Placed]] = {}
    rows = INDEX_TABLES["special"].name
    for chunk in chunks(list(dict.fromkeys(ids))):
        by_pk = dict(driver_rows(conn, f"SELECT pk, id FROM {resource.name} WHERE type = ? AND deleted = ? "
                                       f"AND id IN ({{}})", chunk, rtype, False))
        if not by_pk:
            continue
        for pk, latitude, longitude, x, y, z, source in driver_rows(
                conn, f"SELECT p.resource_pk, p.latitude, p.longitude, p.x, p.y, p.z, t.text FROM {rows} p "
                      f"LEFT JOIN {term.name} t ON t.tid = p.source "
                      f"WHERE p.pid = ? AND p.resource_pk IN ({{}}) ORDER BY p.resource_pk, p.seq", sorted(by_pk), pid):
            out.setdefault(by_pk[pk], []).append(Placed(Position(latitude, longitude, x, y, z), source))
    return out


def history_page(conn: sa.Connection, codec: Codec, rtype: str | None, rid: str | None, since: str | None,
                 count: int, offset: int) -> HistoryPage:
    """The versions of one resource, a type or everything (``None`` for any), written at or after
    ``since``, newest first: their number and the page ``offset..offset+count``."""
    where = []
    if rtype is not None:
        where.append(resource.c.type == rtype)
    if rid is not None:
        where.append(resource.c.id == rid)
    counted = history if not where else history.join(resource, resource.c.pk == history.c.resource_pk)
    if since is not None:
        where.append(history.c.last_updated >= since)
    total = conn.execute(sa.select(sa.func.count()).select_from(counted).where(*where)).scalar_one()
    rows = conn.execute(history_select().where(*where).order_by(history.c.pk.desc())
                        .limit(count).offset(offset)).all() if count and offset < total else []
    return HistoryPage(total, [history_entry(codec, row) for row in rows])


def generation(engine: sa.Engine) -> int:
    """The state row's write counter, read straight through the driver (:meth:`SqlStore.generation`)."""
    # SQLAlchemy's connection and result machinery would cost ten times the query (on
    # PostgreSQL in autocommit, so that the read is one round trip, not BEGIN, SELECT and the
    # pool's ROLLBACK: a third of a cached answer's time)
    dbapi = engine.dialect.loaded_dbapi
    try:
        conn = engine.raw_connection()
        driver = conn.driver_connection
        autocommit = engine.dialect.name == "postgresql"
        try:
            if autocommit:
                driver.autocommit = True
            cursor = conn.cursor()
            cursor.execute(_state.GENERATION_SQL)
            value = cursor.fetchone()[0]
            cursor.close()
        finally:
            if autocommit:
                driver.autocommit = False
            conn.close()
    except dbapi.Error as exc:
        raise StoreError(f"the database is unavailable or failed: {exc}") from exc
    return value or 0
