"""FHIR REST write routes (for loaders and other tools), all behind :mod:`.auth`:

    PUT    /{type}/{id}          update, or create with that id (If-Match: W/"n")
    PUT    /{type}?criteria      conditional update
    POST   /{type}               create with a server-assigned id (If-None-Exist: criteria)
    DELETE /{type}/{id}          delete (If-Match: W/"n")
    DELETE /{type}?criteria      conditional delete (one match at most)
    POST   /                     a transaction or batch Bundle

and, open to everyone since it writes nothing, ``POST /{type}/$validate`` and
``POST /{type}/{id}/$validate``.  The work is done by :mod:`.transaction`; this module reads the
HTTP request (body, ``Content-Type``, ``If-Match``, ``If-None-Exist``, ``Prefer``) and shapes the
response (status, ``Location``, ``ETag``, ``Last-Modified``, body as ``Prefer: return=`` asks).

Responses of this module's and :mod:`.history`'s routes honour ``_format`` (JSON only) and
``_pretty=true``.
"""
from __future__ import annotations

from datetime import datetime

import orjson
from flask import Blueprint, Response, request
from werkzeug.http import http_date

from fhirstudy.errors import InvalidRequest, UnsupportedMediaType, ValidationFailed
from fhirstudy.limits import MAX_JSON_DEPTH, check_depth
from fhirstudy.server.auth import write_access
from fhirstudy.server.outcome import FHIR_JSON, operation_outcome, validation_issues
from fhirstudy.server.bundle import process_bundle
from fhirstudy.server.interactions import PREFER_RETURN, WriteOutcome, WriteRequest, parse_criteria, parse_etag
from fhirstudy.server.routes import JSON_MIMETYPES, base_url, get_service, get_store, negotiate_format, require_served
from fhirstudy.server.transaction import perform
from fhirstudy.validation import validate_resource

bp = Blueprint("fhir_write", __name__)
BLUEPRINTS = ("fhir_write", "fhir_history")  # whose responses negotiate() and pretty() look after


# ---------------------------------------------------------------------------------------------
# request and response helpers shared with history.py


negotiate = negotiate_format  # the same 406 rule as reads and searches


def pretty(response: Response) -> Response:
    """Indent a JSON response when the request says ``_pretty=true``."""
    if (request.args.get("_pretty") == "true" and request.blueprint in BLUEPRINTS
            and response.mimetype in JSON_MIMETYPES and response.data):
        response.set_data(orjson.dumps(orjson.loads(response.get_data()), option=orjson.OPT_INDENT_2))
    return response


def fhir_response(body: bytes | dict | None, status: int = 200, headers: dict | None = None) -> Response:
    """A FHIR JSON response; ``body`` as stored bytes, or a dict serialised with orjson."""
    data = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    response = Response(data, status=status, content_type=FHIR_JSON)
    if body is None:
        del response.headers["Content-Type"]
    response.headers.update(headers or {})
    return response


def version_headers(version: int | None, last_updated: str | None) -> dict[str, str]:
    """``ETag`` and ``Last-Modified`` of a version."""
    headers = {}
    if version is not None:
        headers["ETag"] = f'W/"{version}"'
    if last_updated:
        headers["Last-Modified"] = http_date(datetime.fromisoformat(last_updated))
    return headers


def read_body(expected: str | None = None) -> dict:
    """The request body: FHIR JSON (else 415), within the size limit (else 413, see
    :mod:`.boundary`), nesting at most ``MAX_JSON_DEPTH`` levels (else 400), an object with
    ``resourceType`` (else 400), of the ``expected`` type when given (else 400)."""
    if request.mimetype not in JSON_MIMETYPES:
        raise UnsupportedMediaType(f"Content-Type must be application/fhir+json or application/json, "
                                   f"not {request.mimetype or 'missing'}")
    try:
        body = orjson.loads(request.get_data())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The body is not JSON: {exc}") from exc
    check_depth(body, "body", MAX_JSON_DEPTH)
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise InvalidRequest("The body is not a FHIR resource (a JSON object with resourceType)")
    if expected is not None and body["resourceType"] != expected:
        raise InvalidRequest(f"The body is a {body['resourceType']}, not a {expected}", expression="resourceType")
    return body


