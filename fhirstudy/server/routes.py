"""FHIR REST routes: ``GET /metadata``, ``GET /{type}/{id}`` (read), ``GET /{type}?...`` (search).

Stored resources are never parsed on the way out: a read returns the stored bytes, and a search
Bundle is assembled by splicing the stored bytes into an envelope serialised with orjson.
"""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.http import http_date

from fhirstudy.errors import NotAcceptable, NotFound
from fhirstudy.search import load_registry, parse_search
from fhirstudy.search.query import SearchQuery
from fhirstudy.server import STORE_EXTENSION
from fhirstudy.server.capability import capability_statement
from fhirstudy.server.outcome import FHIR_JSON
from fhirstudy.store import SearchResult

bp = Blueprint("fhir", __name__)

JSON_FORMATS = ("json", "application/json", "application/fhir+json")
JSON_MIMETYPES = ["application/fhir+json", "application/json"]
LENIENT = "handling=lenient"


def get_store():
    """The store of the current app (opened by :func:`fhirstudy.server.init_store`)."""
    return current_app.extensions[STORE_EXTENSION]


def base_url() -> str:
    """``BASE_URL`` from the config, else the root URL of the request (without trailing slash)."""
    return (current_app.config.get("BASE_URL") or request.url_root).rstrip("/")


@bp.before_request
def _negotiate_format() -> None:
    """406 unless the client accepts JSON (``_format`` wins over ``Accept``)."""
    wanted = request.args.get("_format")
    if wanted is not None:
        if wanted.split(";")[0].strip() not in JSON_FORMATS:
            raise NotAcceptable(f"_format={wanted} is not supported; this server speaks JSON only",
                                expression="_format")
    elif request.accept_mimetypes and not request.accept_mimetypes.best_match(JSON_MIMETYPES):
        raise NotAcceptable(f"Cannot produce {request.headers.get('Accept')}; this server speaks JSON only")


def _served(rtype: str) -> None:
    if rtype not in load_registry().served_types:
        raise NotFound(f"Resource type {rtype!r} is not served here")


def _fhir_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, content_type=FHIR_JSON)


@bp.get("/metadata")
def metadata() -> Response:
    """The CapabilityStatement."""
    return _fhir_response(orjson.dumps(capability_statement(load_registry(), base_url())))


@bp.get("/<rtype>/<rid>")
def read(rtype: str, rid: str) -> Response:
    """The stored resource as stored, with ETag and Last-Modified."""
    _served(rtype)
    entry = get_store().read_entry(rtype, rid)
    if entry is None:
        raise NotFound(f"{rtype}/{rid} is not known")
    response = _fhir_response(entry.json)
    response.headers["ETag"] = f'W/"{entry.version}"'
    response.headers["Last-Modified"] = http_date(_parse_instant(entry.last_updated))
    return response


@bp.get("/<rtype>")
def search(rtype: str) -> Response:
    """A searchset Bundle for the search in the query string."""
    _served(rtype)
    lenient = LENIENT in request.headers.get("Prefer", "").replace(" ", "")
    query = parse_search(rtype, list(request.args.items(multi=True)), load_registry(), lenient)
    result = get_store().search(query)
    return _fhir_response(searchset_bytes(query, result, base_url()))


def searchset_bytes(query: SearchQuery, result: SearchResult, base: str) -> bytes:
    """The searchset Bundle: an orjson envelope with the stored resource bytes spliced in."""
    envelope = orjson.dumps({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": result.total,
        "link": _links(query, result.total, f"{base}/{query.resource_type}"),
    })
    entries = b",".join(
        b'{"fullUrl":' + orjson.dumps(f"{base}/{e.type}/{e.id}") + b',"resource":' + e.json
        + b',"search":{"mode":"match"}}'
        for e in result.entries)
    return envelope[:-1] + b',"entry":[' + entries + b"]}" if result.entries else envelope


def _links(query: SearchQuery, total: int, url: str) -> list[dict]:
    def page(offset: int) -> str:
        return url + "?" + urlencode([*query.echo, ("_count", query.count), ("_offset", offset)])

    links = [{"relation": "self", "url": page(query.offset)}]
    if query.count and query.offset + query.count < total:
        links.append({"relation": "next", "url": page(query.offset + query.count)})
    if query.count and query.offset > 0:
        links.append({"relation": "previous", "url": page(max(0, query.offset - query.count))})
    return links


def _parse_instant(text: str) -> datetime:
    return datetime.strptime(text.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
