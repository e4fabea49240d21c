"""Batch and transaction Bundles: one processor with one switch (``atomic``).

A transaction prepares every entry, then resolves all and executes all in ONE database transaction
(DELETE, POST, PUT, GET order), so any failure writes nothing and is reported as
:class:`BundleEntryFailed` naming the entry; a batch runs each entry in its own transaction and
answers each entry with its own status or outcome.

A search entry (``GET Type?params``, or ``GET Type``) is answered by the search service, as the REST
search would be: its entry's resource is the searchset Bundle (paging links under the server's base),
``response.status`` 200.  Its parameters are checked first, so in a transaction a bad parameter fails
the Bundle before anything is written; searches run last, after the writes are committed (they see
them, as GET entries processed after the writes should).  In a batch, a bad search is an
OperationOutcome in its entry.
"""
from __future__ import annotations

import dataclasses
from http import HTTPStatus
from typing import Any

import orjson

from fhirstudy.errors import BundleEntryFailed, FhirError, FhirStudyError, InvalidRequest
from fhirstudy.limits import MAX_BUNDLE_ENTRIES
from fhirstudy.server.interactions import WriteOutcome, WriteRequest, request_from_entry
from fhirstudy.server.outcome import describe, operation_outcome
from fhirstudy.server.transaction import URN_UUID, execute, prepare, resolve
from fhirstudy.service import SearchService
from fhirstudy.store import SqlStore, Tx

# FHIR transaction processing order (R5 3.2.0.13.2): deletes, creates, updates, reads.
PROCESSING_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


def process_bundle(store: SqlStore, bundle: Any, base: str, prefer: str | None = None,
                   service: SearchService | None = None) -> dict:
    """Process a ``transaction`` or ``batch`` Bundle; the response Bundle (resources spliced in as
    stored, via ``orjson.Fragment``).  A failing transaction raises :class:`BundleEntryFailed`.
    Search entries (``GET Type?params``) are answered by ``service`` (default: one on ``store``
    with the store's registry, no cache)."""
    service = service or SearchService(store, store.registry, cache_bytes=0)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the base needs a Bundle", expression="resourceType")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidRequest(f"Bundle.type must be transaction or batch, not {kind!r}", expression="Bundle.type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest("Bundle.entry must be an array", expression="Bundle.entry")
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise FhirError(f"The Bundle has {len(entries)} entries; this server takes at most "
                        f"{MAX_BUNDLE_ENTRIES} in one {kind} (split it)", expression="Bundle.entry",
                        status=413, code="too-costly")
    atomic = kind == "transaction"
    refs: dict[str, str] = {}
    requests: list[WriteRequest] = []
    searches: list[WriteRequest] = []  # run after the writes (GET comes last), outside their transactions
    outcomes: dict[int, WriteOutcome | Exception] = {}
    for index, entry in enumerate(entries):
        try:
            request = request_from_entry(index, entry, base)
            if request.search is not None:
                service.parse(request.rtype, request.search)  # bad parameters fail before any write
                searches.append(request)
            else:
                requests.append(prepare(request, store.registry, refs))
        except FhirStudyError as exc:
            if atomic:
                raise BundleEntryFailed(index, exc, _label(entry)) from exc
            outcomes[index] = exc
    requests.sort(key=lambda r: (PROCESSING_ORDER[r.method], r.index))
    if atomic:
        outcomes.update(store.write(lambda tx: run_transaction(tx, requests, dict(refs))))
    else:
        for request in requests:
            try:
                outcomes[request.index] = store.write(
                    lambda tx, r=request: execute(tx, resolve(tx, r, refs), refs))
            except FhirStudyError as exc:
                outcomes[request.index] = exc
    for request in searches:
        try:
            outcomes[request.index] = WriteOutcome(200, "GET", request.rtype, None,
                                                   json=service.searchset(request.rtype, request.search, base))
        except FhirStudyError as exc:  # in a transaction too: the writes are committed by now
            outcomes[request.index] = exc
    return {
        "resourceType": "Bundle",
        "type": f"{kind}-response",
        "entry": [_response_entry(outcomes[i], base, prefer) for i in range(len(entries))],
    }


def run_transaction(tx: Tx, requests: list[WriteRequest], refs: dict[str, str]) -> dict[int, WriteOutcome]:
    """Resolve, then execute, every prepared request (in processing order) in ``tx``: the outcome
    by ``request.index``; the first failure raises :class:`BundleEntryFailed` naming its entry
    (so the caller's transaction writes nothing).  Also ``fhirstudy load``'s way with FHIR input."""
    resolved = _resolve_all(tx, requests, refs)
    targets: set[tuple[str, str]] = set()
    for r in resolved:
        if r.method != "GET" and r.rid and not r.matched:
            if (r.rtype, r.rid) in targets:
                _guard(r, _raise, InvalidRequest(f"{r.rtype}/{r.rid} is the target of more than one entry"))
            targets.add((r.rtype, r.rid))
    return {r.index: _guard(r, execute, tx, r, refs) for r in resolved}


def _resolve_all(tx: Tx, requests: list[WriteRequest], refs: dict[str, str]) -> list[WriteRequest]:
    """Resolve every request of a transaction.  Conditional creates with the same criteria (after
    the first) are resolved against what the transaction itself creates, as HAPI FHIR does: the
    first one that matches nothing creates the resource, the later ones match it (no duplicate)."""
    creating: dict[tuple, WriteRequest] = {}  # (type, sorted criteria) -> the entry that creates it
    resolved = []
    for r in requests:
        key = (r.rtype, tuple(sorted(r.if_none_exist))) if r.method == "POST" and r.if_none_exist else None
        first = creating.get(key) if key else None
        if first is not None:
            r = dataclasses.replace(r, rid=first.rid, matched=first.rid)
            if r.full_url and r.full_url.startswith(URN_UUID):
                refs[r.full_url] = f"{r.rtype}/{r.rid}"
        else:
            r = _guard(r, resolve, tx, r, refs)
            if key and not r.matched:
                creating[key] = r
        resolved.append(r)
    return resolved


def _raise(error: Exception):
    raise error


def _guard(request: WriteRequest, step, *args):
    """``step(*args)``, a failure becoming BundleEntryFailed for the request's entry."""
    try:
        return step(*args)
    except BundleEntryFailed:
        raise
    except FhirStudyError as exc:
        raise BundleEntryFailed(request.index, exc, f"({request.label})") from exc


def _label(entry: Any) -> str:
    request = entry.get("request") if isinstance(entry, dict) else None
    if isinstance(request, dict):
        return f"({request.get('method')} {request.get('url')})"
    return ""


def _response_entry(result: WriteOutcome | Exception, base: str, prefer: str | None) -> dict:
    if isinstance(result, Exception):
        status, outcome, _ = describe(result)
        return {"response": {"status": f"{status} {HTTPStatus(status).phrase}", "outcome": outcome}}
    entry: dict = {}
    if result.rid:
        entry["fullUrl"] = f"{base}/{result.rtype}/{result.rid}"
    if result.json is not None and (result.method == "GET" or prefer == "representation"):
        entry["resource"] = orjson.Fragment(result.json)
    response: dict = {"status": result.status_line}
    if result.location:
        response["location"] = result.location
    if result.etag:
        response["etag"] = result.etag
    if result.last_updated:
        response["lastModified"] = result.last_updated
    if prefer == "OperationOutcome" and result.message:
        response["outcome"] = operation_outcome(result.message, "informational", severity="information")
    entry["response"] = response
    return entry
