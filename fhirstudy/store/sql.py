"""The FHIR resource store on SQLAlchemy Core: one implementation, SQLite or PostgreSQL by URL.

Tables: ``resource`` (the current version of each resource: type, id, version, last_updated,
deleted, content_hash and the stored JSON bytes with ``meta.versionId``/``meta.lastUpdated`` set),
``resource_history`` (every version, the current one included, with the REST method that made it;
a delete is a version without content) and one index table per search-parameter type
(``idx_token``, ``idx_string``, ``idx_reference``, ``idx_date``, ``idx_number``, ``idx_uri``,
``idx_composite``),
filled at write time from :func:`fhirstudy.search.index.index_rows`.  The current row, its
history row and its index rows are always written in one transaction.

The JSON of a version is stored once: the current version's bytes live in ``resource`` and its
history row has no content of its own; when a newer version (or a delete) supersedes it, the old
bytes move into its history row.  Index rows name their parameter by ``pid``, a 32-bit hash of
``type.code`` (:func:`param_id`, after HAPI FHIR's hash columns) instead of two strings, and
``_id`` is answered from ``resource.id`` itself.  These keep 100,000 studies (2.8 million
resources) in 9.9 GB of SQLite instead of 16 GB (``bench/README.md``).  ``fhirstudy_schema`` holds the layout's version: a database of another
layout is refused with a clear error rather than searched wrongly.

Writes go through :meth:`SqlStore.write`: ``work(tx)`` runs in one database transaction with a
:class:`Tx` (read the current state with a row lock, find matches, put, delete).  SQLite write
transactions start with ``BEGIN IMMEDIATE`` (writers queue instead of failing on a stale
snapshot); on PostgreSQL rows are locked with ``SELECT ... FOR UPDATE`` and two writers creating
the same id meet the unique constraints: the loser's transaction is rolled back and ``work`` is
run again (:data:`WRITE_RETRIES` times, then :class:`WriteConflict`).

Searches are answered in SQL from the index tables (a count unless ``_total=none``, a page query,
then the included resources); results carry the stored JSON bytes untouched.  Without ``_sort``,
matches come in the order they were first stored (primary key), and a search with an indexed
criterion reads only the index tables.  Pages are cut
by keyset, not by offset: a page starts after the sort values and primary key of the previous
page's last entry (``SearchQuery.cursor``), so a write between two page requests neither repeats
nor skips a resource that did not itself change (an offset would shift every later match by
one).  Database errors are translated to :class:`StoreError` at this one boundary (``_ERRORS``).

Beside this module: :mod:`~fhirstudy.store.state` (the write generation, bumped in commit order,
and the hash of the search parameters the index was built for), :mod:`~fhirstudy.store.reindex`
(rebuilding the index online), :mod:`~fhirstudy.store.guards` (no NUL, over-long key or integer
past 64 bits reaches SQL), :mod:`~fhirstudy.store.timeout` (the time limit of one search) and
:mod:`~fhirstudy.store.urls` (which database URLs are taken).
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, NamedTuple, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from fhirstudy.errors import InvalidRequest, StoreError, StoreValueRejected, WriteConflict
from fhirstudy.search.index import STRING_INDEX_LENGTH, index_rows, now_instant
from fhirstudy.store import state as _state
from fhirstudy.store.guards import (bounded_columns, check_integer, check_key, check_text, check_values,
                                    fit_rows, text_columns)
from fhirstudy.store.timeout import search_timeout_ms, time_limit
from fhirstudy.store.urls import MEMORY, database_url, driver_missing
from fhirstudy.search.query import (Clause, CompositeValue, Include, RangeValue, ReferenceValue,
                                    SearchQuery, SortKey, StringValue, TokenValue, UriValue)
from fhirstudy.search.registry import Registry, load_registry
from fhirstudy.config import DEFAULT_DATABASE_URL as DEFAULT_URL  # the named default, defined once

CHUNK = 500  # rows per IN (...) list and per executemany batch
WRITE_RETRIES = 3  # times a write transaction is run again after losing a race
MAX_VERSION = 2**31 - 1  # the version columns are 32-bit integers (sa.Integer on PostgreSQL)
HISTORY_COUNT = 50  # history entries per page unless asked otherwise
ITERATE_ROUNDS = 3  # rounds of _include:iterate / _revinclude:iterate after the first
MAX_INCLUDED = 1000  # included resources per page at most
T = TypeVar("T")
_MAX_CHAR = "\U0010ffff"  # upper bound for starts-with range scans
_ID = sa.String(64)
_KEY = sa.String(255)
# Indexed text columns compare byte-wise on both backends, so range scans mean "starts with".
_SORTABLE = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
SCHEMA_VERSION = 2  # 1: rtype/param strings in index rows, JSON in resource and history alike

metadata = sa.MetaData()

schema = sa.Table("fhirstudy_schema", metadata, sa.Column("version", sa.Integer, nullable=False))

resource = sa.Table(
    "resource", metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("id", _ID, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.String(32), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("type", "id", name="uq_resource_type_id"),
)

history = sa.Table(
    "resource_history", metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("id", _ID, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.String(32), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),        # POST, PUT or DELETE
    sa.Column("created", sa.Boolean, nullable=False),         # this version (re)created the resource
    sa.Column("content", sa.LargeBinary, nullable=True),      # None for a delete
    sa.UniqueConstraint("type", "id", "version", name="uq_history_type_id_version"),
    sa.Index("ix_history_type_pk", "type", "pk"),
)


def _index_table(name: str, *columns: sa.Column, indexes: Iterable[tuple[str, ...]],
                 sort: tuple[str, ...] = ()) -> sa.Table:
    """An index table; ``indexes`` lead with ``pid`` for searching, and the per-resource
    index ends with the ``sort`` columns so that sorting reads it alone."""
    table = sa.Table(
        name, metadata,
        sa.Column("resource_pk", sa.Integer, sa.ForeignKey("resource.pk", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),  # param_id(type, code)
        *columns,
    )
    sa.Index(f"ix_{name}_resource", table.c.resource_pk, table.c.pid, *(table.c[c] for c in sort))
    for number, cols in enumerate(indexes):
        sa.Index(f"ix_{name}_{number}", table.c.pid, *(table.c[c] for c in cols), table.c.resource_pk)
    return table


def param_id(rtype: str, code: str) -> int:
    """The 32-bit signed number that stands for parameter ``code`` of ``rtype`` in index rows
    (stable across processes and versions: a hash of ``rtype.code``)."""
    return int.from_bytes(hashlib.blake2b(f"{rtype}.{code}".encode(), digest_size=4).digest(),
                          "big", signed=True)


def _check_param_ids(registry: Registry) -> None:
    seen: dict[int, str] = {}
    for rtype in registry.served_types:
        for code in registry.params(rtype):
            key = f"{rtype}.{code}"
            other = seen.setdefault(param_id(rtype, code), key)
            if other != key:  # pragma: no cover - would need a colliding definition
                raise StoreError(f"search parameters {other} and {key} hash to the same param_id")


INDEX_TABLES = {
    "token": _index_table(
        "idx_token", sa.Column("system", _SORTABLE), sa.Column("code", _SORTABLE),
        sa.Column("text", _SORTABLE),
        indexes=[("code", "system"), ("text",)], sort=("code",)),
    # full: the whole normalised text, only when ``value`` had to be cut (else None)
    "string": _index_table(
        "idx_string", sa.Column("value", _SORTABLE), sa.Column("full", sa.Text),
        sa.Column("exact", sa.Text), indexes=[("value",)], sort=("value",)),
    "reference": _index_table(
        "idx_reference", sa.Column("target_type", sa.String(64)), sa.Column("target_id", _ID),
        sa.Column("url", _SORTABLE), indexes=[("target_id", "target_type"), ("url",)]),
    "date": _index_table(
        "idx_date", sa.Column("low", sa.String(32)), sa.Column("high", sa.String(32)),
        indexes=[("low", "high"), ("high",)], sort=("low", "high")),
    "number": _index_table("idx_number", sa.Column("value", sa.Float), indexes=[("value",)],
                           sort=("value",)),
    "uri": _index_table("idx_uri", sa.Column("uri", _SORTABLE), indexes=[("uri",)], sort=("uri",)),
    "composite": _index_table(
        "idx_composite", sa.Column("grp", sa.Integer, nullable=False), sa.Column("comp", sa.Integer, nullable=False),
        sa.Column("system", _SORTABLE), sa.Column("code", _SORTABLE), sa.Column("text", _SORTABLE),
        sa.Column("low", sa.String(32)), sa.Column("high", sa.String(32)), sa.Column("num", sa.Float),
        indexes=[("comp", "code"), ("comp", "low", "high")]),
}
# Columns of ``resource`` that answer a parameter directly when sorting.
_RESOURCE_COLUMNS = {"Resource.id": resource.c.id, "Resource.meta.lastUpdated": resource.c.last_updated}
# Token parameters answered from ``resource.id`` alone: no index rows are written for them.
_ID_EXPRESSIONS = {"Resource.id", "id"}
_SORT_COLUMNS = {"token": "code", "string": "value", "date": "low", "number": "value", "uri": "uri"}

# Third-party errors -> our message, most specific first.
_ERRORS = (
    (sa_exc.IntegrityError, "the database refused the change (constraint violated)"),
    (sa_exc.OperationalError, "the database is unavailable or failed"),
    (sa_exc.SQLAlchemyError, "database error"),
)


class StoredResource(NamedTuple):
    """A stored resource: its keys, version, lastUpdated and JSON bytes as stored."""

    type: str
    id: str
    version: int
    last_updated: str
    json: bytes


class Head(NamedTuple):
    """The current state of a resource, deleted or not (no content)."""

    type: str
    id: str
    version: int
    last_updated: str
    deleted: bool


class HistoryEntry(NamedTuple):
    """One version of a resource: ``json`` is None for a delete."""

    type: str
    id: str
    version: int
    last_updated: str
    method: str
    created: bool
    json: bytes | None

    @property
    def deleted(self) -> bool:
        return self.json is None


@dataclass(frozen=True)
class HistoryPage:
    """The number of versions matching a history request and the requested page, newest first."""

    total: int
    entries: list[HistoryEntry]


class WriteResult(NamedTuple):
    """What a write did: ``outcome`` is created, updated, unchanged or deleted; ``json`` the
    stored bytes of the (new or unchanged) current version, None after a delete."""

    type: str
    id: str
    version: int
    last_updated: str
    outcome: str
    json: bytes | None

    @property
    def created(self) -> bool:
        return self.outcome == "created"


class PutResult(NamedTuple):
    """What ``put_many`` did with one resource."""

    type: str
    id: str
    version: int
    created: bool


@dataclass(frozen=True)
class SearchResult:
    """The total number of matches (None for ``_total=none``), the requested page of them (in
    order), the resources ``_include``/``_revinclude`` added, the cursor of the next page (None
    on the last page) and that of the previous one (None on the first page)."""

    total: int | None
    entries: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    next_cursor: tuple | None = None
    prev_cursor: tuple | None = None  # the first entry's sort values, when a page comes before it

    @property
    def resources(self) -> list[bytes]:
        """The JSON bytes of the page's resources."""
        return [entry.json for entry in self.entries]


