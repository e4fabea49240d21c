"""The tables of the store, the ``pid`` of a search parameter, and the layout check.

``resource`` holds the current version of each resource (type, id, version, last_updated,
deleted, content_hash and the stored JSON bytes with ``meta.versionId``/``meta.lastUpdated``
set); ``resource_history`` every version, the current one included, with the REST method that
made it (a delete is a version without content; the current version's bytes live in
``resource`` only, and move into its history row when a newer version supersedes it); one
index table per search-parameter type (``idx_token``, ``idx_string``, ``idx_reference``,
``idx_date``, ``idx_number``, ``idx_uri``, ``idx_composite``, and ``idx_position`` for the one
special parameter indexed, ``near``).  Index rows name their parameter
by ``pid``, a 32-bit hash of ``type.code`` (:func:`param_id`, after HAPI FHIR's hash columns),
and ``_id`` is answered from ``resource.id`` itself.  ``fhirstudy_schema`` holds the layout's
version: a database of another layout is refused (:func:`check_layout`) rather than searched
wrongly.
"""
from __future__ import annotations

import hashlib
import re
from datetime import date
from functools import lru_cache
from types import MappingProxyType
from typing import Iterable

import sqlalchemy as sa

from fhirstudy.errors import StoreError
from fhirstudy.search.registry import Registry

MAX_VERSION = 2**31 - 1  # the version columns are 32-bit integers (sa.Integer on PostgreSQL)
_ID = sa.String(64)
# Indexed text columns compare byte-wise on both backends, so range scans mean "starts with".
_SORTABLE = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
# 1: rtype/param strings in index rows, JSON in resource and history alike; 2: no number ranges;
# 3: no positions; 4: uncompressed JSON, hex content hashes; 5: the position index without the
# unit vectors; 6: positions without their grid cell and source (5 and 6 are upgraded in place: :data:`UPGRADES`)
SCHEMA_VERSION = 7

metadata = sa.MetaData()
_INSTANT = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z?")
_MS_PER_DAY = 86_400_000


def instant_ms(text: str) -> int:
    """Milliseconds from 0001-01-01T00:00:00.000 to ``text``, an instant as the store writes it
    (``YYYY-MM-DDTHH:MM:SS.mmmZ``, UTC; the date columns' form without the ``Z`` too)."""
    if not isinstance(text, str):
        raise StoreError(f"not an instant the store writes (YYYY-MM-DDTHH:MM:SS.mmmZ): {text!r}")
    return _instant_ms(text) if len(text) <= 32 else _instant_ms.__wrapped__(text)  # longer: never one


@lru_cache(maxsize=8192)  # a load turns the same dates into numbers over and over
def _instant_ms(text: str) -> int:
    match = _INSTANT.fullmatch(text)
    if match is None:
        raise StoreError(f"not an instant the store writes (YYYY-MM-DDTHH:MM:SS.mmmZ): {text!r}")
    year, month, day, hour, minute, second, milli = map(int, match.groups())
    return ((date(year, month, day).toordinal() - 1) * _MS_PER_DAY
            + ((hour * 60 + minute) * 60 + second) * 1000 + milli)


def ms_instant(ms: int) -> str:
    """The instant (``YYYY-MM-DDTHH:MM:SS.mmmZ``) ``ms`` milliseconds after 0001-01-01."""
    days, rest = divmod(ms, _MS_PER_DAY)
    day = date.fromordinal(days + 1)
    seconds, milli = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


