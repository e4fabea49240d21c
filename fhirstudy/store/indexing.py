"""The index rows of a resource, ready for the index tables (``pid`` set, cut to the columns).

An :class:`Indexer` belongs to one store and its registry: it knows, per resource type, which
parameters get index rows (all but ``_id``, answered from ``resource.id``), which of them depend
on the moment of the write (``_lastUpdated``: computed inside the write transaction) and their
``pid``; it remembers that per type, for its own registry only.  Everything else is computed
before a write transaction begins (:meth:`Indexer.prepare`), so that the costly part of a load
does not hold the write lock.  The rows themselves come from
:func:`fhirstudy.search.index.index_rows`.

A *linked* parameter walks into a resource another one points at (``eligible-age``: the study's
eligibility EvidenceVariable): its rows are computed inside the write transaction with a lookup
that sees the transaction's writes, for the resources written and for those whose reference
(``via``) points at one written (:meth:`Indexer.dependents`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, NamedTuple

import orjson

from fhirstudy.errors import StoreValueRejected
from fhirstudy.search.fhirpath import resolving
from fhirstudy.search.index import index_rows, split_reference
from fhirstudy.search.registry import Registry, SearchParam
from fhirstudy.store.guards import bounded_columns, check_key, fit_rows, text_columns
from fhirstudy.store.schema import (INDEX_TABLES, RESOURCE_COLUMNS, TERM_COLUMNS, exact_hash, instant_ms, param_id,
                                    resource)

SOURCE_COLUMN = resource.c.source

# Parameters whose index rows depend on the moment of the write: computed inside the write
# transaction (the rest are computed before it begins, from the resource alone).
DYNAMIC_MARK = "lastUpdated"
# per index table: its length-bounded text columns (term columns by the length of their texts),
# and all the columns that hold a text when the row is computed (``exact`` is hashed after)
_FIT = MappingProxyType({
    kind: ([*bounded_columns(table), *TERM_COLUMNS.get(kind, {}).items()],
           [*text_columns(table), *TERM_COLUMNS.get(kind, {}), *(["exact"] if kind == "string" else [])])
    for kind, table in INDEX_TABLES.items()})


def content_hash(resource: dict) -> bytes:
    """The first 16 bytes of the SHA-256 of the resource without meta.versionId/lastUpdated, keys
    sorted: equal content, equal hash."""
    body = dict(resource)
    meta = {k: v for k, v in (body.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        body["meta"] = meta
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()[:16]


@dataclass
class Prepared:
    """A resource ready to be written: its content hash and the index rows (pid set) of every
    parameter that does not depend on the moment of the write."""

    resource: dict
    digest: bytes
    rows: dict[str, list[dict]]
    linked: bool = True  # False: the linked parameters' rows are still to be computed (in the write)
    source: str | None = None  # the text ``resource.source`` names (Indexer.source_of)


class IndexedParams(NamedTuple):
    """The parameters of one resource type that get index rows: computed from the resource alone
    (``static``), depending on the moment of the write (``dynamic``), walking into a referenced
    resource (``linked``), and their pids by code."""

    static: list
    dynamic: list
    pids: dict[str, int]
    linked: list = []
    source: object = None  # the uri parameter on ``meta.source``, kept in ``resource.source`` (no rows)


class Dependent(NamedTuple):
    """Resources of ``rtype`` whose linked parameters (``pids``) walk through the reference
    parameter ``via`` (its pid) into resources of the types ``targets`` (empty: any type)."""

    rtype: str
    via: int
    targets: tuple[str, ...]
    pids: tuple[int, ...]


class Indexer:
    """Index rows for the search parameters of one registry (one per store)."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._by_type: dict[str, IndexedParams] = {}  # this registry's, filled as types are seen
        self._dependents: list[Dependent] | None = None
        self._selectors: dict[tuple[str, bool], _Selector] = {}  # (type, with linked ones) -> prepare's

    def params(self, rtype: str) -> IndexedParams:
        """The parameters of ``rtype`` that get index rows (all but ``_id``)."""
        found = self._by_type.get(rtype)
        if found is None:
            # no rows for what ``resource`` answers, nor for a part of another parameter (its rows are that one's)
            params = [p for p in self.registry.params(rtype).values()
                      if p.expression.text not in RESOURCE_COLUMNS and p.part_of is None]
            dynamic = [p for p in params if DYNAMIC_MARK in p.expression.text]
            linked = [p for p in params if p.via]
            source = next((p for p in self.registry.params(rtype).values()
                           if RESOURCE_COLUMNS.get(p.expression.text) is SOURCE_COLUMN and p.type == "uri"), None)
            found = self._by_type.setdefault(rtype, IndexedParams(
                [p for p in params if p not in dynamic and p not in linked], dynamic,
                {p.code: param_id(rtype, p.code) for p in [*params, *([source] if source else [])]}, linked, source))
        return found

    def dependents(self) -> list[Dependent]:
        """Every resource type with linked parameters, by the reference parameter they walk through."""
        if self._dependents is None:
            out = []
            for rtype in self.registry.served_types:
                by_via: dict[str, list[SearchParam]] = {}
                for p in self.params(rtype).linked:
                    by_via.setdefault(p.via, []).append(p)
                for via, params in by_via.items():
                    reference = self.registry.get(rtype, via)
                    out.append(Dependent(rtype, param_id(rtype, via), reference.target,
                                         tuple(param_id(rtype, p.code) for p in params)))
            self._dependents = out
        return self._dependents

    def linked_rows(self, doc: dict, lookup) -> dict[str, list[dict]]:
        """The rows of ``doc``'s linked parameters, ``resolve()`` reading through ``lookup``
        (reference -> resource dict or None)."""
        params = self.params(doc["resourceType"])
        if not params.linked:
            return {}
        with resolving(lookup):
            return rows_with_pids(doc, params.linked, params.pids)

    def prepare(self, resources: Iterable[dict]) -> list[Prepared]:
        """Check ``resources``' keys and compute their content hashes and the index rows that do
        not depend on the moment of the write."""
        batch = list(resources)
        check_keys(batch)
        docs = {(r["resourceType"], r["id"]): r for r in batch}
        prepared = []
        with resolving(lambda reference: docs.get(split_reference(reference))):
            for r in batch:
                params = self.params(r["resourceType"])
                # linked rows too when everything they walk into is in the batch (a study with
                # its eligibility): else the write computes them, seeing what is stored
                linked = all(split_reference(item.value.get("reference") or "") in docs
                             for via in {p.via for p in params.linked}
                             for item in self.registry.get(r["resourceType"], via).evaluate(r)
                             if isinstance(item.value, dict))
                selector = self._selectors.get((r["resourceType"], linked))
                if selector is None:
                    chosen = params.static + params.linked if linked else params.static
                    selector = self._selectors.setdefault(
                        (r["resourceType"], linked), _Selector(chosen + ([params.source] if params.source else [])))
                rows = rows_with_pids(r, selector.select(r), params.pids)
                prepared.append(Prepared(r, content_hash(r), rows, linked, _pop_source(rows, params)))
        return prepared

    def source_of(self, doc: dict) -> str | None:
        """The text of ``doc``'s ``_source`` (``meta.source``, as a uri index row would hold it)
        that ``resource.source`` names, or None."""
        params = self.params(doc["resourceType"])
        if params.source is None:
            return None
        return _pop_source(rows_with_pids(doc, [params.source], params.pids), params)

    def write_time_rows(self, doc: dict) -> dict[str, list[dict]]:
        """The index rows of the stored ``doc`` that depend on the moment of the write."""
        params = self.params(doc["resourceType"])
        return rows_with_pids(doc, params.dynamic, params.pids) if params.dynamic else {}

    def all_rows(self, doc: dict, lookup=None) -> dict[str, list[dict]]:
        """Every index row of the stored resource ``doc`` (pid set, no ``resource_pk``); linked
        parameters read referenced resources through ``lookup`` (none: no linked rows)."""
        params = self.params(doc["resourceType"])
        rows = rows_with_pids(doc, params.static + params.dynamic, params.pids)
        if lookup is not None and params.linked:
            for kind, extra in self.linked_rows(doc, lookup).items():
                rows.setdefault(kind, []).extend(extra)
        return rows


