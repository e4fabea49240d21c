"""The search service: a search query in, a searchset Bundle out, with no HTTP framework.

    service = SearchService(store, store.registry, cache_bytes=64 * 2**20)
    query = service.parse("ResearchStudy", [("title", "breast")])   # InvalidRequest names the parameter
    result = service.search(query)                                  # the store's SearchResult
    body = service.searchset("ResearchStudy", [("title", "breast")], "https://x/fhir")   # bytes, cached

``search`` (the service), ``searchset`` (Bundle bytes: links, total, entries) and ``cache`` (responses
kept per store generation).  May import fhirstudy.search, fhirstudy.store (its public API only),
fhirstudy.errors and fhirstudy.limits; never Flask, requests, server/ or push/.
"""
from fhirstudy.service.cache import ResponseCache
from fhirstudy.service.search import SearchService
from fhirstudy.service.searchset import searchset_bytes

__all__ = ["ResponseCache", "SearchService", "searchset_bytes"]