# SQLSTATEs of a lost race on PostgreSQL: unique_violation, serialization_failure, deadlock_detected
_CONFLICT_STATES = {"23505", "40001", "40P01"}


def _lost_race(exc: sa_exc.SQLAlchemyError) -> bool:
    """Whether ``exc`` means another transaction wrote the same rows first (run again to fix)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _CONFLICT_STATES:
        return True
    return isinstance(exc, sa_exc.IntegrityError) and "UNIQUE constraint failed" in str(orig)


@contextmanager
def _db_errors() -> Iterator[None]:
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
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "BEGIN")


_WRITE_OPTION = "fhirstudy_write"


def _sqlite_pragmas(connection, memory: bool) -> None:
    connection.isolation_level = None  # transactions are begun by _sqlite_begin
    cursor = connection.cursor()
    if not memory:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def content_hash(resource: dict) -> str:
    """SHA-256 of the resource without meta.versionId/lastUpdated, keys sorted: equal content,
    equal hash."""
    body = dict(resource)
    meta = {k: v for k, v in (body.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        body["meta"] = meta
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _with_meta(resource: dict, version: int, last_updated: str) -> dict:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = last_updated
    head = {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta}
    return {**head, **{k: v for k, v in resource.items() if k not in head}}


# Parameters whose index rows depend on the moment of the write: computed inside the write
# transaction (the rest are computed before it begins, from the resource alone).
_DYNAMIC_MARK = "lastUpdated"


@dataclass
class Prepared:
    """A resource ready to be written: its content hash and the index rows (pid set) of every
    parameter that does not depend on the moment of the write."""

    resource: dict
    digest: str
    rows: dict[str, list[dict]]


class SqlStore:
    """FHIR resources, their history and their search index in one SQL database (SQLite or
    PostgreSQL)."""

    def __init__(self, engine: sa.Engine, registry: Registry | None = None,
                 clock: Callable[[], str] = now_instant, search_timeout_ms: int | None = None,
                 check_index: bool = True):
        self.engine = engine
        self._postgresql = engine.dialect.name == "postgresql"
        self.registry = registry or load_registry()
        self.clock = clock
        self.search_timeout_ms = _timeout(search_timeout_ms)
        self.index_hash = _state.registry_hash(self.registry)
        _check_param_ids(self.registry)
        try:
            with _db_errors():
                self._check_schema()
                metadata.create_all(engine)
                _state.state_metadata.create_all(engine)
                with engine.begin() as conn:
                    if conn.execute(sa.select(sa.func.count()).select_from(schema)).scalar_one() == 0:
                        conn.execute(sa.insert(schema).values(version=SCHEMA_VERSION))
                self._init_state(check_index)
        except BaseException:
            engine.dispose()  # a refused store keeps no connection open
            raise
        # no pooled connection may survive into a forked worker (gunicorn forks after create_app);
        # an in-memory database lives in its one static connection, so it is kept
        if not isinstance(engine.pool, StaticPool):
            engine.dispose()

    def _init_state(self, check_index: bool) -> None:
        """Create the state row (a second process doing the same at once loses harmlessly) and
        refuse an index built for other search parameters, unless ``check_index`` is false."""
        where = self.engine.url.render_as_string(hide_password=True)
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    empty = conn.execute(sa.select(resource.c.pk).limit(1)).first() is None
                    newest = conn.execute(sa.select(sa.func.max(history.c.pk))).scalar() or 0
                    _state.init_state(conn, self.index_hash, empty, newest)
                    if check_index:
                        _state.check_index(conn, self.index_hash, where)
                return
            except sa_exc.IntegrityError:
                if attempt:
                    raise

    def _check_schema(self) -> None:
        """Refuse a database whose tables another layout made (it would be searched wrongly)."""
        inspector = sa.inspect(self.engine)
        if not inspector.has_table(resource.name):
            return
        version = 1
        if inspector.has_table(schema.name):
            with self.engine.connect() as conn:
                version = conn.execute(sa.select(sa.func.max(schema.c.version))).scalar() or 1
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"the database at {self.engine.url.render_as_string(hide_password=True)} was made by "
                f"another version of fhirstudy (storage layout {version}, this one reads "
                f"{SCHEMA_VERSION}); load the data again into a new database (for SQLite: another "
                f"--db path, or delete the file and its -wal/-shm files)")

    # -- writing ------------------------------------------------------------------------------

    def write(self, work: Callable[[Tx], T], retries: int = WRITE_RETRIES) -> T:
        """Run ``work(tx)`` in one database transaction and commit; return what it returns.

        Any exception rolls everything back and propagates.  When a concurrent writer won a race
        for the same rows, ``work`` is run again from the start (up to ``retries`` times), then
        :class:`WriteConflict` is raised; ``work`` must therefore depend only on its ``tx``.
        """
        writer = self.engine.execution_options(**{_WRITE_OPTION: True})
        attempt = 0
        while True:
            try:
                with _db_errors(), writer.begin() as conn:
                    tx = Tx(self, conn, self.clock())
                    result = work(tx)
                    if tx.written:  # last, so the state row stays locked only until the commit
                        if _state.bump(conn, self.index_hash):
                            _insert_rows(conn, _state.reindex_queue,
                                         [{"resource_pk": pk} for pk in sorted(tx.written)])
                    return result
            except WriteConflict:
                attempt += 1
                if attempt > retries:
                    raise

    def put_many(self, resources: Iterable[dict]) -> list[PutResult]:
        """Create or update ``resources`` in one transaction; unchanged content keeps its version.

        Each resource needs ``resourceType`` and ``id``.  Returns one :class:`PutResult` per
        resource, in order.  Raises :class:`StoreError` (and changes nothing) on failure.
        """
        prepared = self.prepare(resources)  # the costly part, before the write lock is taken
        results = self.write(lambda tx: tx.put_prepared(prepared))
        return [PutResult(r.type, r.id, r.version, r.created) for r in results]

    def prepare(self, resources: Iterable[dict]) -> list[Prepared]:
        """Check ``resources``' keys and compute, outside any transaction, their content hashes and
        the index rows that do not depend on the moment of the write (see :meth:`Tx.put_prepared`)."""
        batch = list(resources)
        _check_keys(batch)
        prepared = []
        for r in batch:
            static, _, pids = _indexed_params(self.registry, r["resourceType"])
            prepared.append(Prepared(r, content_hash(r), _rows_with_pids(r, static, pids)))
        return prepared

    def index_rows_of(self, doc: dict) -> dict[str, list[dict]]:
        """Every index row of the stored resource ``doc`` (pid set, no ``resource_pk``)."""
        static, dynamic, pids = _indexed_params(self.registry, doc["resourceType"])
        return _rows_with_pids(doc, static + dynamic, pids)

    # -- reading ------------------------------------------------------------------------------

    def read_entry(self, rtype: str, rid: str) -> StoredResource | None:
        """The stored resource ``rtype/rid`` with its version and lastUpdated, or None (also when
        it was deleted)."""
        check_key(rtype, rid)
        with _db_errors(), self.engine.connect() as conn:
            return _read_entry(conn, rtype, rid)

    def read(self, rtype: str, rid: str) -> bytes | None:
        """The stored JSON bytes of ``rtype/rid``, or None when there is no such resource."""
        entry = self.read_entry(rtype, rid)
        return entry.json if entry else None

    def head(self, rtype: str, rid: str) -> Head | None:
        """The current version of ``rtype/rid`` and whether it is deleted, or None if never stored."""
        check_key(rtype, rid)
        with _db_errors(), self.engine.connect() as conn:
            return _head(conn, rtype, rid)

    def read_version(self, rtype: str, rid: str, version: int) -> HistoryEntry | None:
        """Version ``version`` of ``rtype/rid`` (``json`` None if that version is a delete), or None."""
        check_key(rtype, rid)
        check_integer(version, "version")
        if version > MAX_VERSION:  # past the version column: no resource has that many versions
            return None
        with _db_errors(), self.engine.connect() as conn:
            row = conn.execute(_history_select().where(
                history.c.type == rtype, history.c.id == rid, history.c.version == version)).first()
        return _history_entry(row) if row else None

    def history(self, rtype: str | None = None, rid: str | None = None, since: str | None = None,
                count: int = HISTORY_COUNT, offset: int = 0) -> HistoryPage:
        """Versions of one resource (``rtype`` and ``rid``), of a type (``rtype``) or of everything,
        newest first; ``since`` (an instant as stored, e.g. ``2025-01-02T03:04:05.678Z``) keeps
        those written at or after it.  Returns the total and the page ``offset..offset+count``."""
        check_key(rtype, rid)
        check_integer(count, "_count")
        check_integer(offset, "_offset")
        check_text(since, "_since")
        where = []
        if rtype is not None:
            where.append(history.c.type == rtype)
        if rid is not None:
            where.append(history.c.id == rid)
        if since is not None:
            where.append(history.c.last_updated >= since)
        with _db_errors(), self.engine.connect() as conn, time_limit(conn, self.search_timeout_ms, "history request"):
            total = conn.execute(sa.select(sa.func.count()).select_from(history).where(*where)).scalar_one()
            rows = conn.execute(_history_select().where(*where).order_by(history.c.pk.desc())
                                .limit(count).offset(offset)).all() if count and offset < total else []
        return HistoryPage(total, [_history_entry(row) for row in rows])

    def generation(self) -> int:
        """A number that grows with every committed write (the state row's counter, bumped in
        commit order): equal generations mean the same stored content, across processes and
        machines sharing the database."""
        # straight through the driver: this runs before every cached search answer, and
        # SQLAlchemy's connection and result machinery would cost ten times the query
        # (on PostgreSQL in autocommit, so that the read is one round trip, not BEGIN, SELECT and
        # the pool's ROLLBACK: a third of a cached answer's time)
        dbapi = self.engine.dialect.loaded_dbapi
        try:
            conn = self.engine.raw_connection()
            driver = conn.driver_connection
            autocommit = self._postgresql
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

    def search(self, query: SearchQuery) -> SearchResult:
        """Answer ``query`` from the index: the total (unless ``_total=none``), the page of
        ``count`` matches after ``query.cursor`` (then after ``offset`` more) ordered by the sort
        keys then by primary key (the order resources were first stored), the included
        resources, and the next and previous pages' cursors.

        Without ``_sort``, a search with a criterion that selects index rows is answered from the
        index tables alone (:func:`_index_matches`); otherwise from ``resource`` joined with them.
        """
        _check_query(query)
        matches = None if query.sort else _index_matches(query)
        if matches is None:
            where = _search_conditions(query)
            counted = sa.select(sa.func.count()).select_from(resource).where(*where)
        else:
            counted = sa.select(sa.func.count()).select_from(matches)
        with _db_errors(), self.engine.connect() as conn, time_limit(conn, self.search_timeout_ms, "search"):
            total = None
            if query.total != "none":
                total = conn.execute(counted).scalar_one()
            entries: list[StoredResource] = []
            included: list[StoredResource] = []
            next_cursor = None
            prev_cursor = None
            if query.count and total != 0:
                backwards = query.before is not None
                if matches is None:
                    statement, keys = _sorted(sa.select(resource.c.pk).where(*where),
                                              query.resource_type, query.sort, reverse=backwards)
                else:
                    statement = sa.select(matches.c.pk).order_by(matches.c.pk.desc() if backwards else matches.c.pk)
                    keys = [(matches.c.pk, False)]
                if query.cursor is not None:
                    statement = statement.where(_beyond(keys, query.cursor))
                if backwards:
                    statement = statement.where(_beyond(keys, query.before, backwards=True))
                statement = statement.add_columns(*(column.label(f"k{n}") for n, (column, _) in enumerate(keys)))
                # order and cut on keys only (one row more: is there a page beyond?), then fetch
                # the page's content by primary key
                rows = conn.execute(statement.limit(query.count + 1)
                                    .offset(0 if backwards else query.offset)).all()
                page = rows[:query.count]

                def position(row) -> tuple:
                    return tuple(getattr(row, f"k{n}") for n in range(len(keys)))

                if backwards:  # the page before ``before``, read from its end: turn it round
                    page.reverse()
                    if len(rows) > query.count:
                        prev_cursor = position(page[0])
                    if page:
                        next_cursor = position(page[-1])
                else:
                    if len(rows) > query.count:
                        next_cursor = position(page[-1])
                    if page and (query.cursor is not None or query.offset):
                        prev_cursor = position(page[0])
                entries = _load(conn, [row.pk for row in page])
                if query.includes:
                    included = _included(conn, query, entries)
        return SearchResult(total, entries, included, next_cursor, prev_cursor)

    def close(self) -> None:
        """Release every database connection."""
        self.engine.dispose()


class Tx:
    """Reads and writes inside one database transaction (see :meth:`SqlStore.write`).

    Every version written in it gets the same lastUpdated (``now``).  Rows read with
    :meth:`head` stay locked until the transaction ends (PostgreSQL ``FOR UPDATE``; a SQLite write
    transaction holds the database's write lock anyway).
    """

    def __init__(self, store: SqlStore, conn: sa.Connection, now: str):
        self.store = store
        self.conn = conn
        self.now = now
        self.written: set[int] = set()  # primary keys of the resources this transaction changed

    def head(self, rtype: str, rid: str) -> Head | None:
        """The current version of ``rtype/rid`` (locked), deleted or not; None if never stored."""
        check_key(rtype, rid)
        return _head(self.conn, rtype, rid, lock=True)

    def read_entry(self, rtype: str, rid: str) -> StoredResource | None:
        """The current stored resource, as this transaction sees it (None if absent or deleted)."""
        check_key(rtype, rid)
        return _read_entry(self.conn, rtype, rid)

    def match(self, query: SearchQuery, limit: int = 2) -> list[str]:
        """Ids of at most ``limit`` resources matching ``query``'s criteria (for conditional
        operations: zero, one, or more than one), seeing this transaction's own writes.

        Two transactions matching the same criteria run one after the other: on PostgreSQL the
        first takes a transaction-scoped advisory lock on the criteria, so the second's match
        waits for its commit and sees what it created (two racing conditional creates make one
        resource, not two).  SQLite write transactions are serialised anyway.
        """
        _check_query(query)
        check_integer(limit, "limit")
        if self.conn.dialect.name == "postgresql":
            criteria = "&".join(f"{name}={value}" for name, value in sorted(query.echo))
            digest = hashlib.blake2b(f"{query.resource_type}?{criteria}".encode(), digest_size=8).digest()
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))
        statement = (sa.select(resource.c.id).where(*_search_conditions(query))
                     .order_by(resource.c.id).limit(limit))
        return list(self.conn.execute(statement).scalars())

    def put(self, resources: Iterable[dict], method: str = "PUT") -> list[WriteResult]:
        """Create or update each resource (``resourceType`` and ``id`` required) as a new version
        made by ``method``; unchanged content keeps its version (outcome ``unchanged``)."""
        return self.put_prepared(self.store.prepare(resources), method)

    def put_prepared(self, prepared: list[Prepared], method: str = "PUT") -> list[WriteResult]:
        """:meth:`put` of resources :meth:`SqlStore.prepare` made ready (before the transaction)."""
        batch = [(p.resource, p.digest, p.rows) for p in prepared]
        known = self._known({(r["resourceType"], r["id"]) for r, _, _ in batch})
        pending: dict[tuple, dict] = {}
        versions: list[dict] = []
        written: dict[tuple, int] = {}  # key -> index in versions of its newest version
        results = []
        for r, digest, rows in batch:
            key = (r["resourceType"], r["id"])
            state = pending.get(key) or known.get(key)
            if state and not state["deleted"] and state["content_hash"] == digest:
                results.append(WriteResult(*key, state["version"], state["last_updated"], "unchanged",
                                           bytes(state["content"])))
                continue
            version = state["version"] + 1 if state else 1
            doc = _with_meta(r, version, self.now)
            content = orjson.dumps(doc)
            created = state is None or state["deleted"]
            if key in pending:  # a second version in this batch: the first keeps its bytes in history
                versions[written[key]]["content"] = pending[key]["content"]
                superseded = pending[key]["superseded"]
            else:
                superseded = known[key] if state and not state["deleted"] else None
            written[key] = len(versions)
            pending[key] = {"pk": state["pk"] if state else None, "type": key[0], "id": key[1],
                            "version": version, "last_updated": self.now, "deleted": False,
                            "content_hash": digest, "content": content, "doc": doc, "rows": rows,
                            "superseded": superseded}
            versions.append({"type": key[0], "id": key[1], "version": version, "last_updated": self.now,
                             "method": method, "created": created, "content": None})
            results.append(WriteResult(*key, version, self.now, "created" if created else "updated", content))
        self._write(list(pending.values()), versions)
        return results

    def delete(self, rtype: str, rid: str) -> WriteResult | None:
        """Delete ``rtype/rid``: a new version without content, its index rows removed.  None when
        there is nothing to delete (never stored, or already deleted)."""
        state = self._known({(rtype, rid)}).get((rtype, rid))
        if state is None or state["deleted"]:
            return None
        version = state["version"] + 1
        self.written.add(state["pk"])
        for table in INDEX_TABLES.values():
            self.conn.execute(sa.delete(table).where(table.c.resource_pk == state["pk"]))
        _keep_superseded(self.conn, [state])
        self.conn.execute(sa.update(resource).where(resource.c.pk == state["pk"]).values(
            version=version, last_updated=self.now, deleted=True, content_hash="", content=b""))
        self.conn.execute(sa.insert(history).values(
            type=rtype, id=rid, version=version, last_updated=self.now, method="DELETE", created=False,
            content=None))
        return WriteResult(rtype, rid, version, self.now, "deleted", None)

    def _known(self, keys: set[tuple[str, str]]) -> dict[tuple, dict]:
        """Current rows of ``keys`` (deleted ones too), locked, in a fixed order against deadlocks."""
        known = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype in sorted(by_type):
            for chunk in _chunks(sorted(by_type[rtype])):
                rows = self.conn.execute(
                    sa.select(resource.c.pk, resource.c.type, resource.c.id, resource.c.version,
                              resource.c.last_updated, resource.c.deleted, resource.c.content_hash,
                              resource.c.content)
                    .where(resource.c.type == rtype, resource.c.id.in_(chunk))
                    .order_by(resource.c.id).with_for_update())
                for row in rows:
                    known[(rtype, row.id)] = row._asdict()
        return known

    def _write(self, rows: list[dict], versions: list[dict]) -> None:
        conn = self.conn
        columns = ("type", "id", "version", "last_updated", "deleted", "content_hash", "content")
        updates = [row for row in rows if row["pk"] is not None]
        inserts = [row for row in rows if row["pk"] is None]
        if updates:
            for chunk in _chunks([u["pk"] for u in updates]):
                for table in INDEX_TABLES.values():
                    conn.execute(sa.delete(table).where(table.c.resource_pk.in_(chunk)))
            _keep_superseded(conn, [u["superseded"] for u in updates if u["superseded"]])
            conn.execute(
                sa.update(resource).where(resource.c.pk == sa.bindparam("b_pk"))
                .values({c: sa.bindparam(f"b_{c}") for c in columns}),
                [{"b_pk": u["pk"], **{f"b_{c}": u[c] for c in columns}} for u in updates])
        if inserts:
            pks = conn.execute(
                sa.insert(resource).returning(resource.c.pk, sort_by_parameter_order=True),
                [{c: row[c] for c in columns} for row in inserts]).scalars().all()
            for row, pk in zip(inserts, pks):
                row["pk"] = pk
        pending: dict[str, list[dict]] = {kind: [] for kind in INDEX_TABLES}
        for row in rows:
            _, dynamic, pids = _indexed_params(self.store.registry, row["type"])
            now_rows = _rows_with_pids(row["doc"], dynamic, pids) if dynamic else {}
            pk = row["pk"]
            self.written.add(pk)
            for kind in INDEX_TABLES:
                for r in (*row["rows"].get(kind, ()), *now_rows.get(kind, ())):
                    pending[kind].append({**r, "resource_pk": pk})
        for kind, index in pending.items():
            _insert_rows(conn, INDEX_TABLES[kind], index)
        _insert_rows(conn, history, versions)


def _keep_superseded(conn: sa.Connection, states: list[dict]) -> None:
    """Move the bytes of versions about to be superseded into their history rows (the current
    version keeps its bytes in ``resource`` only)."""
    if states:
        conn.execute(
            sa.update(history).where(history.c.type == sa.bindparam("b_type"),
                                     history.c.id == sa.bindparam("b_id"),
                                     history.c.version == sa.bindparam("b_version"))
            .values(content=sa.bindparam("b_content")),
            [{"b_type": s["type"], "b_id": s["id"], "b_version": s["version"], "b_content": s["content"]}
             for s in states])


def _insert_rows(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert ``rows`` (dicts by column name) straight through the driver (COPY on PostgreSQL,
    executemany on SQLite): index rows come by the hundred thousand when loading, and a
    statement per row costs more than the database's own work."""
    if not rows:
        return
    columns = [c.name for c in table.columns if not c.primary_key]  # the database numbers rows
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
    for chunk in _chunks(rows, 5000):
        conn.exec_driver_sql(sql, [tuple(row.get(c) for c in columns) for row in chunk])