class _Selector:
    """Which of a list of parameters can give rows for a resource, found from its top-level
    elements (:attr:`~fhirstudy.search.fhirpath.Expression.roots`): most parameters of a type
    reach elements a given resource does not have, and asking each costs more than the walk."""

    def __init__(self, params: list[SearchParam]):
        self.params = params
        self._always: list[int] = []  # positions of the parameters whose roots cannot be told
        self._by_root: dict[str, list[int]] = {}
        for position, param in enumerate(params):
            roots = param.expression.roots
            if roots is None:
                self._always.append(position)
            for name in roots or ():
                self._by_root.setdefault(name, []).append(position)

    def select(self, doc: dict) -> list[SearchParam]:
        """The parameters that may select something from ``doc``, in their order."""
        found = set(self._always)
        by_root = self._by_root
        for key in doc:
            if key in by_root:
                found.update(by_root[key])
        return [self.params[position] for position in sorted(found)]


def _pop_source(rows: dict[str, list[dict]], params: IndexedParams) -> str | None:
    """Take the ``_source`` rows out of ``rows``: the first one's text (the column keeps one)."""
    if params.source is None or not rows.get("uri"):
        return None
    pid = params.pids[params.source.code]
    found = [r["uri"] for r in rows["uri"] if r["pid"] == pid]
    rows["uri"] = [r for r in rows["uri"] if r["pid"] != pid]
    return found[0] if found else None


