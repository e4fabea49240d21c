"""``fhirstudy reindex``: rebuild every resource's index rows for the store's registry, online.

The rows are rebuilt in short transactions of :data:`DEFAULT_BATCH` resources each (by primary
key, the rows locked while their batch is rebuilt), so searches go on (PostgreSQL readers never
wait; SQLite readers in WAL mode neither) and writers wait at most one batch.  While it runs the
state row's ``reindex_to`` is set: a write then also notes what it wrote in
``fhirstudy_reindex_queue`` (its rows were built by the old parameters), and those resources are
rebuilt again before the new hash is recorded, in a last transaction that holds the state row:
a write that commits after it from a process with the old parameters fails with
:class:`IndexOutdated` instead of adding stale rows.  Stopped half way, it leaves the old hash in
place (the store is still refused) and can simply be run again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import orjson
import sqlalchemy as sa

from fhirstudy.errors import WriteConflict
from fhirstudy.store import state as _state
from fhirstudy.store.engine import WRITE_OPTION, chunks, db_errors
from fhirstudy.store.schema import INDEX_TABLES, resource
from fhirstudy.store.sql import WRITE_RETRIES, SqlStore
from fhirstudy.store.terms import term_ids
from fhirstudy.store.writes import insert_index_rows

DEFAULT_BATCH = 500  # resources per transaction
T = TypeVar("T")


@dataclass(frozen=True)
class ReindexReport:
    """What a reindex did: resources rebuilt in the main pass, resources rebuilt again because
    they were written meanwhile, transactions used, seconds taken."""

    resources: int
    rewritten: int
    transactions: int
    seconds: float


def reindex(store: SqlStore, batch: int = DEFAULT_BATCH,
            progress: Callable[[int, int], None] | None = None) -> ReindexReport:
    """Rebuild the index rows of every resource in ``store`` for ``store.registry`` and record
    its hash; ``progress(done, total)`` after each transaction.  Open the store with
    ``check_index=False`` (a store whose index is outdated is refused otherwise)."""
    started = time.monotonic()
    writer = store.engine.execution_options(**{WRITE_OPTION: True})

    def begin_reindex(conn: sa.Connection) -> None:
        conn.execute(sa.update(_state.state).where(_state.state.c.id == _state.STATE_ID)
                     .values(reindex_to=store.index_hash))
        conn.execute(sa.delete(_state.reindex_queue))

    def next_batch(conn: sa.Connection, last: int) -> list[int]:
        pks = list(conn.execute(
            sa.select(resource.c.pk).where(resource.c.pk > last, resource.c.deleted.is_(False))
            .order_by(resource.c.pk).limit(batch)).scalars())
        _rebuild(store, conn, pks)
        return pks

    def finish(conn: sa.Connection) -> int:
        conn.execute(sa.select(_state.state.c.id).where(_state.state.c.id == _state.STATE_ID)
                     .with_for_update())  # held to the commit: no write slips past this one
        count = 0
        while (drained := _drain(store, conn, batch)):
            count += drained
        conn.execute(sa.update(_state.state).where(_state.state.c.id == _state.STATE_ID).values(
            index_hash=store.index_hash, reindex_to=None, generation=_state.state.c.generation + 1))
        return count

    _transaction(writer, begin_reindex)
    with db_errors(), store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(resource)
                             .where(resource.c.deleted.is_(False))).scalar_one()
    done = transactions = rewritten = last = 0
    while pks := _transaction(writer, lambda conn: next_batch(conn, last)):
        transactions += 1
        done += len(pks)
        last = pks[-1]
        if progress:
            progress(min(done, total), total)
    while True:  # what was written meanwhile, in short transactions too
        count = _transaction(writer, lambda conn: _drain(store, conn, batch))
        transactions += 1
        rewritten += count
        if count < batch:
            break
    rewritten += _transaction(writer, finish)
    return ReindexReport(done, rewritten, transactions + 2, time.monotonic() - started)


def _transaction(writer: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    """``work(conn)`` in one write transaction, run again after losing a race (a deadlock with a
    writer that locks the same resources in another order)."""
    for attempt in range(WRITE_RETRIES + 1):
        try:
            with db_errors(), writer.begin() as conn:
                return work(conn)
        except WriteConflict:
            if attempt == WRITE_RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _drain(store: SqlStore, conn: sa.Connection, batch: int) -> int:
    """Rebuild up to ``batch`` queued resources and take them off the queue; how many."""
    queue = _state.reindex_queue
    pks = list(conn.execute(sa.select(queue.c.resource_pk).distinct()
                            .order_by(queue.c.resource_pk).limit(batch)).scalars())
    conn.execute(sa.delete(queue).where(queue.c.resource_pk.in_(pks)))
    _rebuild(store, conn, pks)
    return len(pks)


def _rebuild(store: SqlStore, conn: sa.Connection, pks: list[int]) -> None:
    """Replace the index rows of resources ``pks`` (locked) by those of ``store.registry``; a
    deleted resource keeps none; the generation moves on (cached answers may have changed)."""
    if not pks:
        return
    pending: dict[str, list[dict]] = {kind: [] for kind in INDEX_TABLES}
    sources: dict[int, str | None] = {}  # resource.source, which the registry decides too
    for chunk in chunks(pks):
        rows = conn.execute(sa.select(resource.c.pk, resource.c.deleted, resource.c.content)
                            .where(resource.c.pk.in_(chunk)).order_by(resource.c.pk).with_for_update())
        docs = [(pk, orjson.loads(store.codec.decode(content))) for pk, deleted, content in rows if not deleted]
        # what linked parameters walk into is mostly in the same chunk (a trial's resources are
        # stored together): read from the store only what is not, and each of those once
        known = {(doc["resourceType"], doc["id"]): doc for _, doc in docs}
        for pk, doc in docs:
            sources[pk] = store.indexer.source_of(doc)
            for kind, index in store.index_rows_of(doc, known).items():
                pending[kind].extend({**r, "resource_pk": pk} for r in index)
        for table in INDEX_TABLES.values():
            conn.execute(sa.delete(table).where(table.c.resource_pk.in_(chunk)))
    insert_index_rows(conn, pending)
    if sources:
        named = term_ids(conn, {text for text in sources.values() if text is not None})
        conn.execute(sa.update(resource).where(resource.c.pk == sa.bindparam("b_pk"))
                     .values(source=sa.bindparam("b_source")),
                     [{"b_pk": pk, "b_source": named.get(text)} for pk, text in sources.items()])
    conn.execute(sa.update(_state.state).where(_state.state.c.id == _state.STATE_ID)
                 .values(generation=_state.state.c.generation + 1))