_INDEXED: dict[tuple[int, str], tuple] = {}
# per index table: its length-bounded string columns, and all its string columns
_FIT = {kind: (bounded_columns(table), text_columns(table)) for kind, table in INDEX_TABLES.items()}


def _indexed_params(registry: Registry, rtype: str) -> tuple[list, list, dict[str, int]]:
    """The parameters of ``rtype`` that get index rows (all but ``_id``): those computed from the
    resource alone, those that depend on the moment of the write, and their pids by code."""
    key = (id(registry), rtype)
    found = _INDEXED.get(key)
    if found is None:
        params = [p for p in registry.params(rtype).values() if p.expression.text not in _ID_EXPRESSIONS]
        dynamic = [p for p in params if _DYNAMIC_MARK in p.expression.text]
        found = _INDEXED[key] = ([p for p in params if p not in dynamic], dynamic,
                                 {p.code: param_id(rtype, p.code) for p in params})
    return found


def _rows_with_pids(doc: dict, params: list, pids: dict[str, int]) -> dict[str, list[dict]]:
    """Index rows of ``doc`` for ``params``, cut to their columns (a NUL refused), ``param``
    replaced by its ``pid``."""
    rows = index_rows(doc, params)
    where = f"{doc['resourceType']}/{doc['id']}"
    for kind, index in rows.items():
        if index:
            fit_rows(index, *_FIT[kind], where)
            for r in index:
                r["pid"] = pids[r.pop("param")]
    return rows


