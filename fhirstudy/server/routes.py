"""FHIR REST routes: ``GET /metadata``, ``GET /{type}/{id}`` (read), ``GET /{type}?...`` and
``POST /{type}/_search`` (search), and the SearchParameter resources fhirstudy defines itself
(``GET /SearchParameter/{id}``, ``GET /SearchParameter``).

Stored resources are not parsed on the way out: a read returns the stored bytes, and a search
Bundle is assembled by splicing the stored bytes into an envelope serialised with orjson.  The
one exception is a subset (``_summary=true|text|data``, ``_elements``), which needs the JSON.

Paging: the ``next`` link carries ``_cursor``, the sort values and primary key of the page's last entry, so
the next page starts right after it whatever was written in between; the ``previous`` link
carries ``_before``, those of the page's first entry, and gives the ``_count`` entries just before
it (keyset paging; an offset
would shift when a match is created or deleted before the page, repeating or skipping one).  It
needs no state on the server, so it holds across gunicorn workers and machines sharing one
PostgreSQL.  A resource whose own sort value changes between two pages may move, as in any
search that is not a stored snapshot.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import urlencode

import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import http_date, parse_accept_header
from werkzeug.sansio.utils import get_current_url

from fhirstudy.errors import NotAcceptable, NotFound
from fhirstudy.search import load_registry, parse_search
from fhirstudy.search.query import SearchQuery, encode_cursor
from fhirstudy.search.subset import subset
from fhirstudy.server import STORE_EXTENSION
from fhirstudy.server.cache import ResponseCache
from fhirstudy.server.capability import capability_statement
from fhirstudy.server.outcome import FHIR_JSON
from fhirstudy.store import SearchResult

bp = Blueprint("fhir", __name__)
CACHE_EXTENSION = "fhirstudy.search_cache"

JSON_FORMATS = ("json", "application/json", "application/fhir+json")
JSON_MIMETYPES = ["application/fhir+json", "application/json"]
LENIENT = "handling=lenient"


def get_store():
    """The store of the current app (opened by :func:`fhirstudy.server.init_store`)."""
    return current_app.extensions[STORE_EXTENSION]


def base_url() -> str:
    """``BASE_URL`` from the config, else the root URL of the request (without trailing slash)."""
    configured = current_app.config.get("BASE_URL")
    if configured:
        return configured.rstrip("/")
    return _root_url(request.scheme, request.host, request.root_path)


@lru_cache(maxsize=64)
def _root_url(scheme: str, host: str, root_path: str) -> str:
    # what ``request.url_root`` gives, without recomputing it on every request
    return get_current_url(scheme, host, root_path).rstrip("/")


@bp.before_request
def negotiate_format() -> None:
    """406 unless the client accepts JSON (``_format`` wins over ``Accept``)."""
    wanted = request.args.get("_format")
    if wanted is not None:
        if wanted.split(";")[0].strip() not in JSON_FORMATS:
            raise NotAcceptable(f"_format={wanted} is not supported; this server speaks JSON only",
                                expression="_format")
        return
    accept = request.headers.get("Accept")
    if accept and not _accepts_json(accept):
        raise NotAcceptable(f"Cannot produce {accept}; this server speaks JSON only")


@lru_cache(maxsize=256)
def _accepts_json(accept: str) -> bool:
    """Whether an ``Accept`` header admits JSON (clients send the same few headers again and again)."""
    parsed = parse_accept_header(accept, MIMEAccept)
    return not parsed or bool(parsed.best_match(JSON_MIMETYPES))


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


@bp.get("/SearchParameter/<rid>")
def search_parameter(rid: str) -> Response:
    """A SearchParameter fhirstudy defines itself (``mappings/search-parameters-local.json``)."""
    for definition in _local_search_parameters():
        if definition["id"] == rid:
            return _fhir_response(orjson.dumps(definition))
    raise NotFound(f"SearchParameter/{rid} is not known")


@bp.get("/SearchParameter")
def search_parameters() -> Response:
    """Every SearchParameter fhirstudy defines itself, as a searchset (no criteria taken)."""
    base = base_url()
    definitions = _local_search_parameters()
    return _fhir_response(orjson.dumps({
        "resourceType": "Bundle", "type": "searchset", "total": len(definitions),
        "link": [{"relation": "self", "url": f"{base}/SearchParameter"}],
        "entry": [{"fullUrl": f"{base}/SearchParameter/{d['id']}", "resource": d, "search": {"mode": "match"}}
                  for d in definitions],
    }))


def _local_search_parameters() -> list[dict]:
    return [d for d in load_registry().definitions if d.get("resourceType") == "SearchParameter"]


@bp.get("/<rtype>")
def search(rtype: str) -> Response:
    """A searchset Bundle for the search in the query string."""
    return _search(rtype, list(request.args.items(multi=True)))


@bp.post("/<rtype>/_search")
def search_post(rtype: str) -> Response:
    """The same search with its parameters in a form-encoded body (and/or the query string)."""
    return _search(rtype, list(request.args.items(multi=True)) + list(request.form.items(multi=True)))


def _search(rtype: str, args: list[tuple[str, str]]) -> Response:
    _served(rtype)
    lenient = LENIENT in request.headers.get("Prefer", "").replace(" ", "")
    store, base = get_store(), base_url()
    cache = current_app.extensions.get(CACHE_EXTENSION)
    if cache is None:  # one per app (database)
        cache = current_app.extensions[CACHE_EXTENSION] = ResponseCache(current_app.config["SEARCH_CACHE_BYTES"])
    key, generation, body = (rtype, tuple(args), lenient, base), None, None
    if cache.max_bytes:
        generation = store.generation()
        body = cache.get(key, generation)
    if body is None:
        query = parse_search(rtype, args, load_registry(), lenient)
        body = searchset_bytes(query, store.search(query), base)
        if generation is not None:
            cache.put(key, generation, body)
    return _fhir_response(body)


def searchset_bytes(query: SearchQuery, result: SearchResult, base: str) -> bytes:
    """The searchset Bundle: an orjson envelope with the stored resource bytes spliced in (matches
    first, then what ``_include``/``_revinclude`` added); matches subsetted when asked."""
    head = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        head["total"] = result.total
    head["link"] = _links(query, result, f"{base}/{query.resource_type}")
    envelope = orjson.dumps(head)
    entries = [_entry(base, e, b"match", query) for e in result.entries]
    entries += [_entry(base, e, b"include", None) for e in result.included]
    return envelope[:-1] + b',"entry":[' + b",".join(entries) + b"]}" if entries else envelope


def _entry(base: str, stored, mode: bytes, query: SearchQuery | None) -> bytes:
    body = stored.json
    if query is not None and query.subsetted:
        body = orjson.dumps(subset(orjson.loads(body), query.summary, query.elements))
    return (b'{"fullUrl":' + orjson.dumps(f"{base}/{stored.type}/{stored.id}") + b',"resource":' + body
            + b',"search":{"mode":"' + mode + b'"}}')


def _links(query: SearchQuery, result: SearchResult, url: str) -> list[dict]:
    def page(*extra: tuple[str, object]) -> str:
        return url + "?" + urlencode([*query.echo, ("_count", query.count), *extra])

    here = []
    if query.offset and query.before is None:
        here.append(("_offset", query.offset))
    if query.cursor is not None:
        here.append(("_cursor", encode_cursor(query.cursor)))
    if query.before is not None:
        here.append(("_before", encode_cursor(query.before)))
    links = [{"relation": "self", "url": page(*here)}]
    if query.cursor is not None or query.before is not None or query.offset:
        links.append({"relation": "first", "url": page()})
    if query.count and result.prev_cursor is not None:
        links.append({"relation": "previous", "url": page(("_before", encode_cursor(result.prev_cursor)))})
    if query.count and result.next_cursor is not None:
        links.append({"relation": "next", "url": page(("_cursor", encode_cursor(result.next_cursor)))})
    return links


def _parse_instant(text: str) -> datetime:
    return datetime.strptime(text.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
