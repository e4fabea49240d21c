"""The store's state row: the write generation and the hash of the search parameters the index
rows were built for.

``fhirstudy_state`` holds one row (``id`` 1):

- ``generation`` is bumped by every write transaction just before it commits (the row's lock
  orders the bumps in commit order), so two equal readings mean the same stored content, also on
  PostgreSQL where a sequence value taken at insert says nothing about commit order.  Reading it
  is one primary-key lookup (:data:`GENERATION_SQL`).
- ``index_hash`` is :func:`registry_hash` of the registry that built the index rows.  A store
  opened with another registry is refused (:class:`IndexOutdated`) until ``fhirstudy reindex``
  rebuilds the rows; a write from a process whose registry no longer matches fails the same way.
- ``reindex_to`` is set while a reindex runs: writes then also note the resources they wrote in
  ``fhirstudy_reindex_queue``, and the reindex redoes those before it records its hash.
"""
from __future__ import annotations

import hashlib

import orjson
import sqlalchemy as sa

from fhirstudy.errors import IndexOutdated
from fhirstudy.search.registry import Registry

# Bump when the index rows a resource gets change for the same registry (normalisation of text,
# dates, tokens in fhirstudy.search.index, or the columns rows are cut to): every database then
# asks for ``fhirstudy reindex`` before it is searched again.
INDEX_VERSION = 1
STATE_ID = 1

state_metadata = sa.MetaData()

state = sa.Table(
    "fhirstudy_state", state_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("index_hash", sa.String(64), nullable=True),   # None: unknown (an older database)
    sa.Column("reindex_to", sa.String(64), nullable=True),   # set while a reindex runs
)

reindex_queue = sa.Table(
    "fhirstudy_reindex_queue", state_metadata,
    sa.Column("resource_pk", sa.Integer, nullable=False),
)

GENERATION_SQL = f"SELECT generation FROM {state.name} WHERE id = {STATE_ID}"


def registry_hash(registry: Registry) -> str:
    """SHA-256 (hex) of what decides the index rows: every served parameter's type, code, type
    and expression (composites: their components), and :data:`INDEX_VERSION`."""
    params = []
    for rtype in sorted(registry.served_types):
        for code, param in sorted(registry.params(rtype).items()):
            params.append([rtype, code, param.type, param.expression.text,
                           [[c.type, c.code, c.expression.text] for c in param.components]])
    return hashlib.sha256(orjson.dumps({"index_version": INDEX_VERSION, "params": params})).hexdigest()


def init_state(conn: sa.Connection, expected: str, empty: bool, initial_generation: int) -> None:
    """Create the state row if missing: a database without resources records ``expected``; an
    older one holding resources records none (it is refused until reindexed)."""
    if conn.execute(sa.select(state.c.id).where(state.c.id == STATE_ID)).first() is None:
        conn.execute(sa.insert(state).values(id=STATE_ID, generation=initial_generation,
                                             index_hash=expected if empty else None))


def check_index(conn: sa.Connection, expected: str, where: str) -> None:
    """Raise :class:`IndexOutdated` unless the index rows were built for ``expected``."""
    row = conn.execute(sa.select(state.c.index_hash).where(state.c.id == STATE_ID)).first()
    if row is None or row.index_hash != expected:
        raise IndexOutdated(
            f"the search index of {where} was built for other search parameters than this fhirstudy "
            f"serves{'' if row and row.index_hash else ' (or by an older fhirstudy)'}; rebuild it "
            f"with: fhirstudy reindex --db {where}")


def bump(conn: sa.Connection, expected: str) -> bool:
    """Move the generation on in this write transaction (held until it commits); True when a
    reindex is running (the caller then queues what it wrote).  Raises :class:`IndexOutdated`
    when the index is no longer built for ``expected`` (a reindex finished meanwhile)."""
    row = conn.execute(
        sa.update(state).where(state.c.id == STATE_ID, state.c.index_hash == expected)
        .values(generation=state.c.generation + 1).returning(state.c.reindex_to)).first()
    if row is None:
        raise IndexOutdated("the search index was rebuilt for other search parameters while this "
                            "process ran; restart it (it serves the old ones)")
    return row.reindex_to is not None