def _check_keys(resources: list[dict]) -> None:
    for r in resources:
        if not isinstance(r.get("resourceType"), str) or not isinstance(r.get("id"), str) or not r["id"]:
            raise StoreValueRejected("every resource needs a resourceType and an id")
        check_key(r["resourceType"], r["id"], f"{r['resourceType']}.id")


def _check_query(query: SearchQuery) -> None:
    """No NUL and no integer past 64 bits in what ``query`` would send to the database."""
    check_integer(query.count, "_count")
    check_integer(query.offset, "_offset")
    for clause in query.clauses:
        check_values(clause.values, clause.param.code)
    for name, position in (("_cursor", query.cursor), ("_before", query.before)):
        if position is not None:
            check_values(position, name)


def _timeout(value: int | None) -> int:
    try:
        return search_timeout_ms(value)
    except InvalidRequest as exc:
        raise StoreError(f"the search time limit: {exc}") from exc


def _read_entry(conn: sa.Connection, rtype: str, rid: str) -> StoredResource | None:
    row = conn.execute(
        sa.select(resource.c.type, resource.c.id, resource.c.version, resource.c.last_updated,
                  resource.c.content)
        .where(resource.c.type == rtype, resource.c.id == rid, resource.c.deleted.is_(False))
    ).first()
    return StoredResource(row.type, row.id, row.version, row.last_updated, bytes(row.content)) if row else None


