"""Storage of FHIR resources with their search index, behind a small API.

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
    store.close()
    reindex.reindex(open_store(url, check_index=False)) -> ReindexReport   (fhirstudy reindex)
"""
from fhirstudy.store.sql import (DEFAULT_URL, Head, HistoryEntry, HistoryPage, PutResult, SearchResult,
                                 SqlStore, StoredResource, Tx, WriteResult, open_store)

__all__ = ["DEFAULT_URL", "Head", "HistoryEntry", "HistoryPage", "PutResult", "SearchResult", "SqlStore",
           "StoredResource", "Tx", "WriteResult", "open_store"]
