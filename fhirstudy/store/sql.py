"""The FHIR resource store on SQLAlchemy Core: :class:`SqlStore`, one implementation of
:class:`~fhirstudy.store.repository.Repository` for SQLite and PostgreSQL, chosen by URL.

It composes the rooms beside it, each readable on its own:

- :mod:`~fhirstudy.store.repository`: the protocols and the result types;
- :mod:`~fhirstudy.store.schema`: the tables, ``param_id``, the layout check;
- :mod:`~fhirstudy.store.engine`: engines, SQLite's BEGIN, database errors -> ours (one boundary);
- :mod:`~fhirstudy.store.indexing`: index rows with pids (one :class:`Indexer` per store);
- :mod:`~fhirstudy.store.writes`: :class:`Tx`, the write path inside one transaction;
- :mod:`~fhirstudy.store.reads`: current rows, versions, history, a page's bytes, the generation;
- :mod:`~fhirstudy.store.compiler`: criteria -> SQL;  :mod:`~fhirstudy.store.paging`: keyset
  paging both ways;  :mod:`~fhirstudy.store.includes`: ``_include``/``_revinclude``;
- :mod:`~fhirstudy.store.state` (the write generation and the index's registry hash),
  :mod:`~fhirstudy.store.reindex`, :mod:`~fhirstudy.store.guards`,
  :mod:`~fhirstudy.store.timeout`, :mod:`~fhirstudy.store.urls`.

Writes go through :meth:`SqlStore.write`: ``work(tx)`` runs in one database transaction with a
:class:`Tx`.  On PostgreSQL two writers creating the same id meet the unique constraints: the
loser's transaction is rolled back and ``work`` is run again (:data:`WRITE_RETRIES` times, then
:class:`WriteConflict`).  Searches are answered in SQL from the index tables (a count unless
``_total=none``, a page of primary keys, their bytes, then the included resources); results
carry the stored JSON bytes untouched.  These layouts keep 100,000 studies (2.8 million
resources) in 9.9 GB of SQLite (``bench/README.md``).

:func:`open_store` is the one place that loads the default search-parameter registry; a
:class:`SqlStore` is given its registry.  The names this module held before it was split are
re-exported from here.
"""
from __future__ import annotations

import uuid
from typing import Callable, Iterable, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from fhirstudy.config import DEFAULT_DATABASE_URL as DEFAULT_URL  # the named default, defined once
from fhirstudy.errors import InvalidRequest, StoreError, WriteConflict
from fhirstudy.search.index import now_instant, split_reference
from fhirstudy.search.query import SearchQuery
from fhirstudy.search.registry import Registry, load_registry
from fhirstudy.store import reads
from fhirstudy.store import state as _state
from fhirstudy.store.compiler import check_query, index_matches, search_conditions
from fhirstudy.store.content import Codec, add_default_dictionary, train_dictionary
from fhirstudy.store.engine import CHUNK, WRITE_OPTION, chunks, db_errors, engine_for
from fhirstudy.store.snapshot import open_snapshot
from fhirstudy.store.guards import check_integer, check_key, check_text
from fhirstudy.store.includes import ITERATE_ROUNDS, MAX_INCLUDED, included
from fhirstudy.store.indexing import Indexer, Prepared, content_hash
from fhirstudy.store.paging import page
from fhirstudy.store.repository import (HISTORY_COUNT, Head, HistoryEntry, HistoryPage, Key, Placed, PutResult, SearchResult,
                                        StoredResource, WriteResult)
from fhirstudy.store.schema import (INDEX_TABLES, MAX_VERSION, SCHEMA_VERSION, check_layout, check_param_ids,
                                    create_tables, history, instant_ms, metadata, param_id, resource, schema)
from fhirstudy.store.timeout import search_timeout_ms, time_limit
from fhirstudy.store.writes import Tx, insert_rows

WRITE_RETRIES = 3  # times a write transaction is run again after losing a race
T = TypeVar("T")