def _head(conn: sa.Connection, rtype: str, rid: str, lock: bool = False) -> Head | None:
    statement = (sa.select(resource.c.type, resource.c.id, resource.c.version, resource.c.last_updated,
                           resource.c.deleted)
                 .where(resource.c.type == rtype, resource.c.id == rid))
    row = conn.execute(statement.with_for_update() if lock else statement).first()
    return Head(row.type, row.id, row.version, row.last_updated, bool(row.deleted)) if row else None


def _history_select() -> sa.Select:
    """Versions with their bytes: a history row's own, or for the current version (which keeps
    none of its own) the bytes in ``resource``."""
    current = sa.and_(resource.c.type == history.c.type, resource.c.id == history.c.id,
                      resource.c.version == history.c.version, resource.c.deleted.is_(False),
                      history.c.method != "DELETE")
    return (sa.select(history.c.type, history.c.id, history.c.version, history.c.last_updated,
                      history.c.method, history.c.created,
                      sa.func.coalesce(history.c.content, resource.c.content).label("content"))
            .select_from(history.outerjoin(resource, current)))


def _history_entry(row) -> HistoryEntry:
    return HistoryEntry(row.type, row.id, row.version, row.last_updated, row.method, bool(row.created),
                        bytes(row.content) if row.content is not None else None)


