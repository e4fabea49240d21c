"""The write path: :class:`Tx`, one database transaction's reads and writes.

A version is written as its ``resource`` row (inserted or updated), its history row and its index
rows, always in one transaction; the bytes of the version it supersedes move from ``resource``
into that version's history row (the JSON of a version is stored once).  Rows are read with
``SELECT ... FOR UPDATE`` in a fixed order (no deadlock between two writers of the same
resources); new resources, history and index rows go in straight through the driver
(:mod:`fhirstudy.store.inserts`), since a load writes them by the ten and hundred thousand.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import orjson
import sqlalchemy as sa

from fhirstudy.search.index import split_reference
from fhirstudy.search.query import SearchQuery
from fhirstudy.store import terms
from fhirstudy.store.compiler import check_query, search_conditions
from fhirstudy.store.content import Codec
from fhirstudy.store.engine import chunks
from fhirstudy.store.guards import check_integer, check_key
from fhirstudy.store.indexing import Indexer, Prepared, content_hash
from fhirstudy.store.inserts import RESOURCE_COLUMNS, insert_index_rows, insert_resources, insert_rows
from fhirstudy.store.reads import head as _head, read_entry as _read_entry
from fhirstudy.store.repository import Head, StoredResource, WriteResult
from fhirstudy.store.schema import INDEX_TABLES, history, instant_ms, resource

# The statements a write runs per resource type of every batch, built once (building one costs
# more than SQLite's work on it): the current rows of ids (locked), and the resources whose
# reference parameter ``via`` points at ids of a type.
_KNOWN = (sa.select(resource.c.pk, resource.c.type, resource.c.id, resource.c.version, resource.c.last_updated,
                    resource.c.deleted, resource.c.content)
          .where(resource.c.type == sa.bindparam("rtype"), resource.c.id.in_(sa.bindparam("ids", expanding=True)))
          .order_by(resource.c.id).with_for_update())
_REFERENCE = INDEX_TABLES["reference"]
_POINTING_AT = sa.select(_REFERENCE.c.resource_pk).where(
    _REFERENCE.c.pid == sa.bindparam("via"), terms.equals(_REFERENCE.c.target_type, sa.bindparam("rtype")),
    terms.one_of(_REFERENCE.c.target_id, sa.bindparam("ids", expanding=True)))


class Tx:
    """Reads and writes inside one database transaction (see :meth:`SqlStore.write`).

    Every version written in it gets the same lastUpdated (``now``).  Rows read with
    :meth:`head` stay locked until the transaction ends (PostgreSQL ``FOR UPDATE``; a SQLite write
    transaction holds the database's write lock anyway).
    """

    def __init__(self, indexer: Indexer, codec: Codec, conn: sa.Connection, now: str):
        self.indexer = indexer
        self.codec = codec
        self.registry = indexer.registry  # what conditional criteria are parsed against
        self.conn = conn
        self.now = now
        self.written: set[int] = set()  # primary keys of the resources this transaction changed
        # what the linked rows wait for (:meth:`finish`), by key: the newest row written, or None
        # for a delete; kept to the end, so that a trial written one resource at a time (a
        # transaction Bundle's entries) rebuilds its study's linked rows once, not once per site
        self._linking: dict[tuple[str, str], dict | None] = {}
        self._writes = 0  # writes so far (puts and deletes): a row's ``batch`` is its write's number

    def head(self, rtype: str, rid: str) -> Head | None:
        """The current version of ``rtype/rid`` (locked), deleted or not; None if never stored."""
        check_key(rtype, rid)
        return _head(self.conn, rtype, rid, lock=True)

    def read_entry(self, rtype: str, rid: str) -> StoredResource | None:
        """The current stored resource, as this transaction sees it (None if absent or deleted)."""
        check_key(rtype, rid)
        return _read_entry(self.conn, self.codec, rtype, rid)

    def match(self, query: SearchQuery, limit: int = 2) -> list[str]:
        """Ids of at most ``limit`` resources matching ``query``'s criteria (for conditional
        operations: zero, one, or more than one), seeing this transaction's own writes.

        Two transactions matching the same criteria run one after the other: on PostgreSQL the
        first takes a transaction-scoped advisory lock on the criteria, so the second's match
        waits for its commit and sees what it created (two racing conditional creates make one
        resource, not two).  SQLite write transactions are serialised anyway.
        """
        check_query(query)
        check_integer(limit, "limit")
        if self.conn.dialect.name == "postgresql":
            criteria = "&".join(f"{name}={value}" for name, value in sorted(query.echo))
            digest = hashlib.blake2b(f"{query.resource_type}?{criteria}".encode(), digest_size=8).digest()
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))
        statement = (sa.select(resource.c.id).where(*search_conditions(query))
                     .order_by(resource.c.id).limit(limit))
        return list(self.conn.execute(statement).scalars())

    def put(self, resources: Iterable[dict], method: str = "PUT") -> list[WriteResult]:
        """Create or update each resource (``resourceType`` and ``id`` required) as a new version
        made by ``method``; unchanged content keeps its version (outcome ``unchanged``)."""
        return self.put_prepared(self.indexer.prepare(resources), method)

    def put_prepared(self, prepared: list[Prepared], method: str = "PUT") -> list[WriteResult]:
        """:meth:`put` of resources :meth:`Indexer.prepare` made ready (before the transaction)."""
        batch = [(p.resource, p.digest, p.rows) for p in prepared]
        sources = {(p.resource["resourceType"], p.resource["id"]): p.source for p in prepared}
        unlinked = {(p.resource["resourceType"], p.resource["id"]) for p in prepared if not p.linked}
        known = self._known({(r["resourceType"], r["id"]) for r, _, _ in batch})
        pending: dict[tuple, dict] = {}
        versions: list[dict] = []
        written: dict[tuple, int] = {}  # key -> index in versions of its newest version
        results = []
        for r, digest, rows in batch:
            key = (r["resourceType"], r["id"])
            state = pending.get(key) or known.get(key)
            if state and not state["deleted"] and self._digest(state) == digest:
                results.append(WriteResult(*key, state["version"], state["last_updated"], "unchanged",
                                           self.codec.decode(state["content"])))
                continue
            version = state["version"] + 1 if state else 1
            doc = with_meta(r, version, self.now)
            content = orjson.dumps(doc)
            stored = self.codec.encode(content)
            created = state is None or state["deleted"]
            if key in pending:  # a second version in this batch: the first keeps its bytes in history
                versions[written[key]]["content"] = pending[key]["content"]
                superseded = pending[key]["superseded"]
            else:
                superseded = known[key] if state and not state["deleted"] else None
            written[key] = len(versions)
            pending[key] = {"pk": state["pk"] if state else None, "type": key[0], "id": key[1],
                            "version": version, "last_updated": self.now, "deleted": False,
                            "digest": digest, "content": stored, "doc": doc, "rows": rows, "source": sources[key],
                            "superseded": superseded, "linked": key not in unlinked}
            versions.append({"key": key, "version": version, "last_updated": self.now,
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
            version=version, last_updated=self.now, deleted=True, content=b"", source=None))
        self.conn.execute(sa.insert(history).values(
            resource_pk=state["pk"], version=version, last_updated=self.now, method="DELETE", created=False,
            content=None))
        self._writes += 1
        self._linking[(rtype, rid)] = None
        return WriteResult(rtype, rid, version, self.now, "deleted", None)

    def _digest(self, state: dict) -> bytes:
        """The content hash of a stored version (computed from its bytes: the table keeps none)."""
        if "digest" not in state:
            state["digest"] = content_hash(orjson.loads(self.codec.decode(state["content"])))
        return state["digest"]

    def _known(self, keys: set[tuple[str, str]]) -> dict[tuple, dict]:
        """Current rows of ``keys`` (deleted ones too), locked, in a fixed order against deadlocks."""
        known = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype in sorted(by_type):
            for chunk in chunks(sorted(by_type[rtype])):
                for row in self.conn.execute(_KNOWN, {"rtype": rtype, "ids": chunk}):
                    known[(rtype, row.id)] = row._asdict()
        return known

    def _write(self, rows: list[dict], versions: list[dict]) -> None:
        conn = self.conn
        columns = RESOURCE_COLUMNS
        named = terms.term_ids(conn, {row["source"] for row in rows if row["source"] is not None})
        for row in rows:
            row["source"] = named.get(row["source"])
        updates = [row for row in rows if row["pk"] is not None]
        inserts = [row for row in rows if row["pk"] is None]
        if updates:
            for chunk in chunks([u["pk"] for u in updates]):
                for table in INDEX_TABLES.values():
                    conn.execute(sa.delete(table).where(table.c.resource_pk.in_(chunk)))
            _keep_superseded(conn, [u["superseded"] for u in updates if u["superseded"]])
            conn.execute(
                sa.update(resource).where(resource.c.pk == sa.bindparam("b_pk"))
                .values({c: sa.bindparam(f"b_{c}") for c in columns}),
                [{"b_pk": u["pk"], **{f"b_{c}": u[c] for c in columns}} for u in updates])
        if inserts:
            for row, pk in zip(inserts, insert_resources(conn, inserts)):
                row["pk"] = pk
        pending: dict[str, list[dict]] = {kind: [] for kind in INDEX_TABLES}
        for row in rows:
            now_rows = self.indexer.write_time_rows(row["doc"])
            pk = row["pk"]
            self.written.add(pk)
            for kind in INDEX_TABLES:
                for r in (*row["rows"].get(kind, ()), *now_rows.get(kind, ())):
                    pending[kind].append({**r, "resource_pk": pk})
        insert_index_rows(conn, pending)
        pks = {(row["type"], row["id"]): row["pk"] for row in rows}
        ms = {when: instant_ms(when) for when in {v["last_updated"] for v in versions}}
        insert_rows(conn, history, [{**v, "resource_pk": pks[v["key"]], "last_updated": ms[v["last_updated"]]}
                                    for v in versions])  # straight through the driver: as the column keeps it
        self._writes += 1
        for row in rows:
            row["batch"] = self._writes
            self._linking[(row["type"], row["id"])] = row

    def finish(self) -> None:
        """The linked rows of what this transaction wrote, once, before it commits (see :meth:`_link`)."""
        if self._linking:
            written = [row for row in self._linking.values() if row is not None]
            removed = [key for key, row in self._linking.items() if row is None]
            self._linking = {}
            self._link(written, removed)

    def _link(self, rows: list[dict], removed: list[tuple[str, str]] = ()) -> None:
        """The rows of linked parameters (:mod:`fhirstudy.store.indexing`): of the resources
        written (``rows``), and again of stored resources that point at one written or
        ``removed``, each seeing this transaction's writes.  A row whose linked rows were made
        before the write (``linked``: what it points at was in its batch) is taken as it is unless
        something was written after its batch: then it is rebuilt if it points at what was."""
        if not self.indexer.dependents():
            return
        batch = {(row["type"], row["id"]): row["doc"] for row in rows}
        lookup = self._lookup(batch)
        pending: dict[str, list[dict]] = {kind: [] for kind in INDEX_TABLES}
        for row in rows:
            if row.get("linked", False):
                continue
            for kind, index in self.indexer.linked_rows(row["doc"], lookup).items():
                pending[kind].extend({**r, "resource_pk": row["pk"]} for r in index)
        keys = [*batch, *removed]
        own = {row["pk"] for row in rows if not row.get("linked", False) or row.get("batch") == self._writes}
        for dependent in self.indexer.dependents():
            pks = self._pointing_at(dependent, keys) - own
            for chunk in chunks(sorted(pks)):
                for table in INDEX_TABLES.values():
                    self.conn.execute(sa.delete(table).where(table.c.resource_pk.in_(chunk),
                                                             table.c.pid.in_(dependent.pids)))
                for pk, content in self.conn.execute(
                        sa.select(resource.c.pk, resource.c.content)
                        .where(resource.c.pk.in_(chunk), resource.c.deleted.is_(False))):
                    for kind, index in self.indexer.linked_rows(orjson.loads(self.codec.decode(content)),
                                                                lookup).items():
                        pending[kind].extend({**r, "resource_pk": pk} for r in index if r["pid"] in dependent.pids)
        insert_index_rows(self.conn, pending)

    def _pointing_at(self, dependent, keys: list[tuple[str, str]]) -> set[int]:
        """Primary keys of resources of ``dependent.rtype`` whose reference parameter
        ``dependent.via`` points at one of ``keys``."""
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            if not dependent.targets or rtype in dependent.targets:
                by_type.setdefault(rtype, []).append(rid)
        found: set[int] = set()
        for rtype, ids in by_type.items():
            for chunk in chunks(sorted(ids)):
                found.update(self.conn.execute(_POINTING_AT, {"via": dependent.via, "rtype": rtype,
                                                              "ids": chunk}).scalars())
        return found

    def _lookup(self, batch: dict[tuple[str, str], dict]):
        """reference -> the resource as this transaction sees it (this write's own first)."""
        cache: dict[tuple[str, str], dict | None] = {}

        def lookup(reference: str) -> dict | None:
            key = split_reference(reference)
            if key in batch:
                return batch[key]
            if key[0] is None or reference.startswith(("http://", "https://", "urn:")):
                return None
            if key not in cache:
                entry = _read_entry(self.conn, self.codec, *key)
                cache[key] = orjson.loads(entry.json) if entry else None
            return cache[key]
        return lookup


def _keep_superseded(conn: sa.Connection, states: list[dict]) -> None:
    """Move the bytes of versions about to be superseded into their history rows (the current
    version keeps its bytes in ``resource`` only)."""
    if states:
        conn.execute(
            sa.update(history).where(history.c.resource_pk == sa.bindparam("b_pk"),
                                     history.c.version == sa.bindparam("b_version"))
            .values(content=sa.bindparam("b_content")),
            [{"b_pk": s["pk"], "b_version": s["version"], "b_content": s["content"]} for s in states])


def with_meta(resource: dict, version: int, last_updated: str) -> dict:
    """``resource`` with ``meta.versionId``/``meta.lastUpdated`` set, its keys first."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = last_updated
    head = {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta}
    return {**head, **{k: v for k, v in resource.items() if k not in head}}
