"""Inserts straight through the driver: index rows, history rows and new ``resource`` rows.

A load writes index rows by the hundred thousand and resources by the ten thousand, and a
statement built and run by SQLAlchemy per row (or per small batch) costs more than the
database's own work; so these go to the driver directly (COPY on PostgreSQL, executemany on
SQLite), their values already in the form the columns keep.  Driver errors are raised as
SQLAlchemy's, so the store's one error boundary (:func:`fhirstudy.store.engine.db_errors`)
turns them into ours.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from fhirstudy.store import terms
from fhirstudy.store.engine import chunks
from fhirstudy.store.schema import INDEX_TABLES, instant_ms, resource

RESOURCE_COLUMNS = ("type", "id", "version", "last_updated", "deleted", "content", "source")


def insert_index_rows(conn: sa.Connection, pending: dict[str, list[dict]]) -> None:
    """Insert index rows (by table kind, texts as computed) with their texts as term ids.  Every
    row of a resource's parameter is inserted by one call, after those it had were deleted: on
    SQLite ``seq`` numbers them (the key of :func:`~fhirstudy.store.schema._index_table`)."""
    terms.encode(conn, pending)
    numbered = conn.dialect.name == "sqlite"
    for kind, index in pending.items():
        if numbered:
            counts: dict[tuple[int, int], int] = {}
            for row in index:
                key = (row["resource_pk"], row["pid"])
                row["seq"] = counts[key] = counts.get(key, -1) + 1
        insert_rows(conn, INDEX_TABLES[kind], index)


def insert_rows(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert ``rows`` (dicts by column name; a column a row lacks is NULL) straight through the
    driver (COPY on PostgreSQL, executemany on SQLite)."""
    if not rows:
        return
    columns = [c.name for c in table.columns if c is not table.autoincrement_column]  # the database numbers rows
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    if conn.dialect.name == "postgresql":  # COPY: one stream instead of a statement per row
        sql = f"COPY {quote(table.name)} ({names}) FROM STDIN"
        dbapi = conn.dialect.loaded_dbapi
        try:
            with conn.connection.driver_connection.cursor() as cursor, cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row([row.get(c) for c in columns])
        except dbapi.Error as exc:
            raise sa_exc.DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
        return
    sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({', '.join(['?'] * len(columns))})"
    for chunk in chunks(rows, 5000):
        conn.exec_driver_sql(sql, [tuple(map(row.get, columns)) for row in chunk])


def insert_resources(conn: sa.Connection, rows: list[dict]) -> list[int]:
    """Insert new ``resource`` rows (dicts with :data:`RESOURCE_COLUMNS`, ``last_updated`` an
    instant as text); their primary keys, in order.  On SQLite one driver statement per row
    (``RETURNING`` of a many-row insert comes in no promised order there, so SQLAlchemy would
    run a statement of its own per row, at many times the cost); elsewhere SQLAlchemy's
    many-row insert."""
    if conn.dialect.name != "sqlite":
        return conn.execute(sa.insert(resource).returning(resource.c.pk, sort_by_parameter_order=True),
                            [{c: row[c] for c in RESOURCE_COLUMNS} for row in rows]).scalars().all()
    quote = conn.dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(resource.name)} ({', '.join(quote(c) for c in RESOURCE_COLUMNS)}) "
           f"VALUES ({', '.join(['?'] * len(RESOURCE_COLUMNS))})")
    dbapi = conn.dialect.loaded_dbapi
    ms = {}  # a batch's versions share one lastUpdated
    cursor = conn.connection.cursor()
    try:
        pks = []
        for row in rows:
            when = row["last_updated"]
            if when not in ms:
                ms[when] = instant_ms(when)
            cursor.execute(sql, (row["type"], row["id"], row["version"], ms[when], bool(row["deleted"]),
                                 row["content"], row["source"]))
            pks.append(cursor.lastrowid)
        return pks
    except dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
    finally:
        cursor.close()