def _search_conditions(query: SearchQuery) -> list[sa.ColumnElement[bool]]:
    clauses = [_clause_condition(query.resource_type, clause) for clause in query.clauses]
    where = [*clauses, resource.c.deleted.is_(False)]
    if not any(_narrows(clause) for clause in query.clauses):
        # index rows already carry the type; matching on it here too would make SQLite scan
        # every resource of the type instead of looking up the matches by primary key
        where.append(resource.c.type == query.resource_type)
    return where


def open_store(url: str = DEFAULT_URL, registry: Registry | None = None,
               clock: Callable[[], str] = now_instant, search_timeout_ms: int | None = None,
               check_index: bool = True) -> SqlStore:
    """Open (creating tables if needed) the store at ``url``: ``sqlite:///path.db`` (default),
    ``sqlite://`` for memory, or ``postgresql://user@host/db``.  ``clock`` gives lastUpdated;
    ``search_timeout_ms`` bounds each search (:mod:`fhirstudy.store.timeout`).  An index built
    for other search parameters than ``registry``'s is refused (:class:`IndexOutdated`) unless
    ``check_index`` is false (for ``fhirstudy reindex``)."""
    with _db_errors():
        return SqlStore(engine_for(url), registry, clock, search_timeout_ms, check_index)


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------------
# criteria -> SQL


def _clause_condition(rtype: str, clause: Clause, pk: sa.ColumnElement = resource.c.pk) -> sa.ColumnElement[bool]:
    """Whether the resource whose primary key is ``pk`` meets ``clause``."""
    if clause.param.type == "composite":
        return sa.or_(*(_composite_condition(rtype, clause, value, pk) for value in clause.values))
    if clause.param.expression.text in _ID_EXPRESSIONS:
        if pk is resource.c.pk:
            return _id_condition(clause)
        matches = sa.select(resource.c.pk).where(resource.c.type == rtype, _id_condition(clause))
        return pk.in_(matches)
    if clause.modifier == "missing":
        rows = _matching_rows(rtype, clause, any_value=True)
        return pk.not_in(rows) if clause.missing else pk.in_(rows)
    matches = _matching_rows(rtype, clause)
    return pk.not_in(matches) if clause.modifier == "not" else pk.in_(matches)


