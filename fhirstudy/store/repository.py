"""What a FHIR repository offers, and what it answers with (no SQL here).

:class:`Repository` is the small protocol every caller of the store relies on (the search
service, the server's routes and bundles, push, export, match); :class:`Transaction` is what
``Repository.write(work)`` hands to ``work``: reads with row locks and writes, all committed
together or not at all.  In the spirit of medplum ``packages/fhir-router/src/repo.ts``
(``FhirRepository``: create, read, vread, update, delete, history, search, transaction); ours
returns the stored JSON bytes untouched instead of parsed resources, so that a server answers
without parsing and serialising again.  :class:`~fhirstudy.store.sql.SqlStore` implements both
on SQLite and PostgreSQL.

Both protocols are ``runtime_checkable``: ``isinstance(store, Repository)`` checks that the
methods exist (not their signatures).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple, Protocol, TypeVar, runtime_checkable

from fhirstudy.search.geo import Position
from fhirstudy.search.query import SearchQuery
from fhirstudy.search.registry import Registry

HISTORY_COUNT = 50  # history entries per page unless asked otherwise
T = TypeVar("T")


class StoredResource(NamedTuple):
    """A stored resource: its keys, version, lastUpdated and JSON bytes as stored."""

    type: str
    id: str
    version: int
    last_updated: str
    json: bytes


class Head(NamedTuple):
    """The current state of a resource, deleted or not (no content)."""

    type: str
    id: str
    version: int
    last_updated: str
    deleted: bool


class Placed(NamedTuple):
    """A position a resource is indexed at, and the id of the resource it was read from when a
    linked parameter read it from another (``site-near``: the site's; None for its own, and for
    rows written before storage layout 7 until a reindex)."""

    position: Position
    source: str | None


class Key(NamedTuple):
    """A stored resource's primary key (stable over its versions), and its id and version when
    they were asked for."""

    pk: int
    id: str | None
    version: int | None


class HistoryEntry(NamedTuple):
    """One version of a resource: ``json`` is None for a delete."""

    type: str
    id: str
    version: int
    last_updated: str
    method: str
    created: bool
    json: bytes | None

    @property
    def deleted(self) -> bool:
        return self.json is None


@dataclass(frozen=True)
class HistoryPage:
    """The number of versions matching a history request and the requested page, newest first."""

    total: int
    entries: list[HistoryEntry]


class WriteResult(NamedTuple):
    """What a write did: ``outcome`` is created, updated, unchanged or deleted; ``json`` the
    stored bytes of the (new or unchanged) current version, None after a delete."""

    type: str
    id: str
    version: int
    last_updated: str
    outcome: str
    json: bytes | None

    @property
    def created(self) -> bool:
        return self.outcome == "created"


class PutResult(NamedTuple):
    """What ``put_many`` did with one resource."""

    type: str
    id: str
    version: int
    created: bool


@dataclass(frozen=True)
class SearchResult:
    """The total number of matches (None for ``_total=none``), the requested page of them (in
    order), the resources ``_include``/``_revinclude`` added, the cursor of the next page (None
    on the last page) and that of the previous one (None on the first page)."""

    total: int | None
    entries: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    next_cursor: tuple | None = None
    prev_cursor: tuple | None = None  # the first entry's sort values, when a page comes before it

    @property
    def resources(self) -> list[bytes]:
        """The JSON bytes of the page's resources."""
        return [entry.json for entry in self.entries]


@runtime_checkable
class Transaction(Protocol):
    """Reads and writes inside one database transaction; every version written in it gets the
    same lastUpdated.  What :meth:`head` read stays locked until the transaction ends.
    ``registry`` is the store's: conditional criteria are parsed against it for :meth:`match`."""

    registry: Registry

    def head(self, rtype: str, rid: str) -> Head | None:
        """The current version of ``rtype/rid`` (locked), deleted or not; None if never stored."""

    def read_entry(self, rtype: str, rid: str) -> StoredResource | None:
        """The current resource as this transaction sees it (None if absent or deleted)."""

    def match(self, query: SearchQuery, limit: int = 2) -> list[str]:
        """Ids of at most ``limit`` resources matching ``query``'s criteria (conditional writes)."""

    def put(self, resources: Iterable[dict], method: str = "PUT") -> list[WriteResult]:
        """Create or update each resource (``resourceType`` and ``id`` set) as a new version."""

    def delete(self, rtype: str, rid: str) -> WriteResult | None:
        """Delete ``rtype/rid``; None when there is nothing to delete."""


@runtime_checkable
class Repository(Protocol):
    """FHIR resources with their versions and their search index."""

    def read(self, rtype: str, rid: str) -> bytes | None:
        """The stored JSON bytes of ``rtype/rid``, or None (never stored, or deleted)."""

    def read_entry(self, rtype: str, rid: str) -> StoredResource | None:
        """The stored resource with its version and lastUpdated, or None."""

    def head(self, rtype: str, rid: str) -> Head | None:
        """The current version of ``rtype/rid`` and whether it is deleted, or None."""

    def read_version(self, rtype: str, rid: str, version: int) -> HistoryEntry | None:
        """Version ``version`` of ``rtype/rid`` (FHIR vread), or None."""

    def history(self, rtype: str | None = None, rid: str | None = None, since: str | None = None,
                count: int = HISTORY_COUNT, offset: int = 0) -> HistoryPage:
        """Versions of one resource, of a type or of everything, newest first."""

    def search(self, query: SearchQuery) -> SearchResult:
        """The total, one page of matches of ``query`` and what it includes."""

    def search_keys(self, query: SearchQuery, versions: bool = True) -> tuple[list[Key], tuple | None]:
        """The keys of one page of matches of ``query`` and the next page's cursor."""

    def read_many(self, rtype: str, ids: Iterable[str], content: bool = True) -> dict[str, StoredResource]:
        """The current versions of the ``rtype`` resources ``ids`` that exist, by id."""

    def positions(self, rtype: str, ids: Iterable[str], code: str = "near") -> dict[str, list[Placed]]:
        """The positions (:class:`fhirstudy.search.geo.Position`: degrees and unit vector) the
        ``rtype`` resources ``ids`` are indexed at by their special parameter ``code`` (``near``),
        each with its source, by id, without reading their content."""

    def create(self, resource: dict) -> WriteResult:
        """Store ``resource`` as a new resource (method POST); a new id when it has none."""

    def update(self, resource: dict) -> WriteResult:
        """Store ``resource`` (``id`` set) as the next version of its id, or create it (PUT)."""

    def delete(self, rtype: str, rid: str) -> WriteResult | None:
        """Delete ``rtype/rid``; None when there is nothing to delete."""

    def write(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work(tx)`` in one transaction and commit (all or nothing); return its result."""

    def generation(self) -> int:
        """A number that grows with every committed write."""

    def snapshot(self):
        """A context manager giving one consistent view for a long read (an export): a
        :class:`~fhirstudy.store.snapshot.Snapshot`."""

    def close(self) -> None:
        """Release every connection."""
