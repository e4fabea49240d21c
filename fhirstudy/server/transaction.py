"""The one write processor: single REST writes, batch Bundles and transaction Bundles (the
interactions are in :mod:`fhirstudy.server.interactions`, the Bundles in :mod:`fhirstudy.server.bundle`).

Every write is a :class:`WriteRequest` and goes through the same three steps:

1. :func:`prepare` (no database): the type is served, the body is a resource of that type whose id
   agrees with the URL, it passes :func:`fhirstudy.validation.validate_resource`; a POST gets a new
   id (uuid4: a server operation, not conversion) and a ``urn:uuid:`` fullUrl is mapped to the
   ``Type/id`` it will have;
2. :func:`resolve` (in the database transaction): conditional criteria (``If-None-Exist``,
   ``PUT Type?criteria``, ``DELETE Type?criteria``) are matched, fixing the target id;
3. :func:`execute` (same transaction): ``urn:uuid:`` references are rewritten to ``Type/id``, the
   preconditions (``If-Match``) are checked against the locked current version, and the store
   writes the new version.

The one switch is :func:`fhirstudy.server.bundle.process_bundle`'s ``atomic``: a transaction prepares every entry, then
resolves all and executes all in ONE database transaction (DELETE, POST, PUT, GET order), so any
failure writes nothing and is reported as :class:`BundleEntryFailed` naming the entry; a batch runs
each entry in its own transaction and answers each entry with its own status or outcome.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from urllib.parse import urlencode

from fhirstudy.errors import Conflict, Gone, InvalidRequest, NotFound, PreconditionFailed
from fhirstudy.search import Registry, parse_search
from fhirstudy.server.interactions import (METHODS, PREFER_RETURN, RESULT_PARAMETERS, WriteOutcome,  # noqa: F401
                                           WriteRequest, parse_criteria, parse_etag, parse_url,
                                           request_from_entry)
from fhirstudy.store import SqlStore, Tx, WriteResult
from fhirstudy.validation import validate_resource

URN_UUID = "urn:uuid:"


# ---------------------------------------------------------------------------------------------
# the three steps


def require_served(rtype: str, registry: Registry) -> None:
    """NotFound unless ``rtype`` is a type ``registry`` serves."""
    if rtype not in registry.served_types:
        raise NotFound(f"Resource type {rtype!r} is not served here")


def prepare(request: WriteRequest, registry: Registry, refs: dict[str, str] | None = None) -> WriteRequest:
    """Check ``request`` without the database and give a POST its new id; map its ``urn:uuid:``
    fullUrl in ``refs``.  Returns the request to run (a copy when it changed)."""
    require_served(request.rtype, registry)
    if request.method in ("POST", "PUT"):
        resource = request.resource
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise InvalidRequest(f"{request.method} needs a resource (a JSON object with resourceType)",
                                 expression="resource")
        if resource["resourceType"] != request.rtype:
            raise InvalidRequest(f"The resource is a {resource['resourceType']}, not a {request.rtype}",
                                 expression="resourceType")
        if request.method == "PUT" and request.rid is not None and resource.get("id") != request.rid:
            raise InvalidRequest(f"The resource id {resource.get('id')!r} does not match the id "
                                 f"{request.rid!r} in the URL", expression=f"{request.rtype}.id")
        if request.method == "POST":
            resource = {**resource, "id": str(uuid.uuid4())}
            request = dataclasses.replace(request, rid=resource["id"], resource=resource)
        validate_resource(resource)
    if refs is not None and request.full_url and request.full_url.startswith(URN_UUID) and request.rid:
        refs[request.full_url] = f"{request.rtype}/{request.rid}"
    return request


def resolve(tx: Tx, request: WriteRequest, refs: dict[str, str] | None = None) -> WriteRequest:
    """Match conditional criteria in ``tx``: the request with its target id fixed (``refs`` updated)."""
    if request.method == "POST" and request.if_none_exist:
        found = _matches(tx, request.rtype, request.if_none_exist, "If-None-Exist")
        if found:
            request = dataclasses.replace(request, rid=found, matched=found)
    elif request.criteria is not None and request.method in ("PUT", "DELETE"):
        found = _matches(tx, request.rtype, request.criteria, "criteria")
        if request.method == "PUT":
            rid = _conditional_update_id(tx, request, found)
            request = dataclasses.replace(request, rid=rid, criteria=None, resource={**request.resource, "id": rid})
        else:
            request = dataclasses.replace(request, rid=found, criteria=None)
    if refs is not None and request.full_url and request.full_url.startswith(URN_UUID) and request.rid:
        refs[request.full_url] = f"{request.rtype}/{request.rid}"
    return request


def _matches(tx: Tx, rtype: str, criteria: list[tuple[str, str]], what: str) -> str | None:
    """The one id matching ``criteria``, None for none, PreconditionFailed for several."""
    if not criteria:
        raise InvalidRequest(f"{what} has no search criteria", expression=what)
    ids = tx.match(parse_search(rtype, criteria, tx.registry), limit=2)
    if len(ids) > 1:
        raise PreconditionFailed(f"{what} {urlencode(criteria)} matches more than one {rtype}",
                                 expression=what)
    return ids[0] if ids else None


def _conditional_update_id(tx: Tx, request: WriteRequest, found: str | None) -> str:
    """The id a conditional update writes (R5 3.2.0.5.1): the match, or a new resource."""
    given = request.resource.get("id")
    if found is not None:
        if given is not None and given != found:
            raise InvalidRequest(f"The resource id {given!r} is not the id of the matching {request.rtype} "
                                 f"({found!r})", expression=f"{request.rtype}.id")
        return found
    if given is None:
        return str(uuid.uuid4())
    head = tx.head(request.rtype, given)
    if head is not None and not head.deleted:
        raise Conflict(f"{request.rtype}/{given} exists but does not match the criteria",
                       expression=f"{request.rtype}.id")
    return given


def execute(tx: Tx, request: WriteRequest, refs: dict[str, str] | None = None) -> WriteOutcome:
    """Perform ``request`` (resolved) in ``tx``."""
    rtype, rid = request.rtype, request.rid
    if request.method == "GET":
        entry = tx.read_entry(rtype, rid)
        if entry is None:
            _missing(tx, rtype, rid)
        return WriteOutcome(200, "GET", rtype, rid, entry.version, entry.last_updated, entry.json)
    if request.method == "POST" and request.matched:
        entry = tx.read_entry(rtype, rid)
        return WriteOutcome(200, "POST", rtype, rid, entry.version, entry.last_updated, entry.json,
                            f"{rtype}/{rid} already matches If-None-Exist; nothing was created")
    if request.method == "DELETE":
        return _delete(tx, request)
    if request.if_match is not None:
        _check_version(tx, request)
    resource = rewrite_references(request.resource, refs) if refs is not None else request.resource
    result = tx.put([resource], method=request.method)[0]
    return _written(request.method, result)


def _delete(tx: Tx, request: WriteRequest) -> WriteOutcome:
    rtype, rid = request.rtype, request.rid
    if rid is None:  # a conditional delete that matched nothing
        return WriteOutcome(204, "DELETE", rtype, None, message=f"No {rtype} matched; nothing was deleted")
    head = tx.head(rtype, rid)
    if head is None:
        raise NotFound(f"{rtype}/{rid} is not known")
    if request.if_match is not None:
        _check_version(tx, request, head)
    if head.deleted:
        return WriteOutcome(204, "DELETE", rtype, rid, head.version, head.last_updated,
                            message=f"{rtype}/{rid} was already deleted")
    result = tx.delete(rtype, rid)
    return WriteOutcome(204, "DELETE", rtype, rid, result.version, result.last_updated,
                        message=f"Deleted {rtype}/{rid} (version {result.version})")


def _check_version(tx: Tx, request: WriteRequest, head=None) -> None:
    head = head or tx.head(request.rtype, request.rid)
    current = head.version if head is not None and not head.deleted else None
    if current != request.if_match:
        now = f"is at version {current}" if current is not None else "has no current version"
        raise PreconditionFailed(f"If-Match asks for version {request.if_match} but "
                                 f"{request.rtype}/{request.rid} {now}", expression="If-Match")


def _missing(tx: Tx, rtype: str, rid: str) -> None:
    head = tx.head(rtype, rid)
    if head is not None and head.deleted:
        raise Gone(f"{rtype}/{rid} was deleted (version {head.version})")
    raise NotFound(f"{rtype}/{rid} is not known")


def _written(method: str, result: WriteResult) -> WriteOutcome:
    key = f"{result.type}/{result.id}"
    status, message = {
        "created": (201, f"Created {key} (version {result.version})"),
        "updated": (200, f"Updated {key} (version {result.version})"),
        "unchanged": (200, f"{key} is unchanged (version {result.version})"),
    }[result.outcome]
    return WriteOutcome(status, method, result.type, result.id, result.version, result.last_updated,
                        result.json, message)


def rewrite_references(node: Any, refs: dict[str, str]) -> Any:
    """A copy of ``node`` where every ``reference`` to a mapped ``urn:uuid:`` is ``Type/id``;
    InvalidRequest for a ``urn:uuid:`` reference that no entry of the Bundle has."""
    if isinstance(node, list):
        return [rewrite_references(item, refs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "reference" and isinstance(value, str) and value.startswith(URN_UUID):
            if value not in refs:
                raise InvalidRequest(f"reference {value!r} does not resolve to an entry of the Bundle",
                                     expression="reference")
            out[key] = refs[value]
        else:
            out[key] = rewrite_references(value, refs)
    return out


# ---------------------------------------------------------------------------------------------
# entry points


def perform(store: SqlStore, request: WriteRequest) -> WriteOutcome:
    """Run one REST interaction in its own transaction."""
    request = prepare(request, store.registry)
    return store.write(lambda tx: execute(tx, resolve(tx, request)))


def process_bundle(store: SqlStore, bundle: Any, base: str, prefer: str | None = None, service=None) -> dict:
    """Moved to :func:`fhirstudy.server.bundle.process_bundle`; kept for old imports."""
    from fhirstudy.server.bundle import process_bundle as process

    return process(store, bundle, base, prefer, service)