# the names of the one-room module, for code that imports them from here
_db_errors = db_errors
_WRITE_OPTION = WRITE_OPTION
_chunks = chunks
_insert_rows = insert_rows

__all__ = ["CHUNK", "DEFAULT_URL", "HISTORY_COUNT", "INDEX_TABLES", "ITERATE_ROUNDS", "MAX_INCLUDED",
           "MAX_VERSION", "SCHEMA_VERSION", "WRITE_RETRIES", "Head", "HistoryEntry", "HistoryPage", "Prepared",
           "PutResult", "SearchResult", "SqlStore", "StoredResource", "Tx", "WriteResult", "content_hash",
           "engine_for", "history", "metadata", "open_store", "param_id", "resource", "schema"]


class SqlStore:
    """FHIR resources, their history and their search index in one SQL database (SQLite or
    PostgreSQL), searched with the parameters of ``registry``."""

    def __init__(self, engine: sa.Engine, registry: Registry,
                 clock: Callable[[], str] = now_instant, search_timeout_ms: int | None = None,
                 check_index: bool = True):
        self.engine = engine
        self.registry = registry
        self.indexer = Indexer(registry)
        self.clock = clock
        self.search_timeout_ms = _timeout(search_timeout_ms)
        self.index_hash = _state.registry_hash(self.registry)
        check_param_ids(self.registry)
        try:
            with db_errors():
                check_layout(engine)
                create_tables(engine)
                with engine.begin() as conn:
                    add_default_dictionary(conn)
                self.codec = Codec(engine)
                _state.state_metadata.create_all(engine)
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

    # -- writing ------------------------------------------------------------------------------

    def write(self, work: Callable[[Tx], T], retries: int = WRITE_RETRIES) -> T:
        """Run ``work(tx)`` in one database transaction and commit; return what it returns.

        Any exception rolls everything back and propagates.  When a concurrent writer won a race
        for the same rows, ``work`` is run again from the start (up to ``retries`` times), then
        :class:`WriteConflict` is raised; ``work`` must therefore depend only on its ``tx``.
        """
        writer = self.engine.execution_options(**{WRITE_OPTION: True})
        attempt = 0
        while True:
            try:
                now = self.clock()
                instant_ms(now)  # the one form last_updated columns keep (else StoreError, before writing)
                with db_errors(), writer.begin() as conn:
                    tx = Tx(self.indexer, self.codec, conn, now)
                    result = work(tx)
                    tx.finish()
                    if tx.written:  # last, so the state row stays locked only until the commit
                        if _state.bump(conn, self.index_hash):
                            insert_rows(conn, _state.reindex_queue,
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

    def create(self, resource: dict) -> WriteResult:
        """Store ``resource`` as a new resource (REST method POST), under a new id (uuid4: a
        server operation) when it has none.  An id that exists makes a new version of it."""
        if not resource.get("id"):
            resource = {**resource, "id": str(uuid.uuid4())}
        prepared = self.prepare([resource])
        return self.write(lambda tx: tx.put_prepared(prepared, method="POST"))[0]

    def update(self, resource: dict) -> WriteResult:
        """Store ``resource`` (``resourceType`` and ``id`` set) as the next version of its id, or
        create it (REST method PUT); unchanged content keeps its version."""
        prepared = self.prepare([resource])
        return self.write(lambda tx: tx.put_prepared(prepared))[0]

    def delete(self, rtype: str, rid: str) -> WriteResult | None:
        """Delete ``rtype/rid`` (a version without content); None when there is nothing to delete."""
        check_key(rtype, rid)
        return self.write(lambda tx: tx.delete(rtype, rid))

    def prepare(self, resources: Iterable[dict]) -> list[Prepared]:
        """Check ``resources``' keys and compute, outside any transaction, their content hashes and
        the index rows that do not depend on the moment of the write (see :meth:`Tx.put_prepared`)."""
        return self.indexer.prepare(resources)

    def index_rows_of(self, doc: dict, known: dict | None = None) -> dict[str, list[dict]]:
        """Every index row of the stored resource ``doc`` (pid set, no ``resource_pk``); linked
        parameters read the resources it points at from ``known`` (by type and id: the stored
        resources the caller holds, and what was read before, None for one not stored), else
        from the store, and keep what they read in ``known``."""
        known = {} if known is None else known

        def lookup(reference: str) -> dict | None:
            rtype, rid = split_reference(reference)
            if rtype is None or reference.startswith(("http://", "https://", "urn:")):
                return None
            if (rtype, rid) not in known:
                entry = self.read_entry(rtype, rid)
                known[rtype, rid] = orjson.loads(entry.json) if entry else None
            return known[rtype, rid]
        return self.indexer.all_rows(doc, lookup)

    # -- reading ------------------------------------------------------------------------------

    def read_entry(self, rtype: str, rid: str) -> StoredResource | None:
        """The stored resource ``rtype/rid`` with its version and lastUpdated, or None (also when
        it was deleted)."""
        check_key(rtype, rid)
        with db_errors(), self.engine.connect() as conn:
            return reads.read_entry(conn, self.codec, rtype, rid)

    def read(self, rtype: str, rid: str) -> bytes | None:
        """The stored JSON bytes of ``rtype/rid``, or None when there is no such resource."""
        entry = self.read_entry(rtype, rid)
        return entry.json if entry else None

    def head(self, rtype: str, rid: str) -> Head | None:
        """The current version of ``rtype/rid`` and whether it is deleted, or None if never stored."""
        check_key(rtype, rid)
        with db_errors(), self.engine.connect() as conn:
            return reads.head(conn, rtype, rid)

    def read_version(self, rtype: str, rid: str, version: int) -> HistoryEntry | None:
        """Version ``version`` of ``rtype/rid`` (``json`` None if that version is a delete), or None."""
        check_key(rtype, rid)
        check_integer(version, "version")
        if version > MAX_VERSION:  # past the version column: no resource has that many versions
            return None
        with db_errors(), self.engine.connect() as conn:
            row = conn.execute(reads.history_select().where(
                resource.c.type == rtype, resource.c.id == rid, history.c.version == version)).first()
        return reads.history_entry(self.codec, row) if row else None

    def history(self, rtype: str | None = None, rid: str | None = None, since: str | None = None,
                count: int = HISTORY_COUNT, offset: int = 0) -> HistoryPage:
        """Versions of one resource (``rtype`` and ``rid``), of a type (``rtype``) or of everything,
        newest first; ``since`` (an instant as stored, e.g. ``2025-01-02T03:04:05.678Z``) keeps
        those written at or after it.  Returns the total and the page ``offset..offset+count``."""
        check_key(rtype, rid)
        check_integer(count, "_count")
        check_integer(offset, "_offset")
        check_text(since, "_since")
        with db_errors(), self.engine.connect() as conn, time_limit(conn, self.search_timeout_ms, "history request"):
            return reads.history_page(conn, self.codec, rtype, rid, since, count, offset)

    def generation(self) -> int:
        """A number that grows with every committed write (the state row's counter, bumped in
        commit order): equal generations mean the same stored content, across processes and
        machines sharing the database."""
        return reads.generation(self.engine)

    def search(self, query: SearchQuery) -> SearchResult:
        """Answer ``query`` from the index: the total (unless ``_total=none``), the page of
        ``count`` matches after ``query.cursor`` (then after ``offset`` more) ordered by the sort
        keys then by primary key (the order resources were first stored), the included
        resources, and the next and previous pages' cursors.

        Without ``_sort``, a search with a criterion that selects index rows is answered from the
        index tables alone (:func:`~fhirstudy.store.compiler.index_matches`); otherwise from
        ``resource`` joined with them.
        """
        check_query(query)
        matches = None if query.sort else index_matches(query)
        where = search_conditions(query) if matches is None else None
        if matches is None:
            counted = sa.select(sa.func.count()).select_from(resource).where(*where)
        else:
            counted = sa.select(sa.func.count()).select_from(matches)
        with db_errors(), self.engine.connect() as conn, time_limit(conn, self.search_timeout_ms, "search"):
            total = conn.execute(counted).scalar_one() if query.total != "none" else None
            if not query.count or total == 0:
                return SearchResult(total, [])
            found = page(conn, query, where, matches)
            entries = reads.load(conn, self.codec, found.pks)
            extra = included(conn, self.codec, query, entries) if query.includes else []
        return SearchResult(total, entries, extra, found.next_cursor, found.prev_cursor)

    def search_keys(self, query: SearchQuery, versions: bool = True) -> tuple[list[Key], tuple | None]:
        """The keys of one page of ``query``'s matches (``count`` of them after ``query.cursor``;
        no content, total or includes), with their ids and versions unless ``versions`` is False
        (primary keys alone: one index query), and the next page's cursor: for callers that keep
        what they derive from each version (``$match``'s study profiles)."""
        check_query(query)
        matches = None if query.sort else index_matches(query)
        where = search_conditions(query) if matches is None else None
        with db_errors(), self.engine.connect() as conn, time_limit(conn, self.search_timeout_ms, "search"):
            found = page(conn, query, where, matches)
            if not versions:
                return [Key(pk, None, None) for pk in found.pks], found.next_cursor
            return [Key(pk, rid, version) for pk, rid, version in reads.keys(conn, found.pks)], found.next_cursor

    def read_many(self, rtype: str, ids: Iterable[str], content: bool = True) -> dict[str, StoredResource]:
        """The current versions of the ``rtype`` resources ``ids`` that exist, by id (``content=False``:
        versions only, bytes empty)."""
        ids = list(ids)
        for rid in ids:
            check_key(rtype, rid)
        with db_errors(), self.engine.connect() as conn:
            return reads.read_many(conn, self.codec, rtype, ids, content)

    def positions(self, rtype: str, ids: Iterable[str], code: str = "near") -> dict[str, list[Placed]]:
        """The positions the ``rtype`` resources ``ids`` that exist are indexed at by their special
        parameter ``code``, by id: read from the index (one transaction), no content."""
        ids = list(ids)
        for rid in ids:
            check_key(rtype, rid)
        with db_errors(), self.engine.connect() as conn, conn.begin():
            return reads.positions(conn, rtype, ids, param_id(rtype, code))

    def snapshot(self):
        """A context manager giving one consistent :class:`~fhirstudy.store.snapshot.Snapshot` of
        the store for a long read (an export) while writes go on."""
        return open_snapshot(self.engine, self.codec, self.clock)

    def train_dictionary(self) -> int:
        """Train a compression dictionary from the stored resources and compress new writes with
        it (:func:`~fhirstudy.store.content.train_dictionary`); its id.  Older rows keep theirs."""
        with db_errors():
            return train_dictionary(self.codec)

    def close(self) -> None:
        """Release every database connection."""
        self.engine.dispose()


def _timeout(value: int | None) -> int:
    try:
        return search_timeout_ms(value)
    except InvalidRequest as exc:
        raise StoreError(f"the search time limit: {exc}") from exc


def open_store(url: str = DEFAULT_URL, registry: Registry | None = None,
               clock: Callable[[], str] = now_instant, search_timeout_ms: int | None = None,
               check_index: bool = True) -> SqlStore:
    """Open (creating tables if needed) the store at ``url``: ``sqlite:///path.db`` (default),
    ``sqlite://`` for memory, or ``postgresql://user@host/db``, searched with ``registry`` (the
    default search parameters when None).  ``clock`` gives lastUpdated; ``search_timeout_ms``
    bounds each search (:mod:`fhirstudy.store.timeout`).  An index built for other search
    parameters than ``registry``'s is refused (:class:`IndexOutdated`) unless ``check_index`` is
    false (for ``fhirstudy reindex``)."""
    registry = registry or load_registry()
    with db_errors():
        return SqlStore(engine_for(url), registry, clock, search_timeout_ms, check_index)
