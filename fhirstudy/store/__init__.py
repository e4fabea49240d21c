"""Storage of FHIR resources with their search index, behind a small API.

    store = open_store("sqlite:///fhirstudy.db")      # or "sqlite://", "postgresql://..."
    store.put_many(resources)  -> [PutResult(type, id, version, created), ...]   one transaction
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
    store.close()
"""
from fhirstudy.store.sql import (DEFAULT_URL, Head, HistoryEntry, HistoryPage, PutResult, SearchResult,
                                 SqlStore, StoredResource, Tx, WriteResult, open_store)

__all__ = ["DEFAULT_URL", "Head", "HistoryEntry", "HistoryPage", "PutResult", "SearchResult", "SqlStore",
           "StoredResource", "Tx", "WriteResult", "open_store"]
