"""The trials a fhirstudy repository holds, streamed page by page (``fhirstudy push --from-db``).

A trial is its ResearchStudy with the resources whose ids hang off it (``<study id>-...``, see
:mod:`fhirstudy.mappers.ids`), ResearchStudy first, then PlanDefinition, EvidenceVariable,
Location, Provenance (each type by natural id order), without the server's ``meta.versionId`` and
``meta.lastUpdated``.  Studies come by id, :data:`PAGE_STUDIES` per search; the members of a page
come with it through ``_include`` of the study's references, ``_revinclude`` of the Provenance
pointing at it and ``_include:iterate`` of that Provenance's targets (the Provenance names every
resource converted from the trial's record, so a resource type added in
``mappings/resource-types.json`` comes along without a change here), so memory holds one page,
not the store.  The types and their order are :data:`fhirstudy.mappers.RESOURCE_ORDER`.  Where a
page's includes reach the store's cap (:data:`fhirstudy.store.sql.MAX_INCLUDED`), that page's
studies are read one by one (Provenance searched by target, paged; references read by id), so
nothing is cut off.

A member only the id prefix ties to its study (no reference from the study, no Provenance target)
is not found; the converter never writes one.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import orjson

from ..mappers import RESOURCE_ORDER
from ..search import Registry
from ..service import SearchService
from ..store.sql import MAX_INCLUDED

ORDER = RESOURCE_ORDER
PAGE_STUDIES = 50
INCLUDES = (("_include", "ResearchStudy:protocol"), ("_include", "ResearchStudy:site"),
            ("_include", "ResearchStudy:eligibility"), ("_include", "ResearchStudy:outcome-measure"),
            ("_revinclude", "Provenance:target"), ("_include:iterate", "Provenance:target"))


def stored_trials(repository, registry: Registry | None = None, page_studies: int = PAGE_STUDIES,
                  ids: Iterable[str] | None = None) -> Iterator[list[dict]]:
    """Each trial ``repository`` holds, as a list of resources (see the module docstring); only
    the studies ``ids`` names when given (those it does not hold are left out)."""
    service = SearchService(repository, registry if registry is not None else repository.registry, cache_bytes=0)
    if ids is None:
        yield from _trials_of(service, repository, [], page_studies)
        return
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), page_studies):
        yield from _trials_of(service, repository, [("_id", ",".join(wanted[start:start + page_studies]))],
                              page_studies)


def _trials_of(service: SearchService, repository, params: list[tuple[str, str]],
               page_studies: int) -> Iterator[list[dict]]:
    for page in service.pages("ResearchStudy", [*params, ("_sort", "_id"), *INCLUDES], count=page_studies):
        studies = [orjson.loads(e.json) for e in page.entries]
        if len(page.included) >= MAX_INCLUDED:  # cut off at the cap: this page's studies one by one
            members = [r for s in studies for r in _members_of(service, repository, s)]
        else:
            members = [orjson.loads(e.json) for e in page.included if e.type in ORDER[1:]]
        yield from _trials(studies, members)


def _trials(studies: list[dict], members: Iterable[dict]) -> Iterator[list[dict]]:
    owned: dict[str, list[dict]] = {s["id"]: [] for s in studies}
    seen: set[tuple[str, str]] = set()
    for r in members:
        owner = next((sid for sid in _prefixes(r["id"]) if sid in owned), None)
        if owner is not None and (r["resourceType"], r["id"]) not in seen:
            seen.add((r["resourceType"], r["id"]))
            owned[owner].append(r)
    for study in sorted(studies, key=lambda s: s["id"]):
        rest = sorted(owned[study["id"]], key=lambda r: (ORDER.index(r["resourceType"]), _natural(r["id"])))
        yield [_without_server_meta(r) for r in [study, *rest]]


def _members_of(service: SearchService, repository, study: dict) -> Iterator[dict]:
    """The members of one study without ``_include``: its Provenance searched by target (all pages),
    and the study's and the Provenance's references read by id."""
    provenances = [orjson.loads(e.json) for page in service.pages("Provenance", [("target", f"ResearchStudy/{study['id']}")])
                   for e in page.entries]
    yield from provenances
    for ref in sorted(set(_references(study)) | {r for p in provenances for r in _references(p)}):
        rtype, _, rid = ref.partition("/")
        if rtype in ORDER[1:] and rid:
            body = repository.read(rtype, rid)
            if body is not None:
                yield orjson.loads(body)


def _references(node) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _prefixes(rid: str) -> list[str]:
    parts = rid.split("-")
    return ["-".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]


def _natural(text: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def _without_server_meta(resource: dict) -> dict:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    return {"resourceType": out.pop("resourceType"), "id": out.pop("id"), **({"meta": meta} if meta else {}), **out}


def stored_trials_at(url: str, page_studies: int = PAGE_STUDIES) -> Iterator[list[dict]]:
    """:func:`stored_trials` of the store at ``url`` (opened for the walk, closed after it):
    what ``fhirstudy push --from-db URL`` sends."""
    from ..store import open_store

    store = open_store(url)
    try:
        yield from stored_trials(store, page_studies=page_studies)
    finally:
        store.close()
