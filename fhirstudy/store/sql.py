"""The FHIR resource store on SQLAlchemy Core: one implementation, SQLite or PostgreSQL by URL.

Tables: ``resource`` (type, id, version, last_updated, deleted, content_hash and the stored JSON
bytes with ``meta.versionId``/``meta.lastUpdated`` set) and one index table per search-parameter
type (``idx_token``, ``idx_string``, ``idx_reference``, ``idx_date``, ``idx_number``,
``idx_uri``), filled at write time from :func:`fhirstudy.search.index.index_rows`.

Searches are answered in SQL from the index tables (a count and a page query); results carry the
stored JSON bytes untouched.  Database errors are translated to :class:`StoreError` at this one
boundary (``_ERRORS``).
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from fhirstudy.errors import StoreError
from fhirstudy.search.index import index_rows, now_instant
from fhirstudy.search.query import (Clause, RangeValue, ReferenceValue, SearchQuery, SortKey,
                                    StringValue, TokenValue, UriValue)
from fhirstudy.search.registry import Registry, load_registry

DEFAULT_URL = "sqlite:///fhirstudy.db"
CHUNK = 500  # rows per IN (...) list and per executemany batch
_MAX_CHAR = "\U0010ffff"  # upper bound for starts-with range scans
_ID = sa.String(64)
_KEY = sa.String(255)
# Indexed text columns compare byte-wise on both backends, so range scans mean "starts with".
_SORTABLE = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")

metadata = sa.MetaData()

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


def _index_table(name: str, *columns: sa.Column, indexes: Iterable[tuple[str, ...]],
                 sort: tuple[str, ...] = ()) -> sa.Table:
    """An index table; ``indexes`` lead with (rtype, param) for searching, and the per-resource
    index ends with the ``sort`` columns so that sorting reads it alone."""
    table = sa.Table(
        name, metadata,
        sa.Column("resource_pk", sa.Integer, sa.ForeignKey("resource.pk", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("rtype", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        *columns,
    )
    sa.Index(f"ix_{name}_resource", table.c.resource_pk, table.c.rtype, table.c.param,
             *(table.c[c] for c in sort))
    for number, cols in enumerate(indexes):
        sa.Index(f"ix_{name}_{number}", table.c.rtype, table.c.param,
                 *(table.c[c] for c in cols), table.c.resource_pk)
    return table


INDEX_TABLES = {
    "token": _index_table(
        "idx_token", sa.Column("system", _SORTABLE), sa.Column("code", _SORTABLE),
        sa.Column("text", _SORTABLE),
        indexes=[("code",), ("system", "code"), ("text",)], sort=("code",)),
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
}
# Columns of ``resource`` that answer a parameter directly when sorting.
_RESOURCE_COLUMNS = {"Resource.id": resource.c.id, "Resource.meta.lastUpdated": resource.c.last_updated}
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


class PutResult(NamedTuple):
    """What ``put_many`` did with one resource."""

    type: str
    id: str
    version: int
    created: bool


@dataclass(frozen=True)
class SearchResult:
    """The total number of matches and the requested page of them (in order)."""

    total: int
    entries: list[StoredResource]

    @property
    def resources(self) -> list[bytes]:
        """The JSON bytes of the page's resources."""
        return [entry.json for entry in self.entries]


@contextmanager
def _db_errors() -> Iterator[None]:
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        message = next(text for kind, text in _ERRORS if isinstance(exc, kind))
        raise StoreError(f"{message}: {exc.orig if getattr(exc, 'orig', None) else exc}") from exc


