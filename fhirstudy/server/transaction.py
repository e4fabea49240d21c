"""The one write processor: single REST writes, batch Bundles and transaction Bundles.

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

The one switch is :func:`process_bundle`'s ``atomic``: a transaction prepares every entry, then
resolves all and executes all in ONE database transaction (DELETE, POST, PUT, GET order), so any
failure writes nothing and is reported as :class:`BundleEntryFailed` naming the entry; a batch runs
each entry in its own transaction and answers each entry with its own status or outcome.
"""
from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhirstudy.errors import (BundleEntryFailed, Conflict, FhirError, FhirStudyError, Gone, InvalidRequest,
                              NotFound, PreconditionFailed)
from fhirstudy.limits import MAX_BUNDLE_ENTRIES, parse_integer
from fhirstudy.server.boundary import FHIR_ID
from fhirstudy.search import load_registry, parse_search
from fhirstudy.search.query import RESULT_PARAMETERS as SEARCH_RESULT_PARAMETERS
from fhirstudy.server.outcome import describe, operation_outcome
from fhirstudy.store import SqlStore, Tx, WriteResult
from fhirstudy.validation import validate_resource

METHODS = ("GET", "POST", "PUT", "DELETE")
# FHIR transaction processing order (R5 3.2.0.13.2): deletes, creates, updates, reads.
PROCESSING_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
URN_UUID = "urn:uuid:"
# Parameters of the request URL that are about the response, not conditional criteria.
RESULT_PARAMETERS = frozenset({*SEARCH_RESULT_PARAMETERS, "_format", "_pretty"})
PREFER_RETURN = ("minimal", "representation", "OperationOutcome")


@dataclass
class WriteRequest:
    """One interaction: from a REST call or from a Bundle entry (``index``)."""

    method: str
    rtype: str
    rid: str | None = None
    criteria: list[tuple[str, str]] | None = None     # PUT/DELETE Type?criteria
    resource: dict | None = None
    if_match: int | None = None                        # the version If-Match asks for
    if_none_exist: list[tuple[str, str]] | None = None
    full_url: str | None = None
    index: int | None = None
    matched: str | None = None                         # the id an If-None-Exist found

    @property
    def label(self) -> str:
        """``PUT ResearchStudy/x`` or ``PUT ResearchStudy?identifier=...``, for messages."""
        target = self.rtype + (f"/{self.rid}" if self.rid else "")
        if self.criteria:
            target += "?" + urlencode(self.criteria)
        return f"{self.method} {target}"


@dataclass(frozen=True)
class WriteOutcome:
    """What an interaction did: the HTTP status, the resource's keys and version, and the stored
    bytes (None for a delete or when there is nothing to show)."""

    status: int
    method: str
    rtype: str
    rid: str | None
    version: int | None = None
    last_updated: str | None = None
    json: bytes | None = None
    message: str = ""

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"

    @property
    def etag(self) -> str | None:
        return f'W/"{self.version}"' if self.version is not None else None

    @property
    def location(self) -> str | None:
        """``Type/id/_history/n`` of a created or updated version."""
        if self.rid is None or self.version is None or self.method in ("GET", "DELETE"):
            return None
        return f"{self.rtype}/{self.rid}/_history/{self.version}"


# ---------------------------------------------------------------------------------------------
# parsing


def parse_etag(value: str | None, where: str = "If-Match") -> int | None:
    """The version in an ETag (``W/"3"`` or ``"3"``), None when absent; InvalidRequest if malformed."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    try:
        return parse_integer(text.strip('"'), where)
    except InvalidRequest:
        raise InvalidRequest(f"{where} must be a version ETag like W/\"1\", not {value[:80]!r}",
                             expression=where) from None


def parse_criteria(query: str | None, where: str = "criteria") -> list[tuple[str, str]] | None:
    """Search criteria of a conditional interaction (``identifier=x&status=active``, optionally
    after ``Type?``), or None when there is no query at all.  Result parameters (``_count``,
    ``_sort``, ``_format``...) are not criteria and are left out; InvalidRequest when nothing else
    is left."""
    if query is None or query.strip() == "":
        return None
    head, question, rest = query.partition("?")
    if question and not {"=", "&"} & set(head):  # "Type?criteria" or "?criteria"
        query = rest
    criteria = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                if k.partition(":")[0] not in RESULT_PARAMETERS]
    if not criteria:
        raise InvalidRequest(f"{where} {query[:200]!r} has no search criteria once result parameters "
                             f"({', '.join(sorted(RESULT_PARAMETERS))}) are set aside", expression=where)
    return criteria  # their values are checked by parse_search, which names the parameter


def parse_url(url: Any, base: str, where: str) -> tuple[str, str | None, list[tuple[str, str]] | None]:
    """``Type``, ``Type/id`` or ``Type?criteria`` (optionally under ``base``) -> (type, id, criteria)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("request.url is missing", expression=where)
    url = url.strip()
    if url.startswith(base + "/"):
        url = url[len(base) + 1:]
    path, question, query = url.partition("?")
    parts = path.strip("/").split("/")
    if len(parts) > 2 or not parts[0] or (len(parts) == 2 and (not parts[1] or parts[1].startswith("_"))):
        raise InvalidRequest(f"request.url {url!r} is not Type, Type/id or Type?criteria", expression=where)
    if question and len(parts) != 1:
        raise InvalidRequest(f"request.url {url!r}: criteria go with a type only", expression=where)
    return parts[0], (parts[1] if len(parts) == 2 else None), parse_criteria(query) if question else None