def prefer_return() -> str | None:
    """The ``return=`` of the ``Prefer`` header (minimal, representation, OperationOutcome) or None."""
    for part in request.headers.get("Prefer", "").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key.strip() == "return" and value.strip().strip('"') in PREFER_RETURN:
                return value.strip().strip('"')
    return None


def _write_response(outcome: WriteOutcome) -> Response:
    headers = version_headers(outcome.version, outcome.last_updated)
    if outcome.location:
        headers["Location"] = f"{base_url()}/{outcome.location}"
    prefer = prefer_return()
    if prefer == "OperationOutcome":
        body = operation_outcome(outcome.message, "informational", severity="information")
        return fhir_response(body, 200 if outcome.status == 204 else outcome.status, headers)
    if outcome.status == 204 or prefer == "minimal" or outcome.json is None:
        return fhir_response(None, outcome.status, headers)
    return fhir_response(outcome.json, outcome.status, headers)


def _criteria() -> list[tuple[str, str]]:
    criteria = parse_criteria(request.query_string.decode("utf-8", "replace"))
    if not criteria:
        raise InvalidRequest("A conditional interaction needs search criteria in the URL")
    return criteria


# ---------------------------------------------------------------------------------------------
# routes

bp.before_request(negotiate)
bp.after_request(pretty)


@bp.put("/<rtype>/<rid>")
@write_access
def update(rtype: str, rid: str) -> Response:
    """Update ``rtype/rid``, or create it with that id."""
    body = read_body(rtype)
    return _write_response(perform(get_store(), WriteRequest(
        "PUT", rtype, rid=rid, resource=body, if_match=parse_etag(request.headers.get("If-Match")))))


@bp.put("/<rtype>")
@write_access
def conditional_update(rtype: str) -> Response:
    """Update the one ``rtype`` matching the criteria, or create one when none matches."""
    criteria = _criteria()
    body = read_body(rtype)
    return _write_response(perform(get_store(), WriteRequest(
        "PUT", rtype, criteria=criteria, resource=body, if_match=parse_etag(request.headers.get("If-Match")))))


@bp.post("/<rtype>")
@write_access
def create(rtype: str) -> Response:
    """Create a ``rtype`` with a new id (unless ``If-None-Exist`` finds one)."""
    body = read_body(rtype)
    return _write_response(perform(get_store(), WriteRequest(
        "POST", rtype, resource=body,
        if_none_exist=parse_criteria(request.headers.get("If-None-Exist"), "If-None-Exist"))))


@bp.delete("/<rtype>/<rid>")
@write_access
def delete(rtype: str, rid: str) -> Response:
    """Delete ``rtype/rid`` (a new version that has no content)."""
    return _write_response(perform(get_store(), WriteRequest(
        "DELETE", rtype, rid=rid, if_match=parse_etag(request.headers.get("If-Match")))))


@bp.delete("/<rtype>")
@write_access
def conditional_delete(rtype: str) -> Response:
    """Delete the one ``rtype`` matching the criteria (412 when several match)."""
    return _write_response(perform(get_store(), WriteRequest("DELETE", rtype, criteria=_criteria())))


@bp.post("/")
@write_access
def bundle() -> Response:
    """Process a transaction or batch Bundle; the transaction-response or batch-response."""
    body = read_body("Bundle")
    return fhir_response(process_bundle(get_store(), body, base_url(), prefer_return(), get_service()))


@bp.post("/<rtype>/$validate")
@bp.post("/<rtype>/<rid>/$validate")
def validate(rtype: str, rid: str | None = None) -> Response:
    """``$validate``: an OperationOutcome, ``information`` when valid, else every issue."""
    body = read_body()
    if body["resourceType"] == "Parameters":
        parameters = body.get("parameter")
        body = next((p.get("resource") for p in parameters if isinstance(p, dict) and p.get("name") == "resource"),
                    None) if isinstance(parameters, list) else None
        if not isinstance(body, dict):
            raise InvalidRequest("Parameters needs a 'resource' parameter holding the resource",
                                 expression="Parameters.parameter")
    require_served(rtype)
    if body.get("resourceType") != rtype:
        raise InvalidRequest(f"The resource is a {body.get('resourceType')}, not a {rtype}", expression="resourceType")
    try:
        validate_resource(body)
    except ValidationFailed as exc:
        return fhir_response({"resourceType": "OperationOutcome", "issue": validation_issues(exc)})
    return fhir_response(operation_outcome(f"{rtype} is valid", "informational", severity="information"))