def engine_for(url: str) -> sa.Engine:
    """An engine for ``url``: ``sqlite:///path.db``, ``sqlite://`` (memory) or ``postgresql://...``."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url in ("sqlite://", "sqlite:///:memory:"):
        # one shared connection, so every thread sees the same in-memory database
        engine = sa.create_engine("sqlite://", poolclass=StaticPool,
                                  connect_args={"check_same_thread": False})
    else:
        engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        memory = engine.url.database in (None, "", ":memory:")
        sa.event.listen(engine, "connect", lambda conn, _: _sqlite_pragmas(conn, memory))
    return engine


def _sqlite_pragmas(connection, memory: bool) -> None:
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


class SqlStore:
    """FHIR resources and their search index in one SQL database (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine, registry: Registry | None = None,
                 clock: Callable[[], str] = now_instant):
        self.engine = engine
        self.registry = registry or load_registry()
        self.clock = clock
        with _db_errors():
            metadata.create_all(engine)
        # no pooled connection may survive into a forked worker (gunicorn forks after create_app);
        # an in-memory database lives in its one static connection, so it is kept
        if not isinstance(engine.pool, StaticPool):
            engine.dispose()

    # -- writing ------------------------------------------------------------------------------

    def put_many(self, resources: Iterable[dict]) -> list[PutResult]:
        """Create or update ``resources`` in one transaction; unchanged content keeps its version.

        Each resource needs ``resourceType`` and ``id``.  Returns one :class:`PutResult` per
        resource, in order.  Raises :class:`StoreError` (and changes nothing) on failure.
        """
        batch = [(r, content_hash(r)) for r in resources]
        for r, _ in batch:
            if not isinstance(r.get("resourceType"), str) or not isinstance(r.get("id"), str) or not r["id"]:
                raise StoreError("every resource needs a resourceType and an id")
        with _db_errors(), self.engine.begin() as conn:
            known = self._known(conn, {(r["resourceType"], r["id"]) for r, _ in batch})
            now = self.clock()
            inserts: dict[tuple, dict] = {}
            updates: dict[tuple, dict] = {}
            results = []
            for r, digest in batch:
                key = (r["resourceType"], r["id"])
                state = inserts.get(key) or updates.get(key) or known.get(key)
                if state and state["content_hash"] == digest:
                    results.append(PutResult(*key, state["version"], False))
                    continue
                version = state["version"] + 1 if state else 1
                doc = _with_meta(r, version, now)
                row = {"type": key[0], "id": key[1], "version": version, "last_updated": now,
                       "deleted": False, "content_hash": digest, "content": orjson.dumps(doc), "doc": doc}
                if key in inserts or key not in known:
                    results.append(PutResult(*key, version, key not in inserts))
                    inserts[key] = row
                else:
                    results.append(PutResult(*key, version, False))
                    updates[key] = {**row, "pk": known[key]["pk"]}
            self._write(conn, list(inserts.values()), list(updates.values()))
        return results

    def _known(self, conn: sa.Connection, keys: set[tuple[str, str]]) -> dict[tuple, dict]:
        known = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            for chunk in _chunks(sorted(ids)):
                rows = conn.execute(
                    sa.select(resource.c.pk, resource.c.id, resource.c.version, resource.c.content_hash)
                    .where(resource.c.type == rtype, resource.c.id.in_(chunk)))
                for row in rows:
                    known[(rtype, row.id)] = row._asdict()
        return known

    def _write(self, conn: sa.Connection, inserts: list[dict], updates: list[dict]) -> None:
        columns = ("type", "id", "version", "last_updated", "deleted", "content_hash", "content")
        if updates:
            for chunk in _chunks([u["pk"] for u in updates]):
                for table in INDEX_TABLES.values():
                    conn.execute(sa.delete(table).where(table.c.resource_pk.in_(chunk)))
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
        for row in [*updates, *inserts]:
            params = self.registry.params(row["type"]).values()
            for kind, rows in index_rows(row["doc"], params).items():
                pending[kind].extend({**r, "resource_pk": row["pk"], "rtype": row["type"]} for r in rows)
        for kind, rows in pending.items():
            for chunk in _chunks(rows):
                conn.execute(sa.insert(INDEX_TABLES[kind]), chunk)

    # -- reading ------------------------------------------------------------------------------

    def read_entry(self, rtype: str, rid: str) -> StoredResource | None:
        """The stored resource ``rtype/rid`` with its version and lastUpdated, or None."""
        with _db_errors(), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(resource.c.type, resource.c.id, resource.c.version, resource.c.last_updated,
                          resource.c.content)
                .where(resource.c.type == rtype, resource.c.id == rid, resource.c.deleted.is_(False))
            ).first()
        return StoredResource(row.type, row.id, row.version, row.last_updated, bytes(row.content)) if row else None

    def read(self, rtype: str, rid: str) -> bytes | None:
        """The stored JSON bytes of ``rtype/rid``, or None when there is no such resource."""
        entry = self.read_entry(rtype, rid)
        return entry.json if entry else None

    def search(self, query: SearchQuery) -> SearchResult:
        """Answer ``query`` from the index: total count and the page ``offset``..``offset+count``,
        ordered by the sort keys then by id.  Three queries: count, page keys, page content."""
        clauses = [_clause_condition(query.resource_type, clause) for clause in query.clauses]
        where = [*clauses, resource.c.deleted.is_(False)]
        if not any(_narrows(clause) for clause in query.clauses):
            # index rows already carry the type; matching on it here too would make SQLite scan
            # every resource of the type instead of looking up the matches by primary key
            where.append(resource.c.type == query.resource_type)
        with _db_errors(), self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(resource).where(*where)).scalar_one()
            entries: list[StoredResource] = []
            if query.count and query.offset < total:
                # order and cut on keys only, then fetch the page's content by primary key
                keys = _sorted(sa.select(resource.c.pk).where(*where), query.resource_type, query.sort)
                page = conn.execute(keys.limit(query.count).offset(query.offset)).scalars().all()
                rows = {r.pk: r for r in conn.execute(
                    sa.select(resource.c.pk, resource.c.type, resource.c.id, resource.c.version,
                              resource.c.last_updated, resource.c.content)
                    .where(resource.c.pk.in_(page)))}
                entries = [StoredResource(rows[pk].type, rows[pk].id, rows[pk].version,
                                          rows[pk].last_updated, bytes(rows[pk].content)) for pk in page]
        return SearchResult(total, entries)

    def close(self) -> None:
        """Release every database connection."""
        self.engine.dispose()


