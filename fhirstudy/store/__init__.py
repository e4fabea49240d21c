"""Storage of FHIR resources with their search index, behind a small API.

    store = open_store("sqlite:///fhirstudy.db")      # or "sqlite://", "postgresql://..."
    store.put_many(resources)  -> [PutResult(type, id, version, created), ...]   one transaction
    store.read(type, id)       -> bytes | None        the stored JSON, as stored
    store.read_entry(type, id) -> StoredResource | None   (with version and lastUpdated)
    store.search(query)        -> SearchResult(total, entries)   query from search.parse_search
    store.close()
"""
from fhirstudy.store.sql import (DEFAULT_URL, PutResult, SearchResult, SqlStore, StoredResource,
                                 open_store)

__all__ = ["DEFAULT_URL", "PutResult", "SearchResult", "SqlStore", "StoredResource", "open_store"]