class Instant(sa.TypeDecorator):
    """A lastUpdated instant, kept as a 64-bit number of milliseconds (:func:`instant_ms`; 8
    bytes instead of 24 characters) and read back as the same text (:func:`ms_instant`)."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else instant_ms(value)

    def process_result_value(self, value, dialect):
        return None if value is None else ms_instant(value)


class Moment(Instant):
    """A date column's instant (``YYYY-MM-DDTHH:MM:SS.mmm``, UTC: search.index.date_range), kept
    as milliseconds like :class:`Instant` and read back in the same form."""

    cache_ok = True

    def process_result_value(self, value, dialect):
        return None if value is None else ms_instant(value)[:-1]


schema = sa.Table("fhirstudy_schema", metadata, sa.Column("version", sa.Integer, nullable=False))

# The zstd dictionaries content is compressed with, by the id each compressed value names (store.content).
dictionary = sa.Table("fhirstudy_dictionary", metadata,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("content", sa.LargeBinary, nullable=False))

resource = sa.Table(
    "resource", metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("id", _ID, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", Instant, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("content", sa.LargeBinary, nullable=False),  # store.content: zstd with a dictionary; b"" once deleted
    sa.Column("source", sa.Integer, nullable=True),  # the idx_term.tid of meta.source (_source); None once deleted
    sa.UniqueConstraint("type", "id", name="uq_resource_type_id"),
    sa.Index("ix_resource_type_updated", "type", "last_updated"),  # _lastUpdated, export's _since
)
sa.Index("ix_resource_source", resource.c.source, sqlite_where=resource.c.source.is_not(None),
         postgresql_where=resource.c.source.is_not(None))

history = sa.Table(
    "resource_history", metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),  # the order versions were written
    sa.Column("resource_pk", sa.Integer, sa.ForeignKey("resource.pk"), nullable=False),  # type and id
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", Instant, nullable=False),
    sa.Column("method", sa.String(8), nullable=False),        # POST, PUT or DELETE
    sa.Column("created", sa.Boolean, nullable=False),         # this version (re)created the resource
    sa.Column("content", sa.LargeBinary, nullable=True),      # None for a delete, and for the current version
    sa.UniqueConstraint("resource_pk", "version", name="uq_history_resource_version"),
)

# Every text of an index row is stored once, here, and named in the rows by its ``tid``
# (the columns of TERM_COLUMNS): a system, code, city or reference target repeated by thousands
# of rows costs a few bytes in each.  Terms are never removed; a text is not unique (two writers
# adding it at once add a term each: store.terms).
term = sa.Table(
    "idx_term", metadata,
    sa.Column("tid", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("text", _SORTABLE, nullable=False),
    sa.Index("ix_idx_term_text", "text"),
)


def _index_table(name: str, *columns: sa.Column, indexes: Iterable[tuple[str, ...]],
                 present: dict[int, str] | None = None) -> sa.Table:
    """An index table; ``indexes`` lead with ``pid`` for searching (index ``n`` of ``present``
    holds only the rows where that column is set).  A resource's rows are found, when it is
    written again, by ``resource_pk``: on SQLite the table is kept in that order (``WITHOUT
    ROWID``, primary key ``resource_pk, pid, seq``, ``seq`` numbering a resource's rows of one
    parameter), so the rows are stored once with no rowid and no index of their own for it; on
    PostgreSQL, whose tables are heaps, by an index on ``resource_pk`` (``seq`` stays NULL)."""
    table = sa.Table(
        name, metadata,
        sa.Column("resource_pk", sa.Integer, sa.ForeignKey("resource.pk", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),  # param_id(type, code)
        sa.Column("seq", sa.Integer, nullable=True),
        *columns,
        sa.PrimaryKeyConstraint("resource_pk", "pid", "seq", name=f"pk_{name}").ddl_if(dialect="sqlite"),
        sqlite_with_rowid=False,
    )
    sa.Index(f"ix_{name}_resource", table.c.resource_pk).ddl_if(dialect="postgresql")
    for number, cols in enumerate(indexes):
        where = {}
        if present and number in present:
            condition = table.c[present[number]].is_not(None)
            where = {"sqlite_where": condition, "postgresql_where": condition}
        sa.Index(f"ix_{name}_{number}", table.c.pid, *(table.c[c] for c in cols), table.c.resource_pk, **where)
    return table


def param_id(rtype: str, code: str) -> int:
    """The 32-bit signed number that stands for parameter ``code`` of ``rtype`` in index rows
    (stable across processes and versions: a hash of ``rtype.code``)."""
    return int.from_bytes(hashlib.blake2b(f"{rtype}.{code}".encode(), digest_size=4).digest(),
                          "big", signed=True)


def check_param_ids(registry: Registry) -> None:
    """Refuse a registry where two parameters would share a ``pid``."""
    seen: dict[int, str] = {}
    for rtype in registry.served_types:
        for code in registry.params(rtype):
            key = f"{rtype}.{code}"
            other = seen.setdefault(param_id(rtype, code), key)
            if other != key:  # pragma: no cover - would need a colliding definition
                raise StoreError(f"search parameters {other} and {key} hash to the same param_id")


_TID = sa.Integer  # an idx_term.tid
INDEX_TABLES = MappingProxyType({
    "token": _index_table(
        "idx_token", sa.Column("system", _TID), sa.Column("code", _TID), sa.Column("text", _TID),
        indexes=[("code", "system"), ("text",)], present={1: "text"}),
    # part: which part of an Address or HumanName the text is (search.index.STRING_PARTS, 1 on;
    # 0: a plain string); full: the whole normalised text, only when ``value`` had to be cut;
    # exact: a 64-bit hash of the text as written (:func:`exact_hash`; None when too long to keep)
    "string": _index_table(
        "idx_string", sa.Column("part", sa.SmallInteger, nullable=False, default=0), sa.Column("value", _TID),
        sa.Column("full", sa.Text), sa.Column("exact", sa.BigInteger), indexes=[("value", "part")]),
    # url: the reference as written when it is more than ``target_type/target_id``, else None
    "reference": _index_table(
        "idx_reference", sa.Column("target_type", _TID), sa.Column("target_id", _TID),
        sa.Column("url", _TID), indexes=[("target_id", "target_type"), ("url",)], present={1: "url"}),
    # low/high: milliseconds (Moment), written as such by indexing (rows go in through the driver)
    "date": _index_table(
        "idx_date", sa.Column("low", Moment), sa.Column("high", Moment),
        indexes=[("low", "high"), ("high",)]),
    # value: a number; low/high: the numbers a Range or a Quantity with a comparator admits
    "number": _index_table("idx_number", sa.Column("value", sa.Float), sa.Column("low", sa.Float),
                           sa.Column("high", sa.Float), indexes=[("value",), ("low", "high")]),
    "uri": _index_table("idx_uri", sa.Column("uri", _TID), indexes=[("uri",)]),
    # ``near``: a position in degrees (the bounding box looks it up), its unit vector (the exact
    # test) and its one-degree grid cell (:func:`fhirstudy.search.geo.cell`, :func:`cell_of`);
    # source: for a linked parameter (``site-near``), the id of the resource the position was read
    # from (a term; None for a resource's own position), so that a study's nearest site is a row
    "special": _index_table(
        "idx_position", sa.Column("latitude", sa.Float), sa.Column("longitude", sa.Float), sa.Column("x", sa.Float),
        sa.Column("y", sa.Float), sa.Column("z", sa.Float), sa.Column("cell", sa.Integer), sa.Column("source", _TID),
        # by cell first: a search reads the cells its box covers, not a band of latitude around the
        # earth (56,479 rows for 5,648 matches near Boston at 100,000 studies); the unit vectors in
        # the index too: the exact test reads no table row (200 ms of row lookups there, 17 ms without)
        indexes=[("cell", "latitude", "longitude", "x", "y", "z")]),
    "composite": _index_table(
        "idx_composite", sa.Column("grp", sa.Integer, nullable=False), sa.Column("comp", sa.Integer, nullable=False),
        sa.Column("system", _TID), sa.Column("code", _TID), sa.Column("text", _TID),
        sa.Column("low", Moment), sa.Column("high", Moment), sa.Column("num", sa.Float),
        sa.Column("num_low", sa.Float), sa.Column("num_high", sa.Float),
        indexes=[("comp", "code"), ("comp", "low", "high")]),
})
# The index columns holding a term id, by table kind, with the length their text is cut to.
TERM_COLUMNS = MappingProxyType({
    "token": {"system": 255, "code": 255, "text": 255},
    "string": {"value": 255},
    "reference": {"target_type": 64, "target_id": 64, "url": 255},
    "uri": {"uri": 255},
    "composite": {"system": 255, "code": 255, "text": 255},
    "special": {"source": 64},
})
# Parameters answered from ``resource``'s own columns, by expression: no index rows are written
# for them (``_id`` from ``resource.id``, ``_lastUpdated`` from ``resource.last_updated``,
# ``_source`` from ``resource.source``, a term id: every resource of a trial has the same one).
RESOURCE_COLUMNS = MappingProxyType({"Resource.id": resource.c.id, "id": resource.c.id,
                                     "Resource.meta.lastUpdated": resource.c.last_updated,
                                     "meta.lastUpdated": resource.c.last_updated,
                                     "Resource.meta.source": resource.c.source, "meta.source": resource.c.source})
ID_EXPRESSIONS = frozenset({"Resource.id", "id"})
SORT_COLUMNS = MappingProxyType({"token": "code", "string": "value", "date": "low", "number": "value", "uri": "uri"})


def exact_hash(text: str) -> int:
    """The 64-bit signed number ``idx_string.exact`` holds for ``text`` (``:exact`` compares it
    after the normalised value, so two texts must agree in both to be taken for each other)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big", signed=True)


