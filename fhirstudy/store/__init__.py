"""Storage of FHIR resources with their search index, behind a small protocol.

The room: :class:`Repository` (``repository.py``, the protocol every caller relies on) and its
one implementation :class:`SqlStore` (``sql.py``) on SQLite or PostgreSQL, split into rooms:
``schema`` (tables, layout check), ``engine`` (engines, the database-error boundary),
``indexing`` (index rows, one ``Indexer`` per store), ``writes`` (``Tx``), ``inserts`` (rows
straight through the driver), ``reads``, ``compiler`` (criteria -> SQL), ``paging`` (keyset,
both ways), ``includes``, plus ``state``, ``reindex``, ``guards``, ``timeout`` and ``urls``.  It may import ``fhirstudy.errors`` and
``fhirstudy.search`` (the registry, the parsed query, index-row computation) and SQLAlchemy;
never sources, mappers, the server, push or the CLI (``tests/test_imports.py``).

    store = open_store("sqlite:///fhirstudy.db")      # or "sqlite://", "postgresql://..."
              (IndexOutdated when the index was built for other search parameters: reindex)
    store.put_many(resources)  -> [PutResult(type, id, version, created), ...]   one transaction,
                                  index rows computed before it begins (store.prepare)
    store.write(work)          -> work(tx)'s result: one transaction, run again after a lost race
        tx.head(type, id)      -> Head(type, id, version, last_updated, deleted) | None   (locked)
        tx.read_entry(type, id), tx.match(query, limit) -> [id, ...]
        tx.put(resources, method="PUT") -> [WriteResult(type, id, version, last_updated, outcome, json)]
        tx.delete(type, id)    -> WriteResult | None
    store.read(type, id)       -> bytes | None        the stored JSON, as stored
    store.read_entry(type, id) -> StoredResource | None   (with version and lastUpdated)
    store.head(type, id)       -> Head | None         (deleted resources too)
    store.read_version(type, id, version) -> HistoryEntry | None
    store.history(type=None, id=None, since=None, count=50, offset=0) -> HistoryPage(total, entries)
    store.search(query)        -> SearchResult(total, entries)   query from search.parse_search
                                  (QueryTooCostly past store.search_timeout_ms)
    store.generation()         -> int, moves with every committed write (the search cache's key)
    store.create(resource), store.update(resource), store.delete(type, id)  -> WriteResult
                                  (each one write; create gives a new id when there is none)
    store.close()
    reindex.reindex(open_store(url, check_index=False)) -> ReindexReport   (fhirstudy reindex)
"""
from fhirstudy.store.repository import (HISTORY_COUNT, Head, HistoryEntry, HistoryPage, PutResult, Repository,
                                        Placed, SearchResult, StoredResource, Transaction,
                                        WriteResult)
from fhirstudy.store.sql import DEFAULT_URL, SqlStore, open_store
from fhirstudy.store.writes import Tx

__all__ = ["DEFAULT_URL", "HISTORY_COUNT", "Head", "HistoryEntry", "HistoryPage", "Placed", "PutResult", "Repository",
           "SearchResult", "SqlStore", "StoredResource", "Transaction", "Tx", "WriteResult", "open_store"]