# the JSON type each element of a Bundle entry's request must have (R5 Bundle.entry.request)
REQUEST_FIELDS = {"method": str, "url": str, "ifNoneMatch": str, "ifModifiedSince": str, "ifMatch": str,
                  "ifNoneExist": str}
ENTRY_FIELDS = {"fullUrl": str, "resource": dict, "request": dict}
_JSON_NAMES = {str: "a string", dict: "an object"}


def request_from_entry(index: int, entry: Any, base: str) -> WriteRequest:
    """The :class:`WriteRequest` of Bundle entry ``index``; InvalidRequest when it is malformed
    (each element of the entry and of its request checked for its JSON type)."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise InvalidRequest("an entry must be an object", expression=where)
    if "request" not in entry:
        raise InvalidRequest("an entry needs a request (method and url)", expression=f"{where}.request")
    _check_types(entry, ENTRY_FIELDS, where)
    request = entry["request"]
    _check_types(request, REQUEST_FIELDS, f"{where}.request")
    method = request.get("method")
    if method not in METHODS:
        raise InvalidRequest(f"request.method {method!r} is not supported (only {', '.join(METHODS)})",
                             expression=f"{where}.request.method")
    rtype, rid, criteria = parse_url(request.get("url"), base, f"{where}.request.url")
    if method == "POST" and (rid or criteria):
        raise InvalidRequest("a POST entry's url is the type only", expression=f"{where}.request.url")
    if method in ("PUT", "DELETE", "GET") and not (rid or criteria):
        raise InvalidRequest(f"a {method} entry's url needs an id or criteria", expression=f"{where}.request.url")
    if method == "GET" and criteria:
        raise InvalidRequest("searches are not supported inside a Bundle", expression=f"{where}.request.url")
    if rid is not None and not FHIR_ID.fullmatch(rid):
        raise InvalidRequest(f"{rid[:80]!r} is not a FHIR id", expression=f"{where}.request.url")
    return WriteRequest(
        method=method, rtype=rtype, rid=rid, criteria=criteria, resource=entry.get("resource"),
        if_match=parse_etag(request.get("ifMatch"), f"{where}.request.ifMatch"),
        if_none_exist=(parse_criteria(request.get("ifNoneExist"), f"{where}.request.ifNoneExist")
                       if method == "POST" else None),
        full_url=entry.get("fullUrl"), index=index)


def _check_types(node: dict, fields: dict[str, type], where: str) -> None:
    for name, kind in fields.items():
        if name in node and not isinstance(node[name], kind):
            raise InvalidRequest(f"{where}.{name} must be {_JSON_NAMES[kind]}, not {type(node[name]).__name__}",
                                 expression=f"{where}.{name}")


# ---------------------------------------------------------------------------------------------
# the three steps


def require_served(rtype: str) -> None:
    """NotFound unless ``rtype`` is a type this server stores."""
    if rtype not in load_registry().served_types:
        raise NotFound(f"Resource type {rtype!r} is not served here")


def prepare(request: WriteRequest, refs: dict[str, str] | None = None) -> WriteRequest:
    """Check ``request`` without the database and give a POST its new id; map its ``urn:uuid:``
    fullUrl in ``refs``.  Returns the request to run (a copy when it changed)."""
    require_served(request.rtype)
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
    ids = tx.match(parse_search(rtype, criteria, load_registry()), limit=2)
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
    request = prepare(request)
    return store.write(lambda tx: execute(tx, resolve(tx, request)))


def process_bundle(store: SqlStore, bundle: Any, base: str, prefer: str | None = None) -> dict:
    """Process a ``transaction`` or ``batch`` Bundle; the response Bundle (resources spliced in as
    stored, via ``orjson.Fragment``).  A failing transaction raises :class:`BundleEntryFailed`."""
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
    outcomes: dict[int, WriteOutcome | Exception] = {}
    for index, entry in enumerate(entries):
        try:
            requests.append(prepare(request_from_entry(index, entry, base), refs))
        except FhirStudyError as exc:
            if atomic:
                raise BundleEntryFailed(index, exc, _label(entry)) from exc
            outcomes[index] = exc
    requests.sort(key=lambda r: (PROCESSING_ORDER[r.method], r.index))
    if atomic:
        outcomes.update(store.write(lambda tx: _transaction(tx, requests, dict(refs))))
    else:
        for request in requests:
            try:
                outcomes[request.index] = store.write(
                    lambda tx, r=request: execute(tx, resolve(tx, r, refs), refs))
            except FhirStudyError as exc:
                outcomes[request.index] = exc
    return {
        "resourceType": "Bundle",
        "type": f"{kind}-response",
        "entry": [_response_entry(outcomes[i], base, prefer) for i in range(len(entries))],
    }


def _transaction(tx: Tx, requests: list[WriteRequest], refs: dict[str, str]) -> dict[int, WriteOutcome]:
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
