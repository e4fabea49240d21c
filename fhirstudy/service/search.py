"""The search service: parses a search against the one registry it is given, runs it on the
repository, and builds the searchset Bundle (cached per store generation)."""
from __future__ import annotations

from typing import Iterable, Protocol

from fhirstudy.errors import NotFound
from fhirstudy.search import Registry, SearchQuery, parse_search
from fhirstudy.search.query import encode_cursor
from fhirstudy.service.cache import DEFAULT_BYTES, ResponseCache
from fhirstudy.service.searchset import searchset_bytes
from fhirstudy.store import SearchResult


class Repository(Protocol):
    """What the service needs of a store (:class:`fhirstudy.store.SqlStore` is one)."""

    def search(self, query: SearchQuery) -> SearchResult: ...

    def generation(self) -> int: ...


class SearchService:
    """Searches of one repository with one registry of search parameters.

    ``cache_bytes`` bounds the response cache (0 turns it off); a cached answer is only served while
    ``repository.generation()`` has not moved (any write, by any process)."""

    def __init__(self, repository: Repository, registry: Registry, cache_bytes: int = DEFAULT_BYTES):
        self.repository = repository
        self.registry = registry
        self.cache = ResponseCache(cache_bytes)

    def require_served(self, rtype: str) -> None:
        """NotFound unless ``rtype`` is a type the registry serves."""
        if rtype not in self.registry.served_types:
            raise NotFound(f"Resource type {rtype!r} is not served here")

    def parse(self, rtype: str, params: Iterable[tuple[str, str]], lenient: bool = False) -> SearchQuery:
        """The query for ``params`` on ``rtype``; NotFound for a type not served, InvalidRequest
        (naming the parameter) for a bad parameter unless ``lenient``."""
        self.require_served(rtype)
        return parse_search(rtype, list(params), self.registry, lenient)

    def search(self, query: SearchQuery) -> SearchResult:
        """Run ``query`` on the repository (one page: ``_count`` matches and their includes)."""
        return self.repository.search(query)

    def searchset(self, rtype: str, params: Iterable[tuple[str, str]], base: str, lenient: bool = False) -> bytes:
        """The searchset Bundle (bytes) for ``params`` on ``rtype``, links and fullUrls under ``base``."""
        self.require_served(rtype)
        params = list(params)
        key, generation = (rtype, tuple(params), lenient, base), None
        if self.cache.max_bytes:
            generation = self.repository.generation()
            body = self.cache.get(key, generation)
            if body is not None:
                return body
        query = self.parse(rtype, params, lenient)
        body = searchset_bytes(query, self.search(query), base)
        if generation is not None:
            self.cache.put(key, generation, body)
        return body

    def search_parameters(self) -> list[dict]:
        """The SearchParameter resources fhirstudy defines itself (``mappings/search-parameters-local.json``)."""
        return [d for d in self.registry.definitions if d.get("resourceType") == "SearchParameter"]

    def pages(self, rtype: str, params: Iterable[tuple[str, str]] = (), count: int = 500) -> Iterable[SearchResult]:
        """Every page of a search, following the keyset cursor as the ``next`` links do (``_offset``
        stops at :data:`fhirstudy.limits.MAX_OFFSET`)."""
        params, position = list(params), []
        while True:
            page = self.search(self.parse(rtype, [*params, ("_count", str(count)), *position]))
            yield page
            if page.next_cursor is None:
                return
            position = [("_cursor", encode_cursor(page.next_cursor))]