def _matching_rows(rtype: str, clause: Clause, any_value: bool = False) -> sa.Select:
    """``resource_pk`` of the index rows of ``clause``'s parameter with one of its values (any
    value with ``any_value``); not for composites or ``_id``."""
    table = INDEX_TABLES[clause.param.type]
    rows = sa.select(table.c.resource_pk).where(table.c.pid == param_id(rtype, clause.param.code))
    if any_value:
        return rows
    return rows.where(sa.or_(*(_value_condition(table, clause.modifier, v) for v in clause.values)))


def _index_matches(query: SearchQuery) -> sa.Subquery | None:
    """The primary keys of the matches read from the index tables alone (one row each, as
    ``pk``), or None when no clause selects from an index table.

    Deleted resources have no index rows, and a parameter's rows belong to one resource type
    (``pid``), so the ``resource`` table is not read: at 100,000 studies a common condition
    matches thousands, and looking each up in ``resource`` costs milliseconds.
    """
    first = next((c for c in query.clauses if _narrows(c) and c.param.type != "composite"), None)
    if first is None:
        return None
    rows = _matching_rows(query.resource_type, first, any_value=first.modifier == "missing").subquery("base")
    pk = rows.c.resource_pk
    others = [_clause_condition(query.resource_type, c, pk) for c in query.clauses if c is not first]
    return sa.select(pk.label("pk")).where(*others).distinct().subquery("matches")


class _IdColumns(NamedTuple):
    """``resource.id`` seen as a token index row: a code without system or text."""

    code: sa.ColumnElement = resource.c.id
    system: sa.ColumnElement = sa.null()
    text: sa.ColumnElement = sa.null()


def _id_condition(clause: Clause) -> sa.ColumnElement[bool]:
    """``_id`` from ``resource.id`` (every resource has one: ``:missing=true`` matches none)."""
    if clause.modifier == "missing":
        return sa.false() if clause.missing else sa.true()
    match = sa.or_(*(_token_condition(_IdColumns(), v) for v in clause.values))
    return sa.not_(match) if clause.modifier == "not" else match


def _composite_condition(rtype: str, clause: Clause, value: CompositeValue,
                         pk: sa.ColumnElement = resource.c.pk) -> sa.ColumnElement[bool]:
    """Resources with one item of the composite whose components all match (same ``grp``)."""
    table = INDEX_TABLES["composite"]
    aliases = [table.alias(f"comp_{n}") for n in range(len(value.parts))]
    first = aliases[0]
    statement = sa.select(first.c.resource_pk)
    conditions = []
    for number, (alias, component, part) in enumerate(zip(aliases, clause.param.components, value.parts)):
        conditions += [alias.c.pid == param_id(rtype, clause.param.code), alias.c.comp == number,
                       _component_condition(alias.c, component.type, part)]
        if number:
            conditions += [alias.c.resource_pk == first.c.resource_pk, alias.c.grp == first.c.grp]
    return pk.in_(statement.select_from(*aliases).where(*conditions))


def _component_condition(c, kind: str, value) -> sa.ColumnElement[bool]:
    if kind == "token":
        return _token_condition(c, value)
    if kind == "date":
        return _date_condition(c.low, c.high, value)
    if kind == "number":
        return _number_condition(c.num, value)
    if kind == "string":
        return _starts_with(c.text, value.normalized)
    if kind == "uri":
        return c.code == value.uri
    return c.code == (value.url or f"{value.target_type}/{value.target_id}")  # reference


def _token_condition(c, value: TokenValue) -> sa.ColumnElement[bool]:
    if value.text is not None:
        return _starts_with(c.text, value.text)
    parts = []
    if value.code is not None:
        parts.append(c.code == _cut(value.code, c.code))
    if value.system is not None:
        parts.append(c.system == _cut(value.system, c.system))
    elif value.no_system:
        parts.append(c.system.is_(None))
    return sa.and_(*parts) if parts else sa.false()


def _narrows(clause: Clause) -> bool:
    """Whether ``clause`` selects from index rows of its type (not :not / :missing=true, not ``_id``)."""
    if clause.param.expression.text in _ID_EXPRESSIONS:
        return False
    return clause.modifier != "not" and not (clause.modifier == "missing" and clause.missing)


def _value_condition(table: sa.Table, modifier: str | None, value) -> sa.ColumnElement[bool]:
    c = table.c
    if isinstance(value, TokenValue):
        return _token_condition(c, value)
    if isinstance(value, StringValue):
        if modifier == "exact":
            return c.exact == value.exact
        if modifier == "contains":
            return sa.func.coalesce(c.full, c.value).like("%" + _escape_like(value.normalized) + "%", escape="\\")
        if len(value.normalized) > STRING_INDEX_LENGTH:  # longer than ``value`` keeps: only ``full`` can match
            return c.full.like(_escape_like(value.normalized) + "%", escape="\\")
        return _starts_with(c.value, value.normalized)
    if isinstance(value, ReferenceValue):
        by_id = sa.and_(c.target_id == _cut(value.target_id, c.target_id),
                        *([c.target_type == _cut(value.target_type, c.target_type)] if value.target_type else []))
        url = _cut(value.url, c.url)
        if value.url and value.target_id:
            return sa.or_(c.url == url, by_id)
        return c.url == url if value.url else by_id
    if isinstance(value, RangeValue) and "low" in c:
        return _date_condition(c.low, c.high, value)
    if isinstance(value, RangeValue):
        return _number_condition(c.value, value)
    if isinstance(value, UriValue):
        return c.uri == _cut(value.uri, c.uri)
    raise TypeError(f"no SQL for {value!r}")  # pragma: no cover - query.py only builds the above


def _cut(text: str | None, column) -> str | None:
    """``text`` cut to the length of index column ``column``, as index values are when written
    (so a long value still finds itself); ``resource`` columns are compared whole."""
    length = getattr(getattr(column, "type", None), "length", None)
    if text is None or not length or len(text) <= length or getattr(column, "table", None) is resource:
        return text
    return text[:length]