def create_tables(engine: sa.Engine) -> None:
    """Create the tables that do not exist yet and record the layout version in a new database."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(schema)).scalar_one() == 0:
            conn.execute(sa.insert(schema).values(version=SCHEMA_VERSION))


def cell_of(conn: sa.Connection, latitude: sa.ColumnElement, longitude: sa.ColumnElement) -> sa.ColumnElement:
    """:func:`fhirstudy.search.geo.cell` in SQL, the same float arithmetic (both sums are at least 0,
    so SQLite's CAST, which truncates, is floor there)."""
    def floor(value):
        return sa.cast(value if conn.dialect.name == "sqlite" else sa.func.floor(value), sa.Integer)
    return floor(latitude + 90.0) * 361 + floor(longitude + 180.0)


def _upgrade_5(conn: sa.Connection) -> None:
    """Layout 5 to 6: the position index with the unit vectors (the same rows, read without the table)."""
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_idx_position_0"))
    conn.execute(sa.text("CREATE INDEX ix_idx_position_0 ON idx_position (pid, latitude, longitude, x, y, z, resource_pk)"))


def _upgrade_6(conn: sa.Connection) -> None:
    """Layout 6 to 7: each position's grid cell, computed from its own row, and the index by cell;
    the sources of linked positions are left empty until ``fhirstudy reindex`` (the near page
    then finds a study's nearest site by looking its sites up, as before)."""
    position = INDEX_TABLES["special"]
    conn.execute(sa.text("ALTER TABLE idx_position ADD COLUMN cell INTEGER"))
    conn.execute(sa.text("ALTER TABLE idx_position ADD COLUMN source INTEGER"))
    conn.execute(sa.update(position).values(cell=cell_of(conn, position.c.latitude, position.c.longitude)))
    (index,) = (i for i in position.indexes if i.name == "ix_idx_position_0")
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_idx_position_0"))
    index.create(conn)


# Layouts that are brought up to date in place when a store opens them (by the version they
# are at): changes that add or rebuild indexes, or add a column computed from the row's own
# values, never ones that change what a resource's rows are.
UPGRADES = MappingProxyType({5: _upgrade_5, 6: _upgrade_6})


def check_layout(engine: sa.Engine) -> None:
    """Upgrade a database of an older layout that :data:`UPGRADES` knows how to bring up to date;
    refuse one whose tables another layout made (it would be searched wrongly)."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(resource.name):
        return
    version = 1
    if inspector.has_table(schema.name):
        with engine.connect() as conn:
            version = conn.execute(sa.select(sa.func.max(schema.c.version))).scalar() or 1
    while version in UPGRADES:
        with engine.begin() as conn:  # read again inside: another process may have upgraded it meanwhile
            version = conn.execute(sa.select(sa.func.max(schema.c.version))).scalar()
            if version in UPGRADES:
                UPGRADES[version](conn)
                version += 1
                conn.execute(sa.insert(schema).values(version=version))
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"the database at {engine.url.render_as_string(hide_password=True)} was made by "
            f"another version of fhirstudy (storage layout {version}, this one reads "
            f"{SCHEMA_VERSION}); load the data again into a new database (for SQLite: another "
            f"--db path, or delete the file and its -wal/-shm files)")