def open_store(url: str = DEFAULT_URL, registry: Registry | None = None,
               clock: Callable[[], str] = now_instant) -> SqlStore:
    """Open (creating tables if needed) the store at ``url``: ``sqlite:///path.db`` (default),
    ``sqlite://`` for memory, or ``postgresql://user@host/db``.  ``clock`` gives lastUpdated."""
    with _db_errors():
        return SqlStore(engine_for(url), registry, clock)


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------------
# criteria -> SQL


def _clause_condition(rtype: str, clause: Clause) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES[clause.param.type]
    rows = sa.select(table.c.resource_pk).where(table.c.rtype == rtype, table.c.param == clause.param.code)
    if clause.modifier == "missing":
        return resource.c.pk.not_in(rows) if clause.missing else resource.c.pk.in_(rows)
    matches = rows.where(sa.or_(*(_value_condition(table, clause.modifier, v) for v in clause.values)))
    return resource.c.pk.not_in(matches) if clause.modifier == "not" else resource.c.pk.in_(matches)


def _narrows(clause: Clause) -> bool:
    """Whether ``clause`` selects from index rows of its type (not :not / :missing=true)."""
    return clause.modifier != "not" and not (clause.modifier == "missing" and clause.missing)


def _value_condition(table: sa.Table, modifier: str | None, value) -> sa.ColumnElement[bool]:
    c = table.c
    if isinstance(value, TokenValue):
        if value.text is not None:
            return _starts_with(c.text, value.text)
        parts = []
        if value.code is not None:
            parts.append(c.code == value.code)
        if value.system is not None:
            parts.append(c.system == value.system)
        elif value.no_system:
            parts.append(c.system.is_(None))
        return sa.and_(*parts) if parts else sa.false()
    if isinstance(value, StringValue):
        if modifier == "exact":
            return c.exact == value.exact
        if modifier == "contains":
            return c.full.like("%" + _escape_like(value.normalized) + "%", escape="\\")
        if len(value.normalized) > c.value.type.length:
            return c.full.like(_escape_like(value.normalized) + "%", escape="\\")
        return _starts_with(c.value, value.normalized)
    if isinstance(value, ReferenceValue):
        by_id = sa.and_(c.target_id == value.target_id,
                        *([c.target_type == value.target_type] if value.target_type else []))
        if value.url and value.target_id:
            return sa.or_(c.url == value.url, by_id)
        return c.url == value.url if value.url else by_id
    if isinstance(value, RangeValue) and "low" in c:
        return _date_condition(c.low, c.high, value)
    if isinstance(value, RangeValue):
        return _number_condition(c.value, value)
    if isinstance(value, UriValue):
        return c.uri == value.uri
    raise TypeError(f"no SQL for {value!r}")  # pragma: no cover - query.py only builds the above


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


def _sorted(statement: sa.Select, rtype: str, keys: list[SortKey]) -> sa.Select:
    """``statement`` ordered by ``keys`` then by id; a key on an index table joins that table's
    per-resource minimum (maximum when descending), and resources without a value sort last."""
    order = []
    for number, key in enumerate(keys):
        column = _RESOURCE_COLUMNS.get(key.param.expression.text)
        if column is None:
            table = INDEX_TABLES[key.param.type]
            source = table.c[_SORT_COLUMNS[key.param.type]]
            if key.param.type == "date" and key.descending:
                source = table.c.high
            aggregate = sa.func.max(source) if key.descending else sa.func.min(source)
            values = (sa.select(table.c.resource_pk, aggregate.label("value"))
                      .where(table.c.rtype == rtype, table.c.param == key.param.code)
                      .group_by(table.c.resource_pk)
                      .subquery(f"sort_{number}"))
            statement = statement.outerjoin(values, values.c.resource_pk == resource.c.pk)
            column = values.c.value
            order.append(column.is_(None))
        order.append(column.desc() if key.descending else column.asc())
    return statement.order_by(*order, resource.c.id)