def _starts_with(column, text: str) -> sa.ColumnElement[bool]:
    return sa.and_(column >= text, column < text + _MAX_CHAR)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date_condition(low, high, v: RangeValue) -> sa.ColumnElement[bool]:
    """Resource range [low, high] against search range [v.low, v.high] (FHIR R5 3.2.1.5.6)."""
    return {
        "eq": lambda: sa.and_(low >= v.low, high <= v.high),
        "ne": lambda: sa.or_(low < v.low, high > v.high),
        "gt": lambda: high > v.high,
        "lt": lambda: low < v.low,
        "ge": lambda: high >= v.low,
        "le": lambda: low <= v.high,
        "sa": lambda: low > v.high,
        "eb": lambda: high < v.low,
        "ap": lambda: sa.and_(low <= v.high, high >= v.low),
    }[v.prefix]()


def _number_condition(column, v: RangeValue) -> sa.ColumnElement[bool]:
    """A number against the search value (eq/ne use the implicit precision range)."""
    margin = abs(v.value) * 0.1
    return {
        "eq": lambda: sa.and_(column >= v.low, column < v.high),
        "ne": lambda: sa.or_(column < v.low, column >= v.high),
        "gt": lambda: column > v.value,
        "lt": lambda: column < v.value,
        "ge": lambda: column >= v.value,
        "le": lambda: column <= v.value,
        "sa": lambda: column > v.value,
        "eb": lambda: column < v.value,
        "ap": lambda: sa.and_(column >= v.value - margin, column <= v.value + margin),
    }[v.prefix]()


def _load(conn: sa.Connection, pks: list[int]) -> list[StoredResource]:
    """The stored resources with primary keys ``pks``, in that order."""
    if not pks:
        return []
    # straight through the driver (the same connection and transaction): a page's worth of JSON
    # read through SQLAlchemy's result rows costs a third of an uncached search
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    rows = {}
    dbapi = conn.dialect.loaded_dbapi
    for chunk in _chunks(list(dict.fromkeys(pks))):
        sql = (f"SELECT pk, type, id, version, last_updated, content FROM {resource.name} "
               f"WHERE pk IN ({', '.join([mark] * len(chunk))})")
        try:
            cursor = conn.connection.cursor()
            cursor.execute(sql, chunk)
            rows.update((row[0], StoredResource(row[1], row[2], row[3], row[4], bytes(row[5])))
                        for row in cursor.fetchall())
            cursor.close()
        except dbapi.Error as exc:
            raise sa_exc.DBAPIError.instance(sql, chunk, exc, dbapi.Error) from exc
    return [rows[pk] for pk in pks if pk in rows]


def _included(conn: sa.Connection, query: SearchQuery, matches: list[StoredResource]) -> list[StoredResource]:
    """The resources ``query.includes`` add to the page ``matches`` (each once, none of the
    matches); ``:iterate`` ones are applied again to what was added, up to ITERATE_ROUNDS times."""
    seen = {(e.type, e.id) for e in matches}
    added: list[StoredResource] = []
    sources = matches
    for round_number in range(1 + ITERATE_ROUNDS):
        includes = [i for i in query.includes if round_number == 0 or i.iterate]
        found: list[int] = []
        for include in includes:
            found.extend(_include_pks(conn, include, sources))
        fresh = [r for r in _load(conn, list(dict.fromkeys(found))) if (r.type, r.id) not in seen]
        fresh = fresh[:MAX_INCLUDED - len(added)]
        if not fresh:
            break
        seen.update((r.type, r.id) for r in fresh)
        added.extend(fresh)
        sources = fresh
        if not any(i.iterate for i in query.includes) or len(added) >= MAX_INCLUDED:
            break
    return added


def _include_pks(conn: sa.Connection, include: Include, sources: list[StoredResource]) -> list[int]:
    ref = INDEX_TABLES["reference"]
    param = include.param
    if not include.reverse:
        source_ids = [s.id for s in sources if s.type == param.resource_type]
        if not source_ids:
            return []
        source_pks = sa.select(resource.c.pk).where(resource.c.type == param.resource_type,
                                                      resource.c.id.in_(source_ids))
        targets = (sa.select(ref.c.target_type, ref.c.target_id)
                   .where(ref.c.resource_pk.in_(source_pks), ref.c.pid == param_id(param.resource_type, param.code),
                          ref.c.target_id.is_not(None)))
        if include.target_type:
            targets = targets.where(ref.c.target_type == include.target_type)
        by_type: dict[str, list[str]] = {}
        for target_type, target_id in conn.execute(targets):
            by_type.setdefault(target_type, []).append(target_id)
        pks: list[int] = []
        for target_type, ids in sorted(by_type.items()):
            for chunk in _chunks(sorted(set(ids))):
                pks.extend(conn.execute(sa.select(resource.c.pk).where(
                    resource.c.type == target_type, resource.c.id.in_(chunk),
                    resource.c.deleted.is_(False)).order_by(resource.c.id)).scalars())
        return pks
    pks = []
    by_type = {}
    for s in sources:
        if include.target_type in (None, s.type) and (not param.target or s.type in param.target):
            by_type.setdefault(s.type, []).append(s.id)
    for target_type, ids in sorted(by_type.items()):
        pks.extend(conn.execute(
            sa.select(ref.c.resource_pk).distinct()
            .where(ref.c.pid == param_id(param.resource_type, param.code),
                   ref.c.target_type == target_type, ref.c.target_id.in_(ids))
            .order_by(ref.c.resource_pk)).scalars())
    return pks


def _beyond(keys: list[tuple[sa.ColumnElement, bool]], values: tuple,
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


def _sorted(statement: sa.Select, rtype: str, keys: list[SortKey],
            reverse: bool = False) -> tuple[sa.Select, list]:
    """``statement`` ordered by ``keys`` then by primary key, and the (column, descending) pairs it is
    ordered by; a key on an index table joins that table's per-resource minimum (maximum when
    descending; a date by the start of its range either way), and resources without a value
    sort last.  ``reverse`` orders the same way backwards (for the page before a position); the
    pairs returned are those of the forward order."""
    order = []
    columns = []
    for number, key in enumerate(keys):
        column = _RESOURCE_COLUMNS.get(key.param.expression.text)
        if column is None:
            table = INDEX_TABLES[key.param.type]
            source = table.c[_SORT_COLUMNS[key.param.type]]
            aggregate = sa.func.max(source) if key.descending else sa.func.min(source)
            values = (sa.select(table.c.resource_pk, aggregate.label("value"))
                      .where(table.c.pid == param_id(rtype, key.param.code))
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