def rows_with_pids(doc: dict, params: list, pids: dict[str, int]) -> dict[str, list[dict]]:
    """Index rows of ``doc`` for ``params``, cut to their columns (a NUL refused), ``param``
    replaced by its ``pid``, in the form the tables keep (:func:`_compact`; texts are replaced
    by term ids when they are written)."""
    rows = index_rows(doc, params)
    where = f"{doc['resourceType']}/{doc['id']}"
    for kind, index in rows.items():
        if index:
            fit_rows(index, *_FIT[kind], where)
            for r in index:
                r["pid"] = pids[r.pop("param")]
            _compact(kind, index)
    return rows


def _compact(kind: str, rows: list[dict]) -> None:
    """What an index table keeps of its rows: a string's text as written only as its hash
    (:func:`~fhirstudy.store.schema.exact_hash`), a reference's ``url`` only when it says more
    than ``target_type/target_id``, a date's low and high as milliseconds."""
    if kind == "string":
        for r in rows:
            exact = r.get("exact")
            r["exact"] = None if exact is None else exact_hash(exact)
            r.setdefault("part", 0)
    elif kind == "reference":
        for r in rows:
            if r.get("url") is not None and r.get("target_id") is not None \
                    and r["url"] == f"{r['target_type']}/{r['target_id']}":
                r["url"] = None
    if kind in ("date", "composite"):  # instants as the Moment columns keep them
        for r in rows:
            for name in ("low", "high"):
                if r.get(name) is not None:
                    r[name] = instant_ms(r[name])


def check_keys(resources: list[dict]) -> None:
    """Refuse a resource without a usable ``resourceType`` and ``id``."""
    for r in resources:
        if not isinstance(r.get("resourceType"), str) or not isinstance(r.get("id"), str) or not r["id"]:
            raise StoreValueRejected("every resource needs a resourceType and an id")
        check_key(r["resourceType"], r["id"], f"{r['resourceType']}.id")
