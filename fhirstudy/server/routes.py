"""FHIR REST routes: ``GET /metadata``, ``GET /{type}/{id}`` (read), ``GET /{type}?...`` and
``POST /{type}/_search`` (search), and the SearchParameter resources fhirstudy defines itself
(``GET /SearchParameter/{id}``, ``GET /SearchParameter``).

HTTP in, a call of the search service (:mod:`fhirstudy.service`), HTTP out: a read returns the
stored bytes; a search Bundle, its paging links and the response cache are the service's
(:mod:`fhirstudy.service.searchset`, :mod:`fhirstudy.service.cache`).
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import http_date, parse_accept_header
from werkzeug.sansio.utils import get_current_url

from fhirstudy.errors import NotAcceptable, NotFound
from fhirstudy.server import SERVICE_EXTENSION, STORE_EXTENSION
from fhirstudy.server.capability import capability_statement
from fhirstudy.server.outcome import FHIR_JSON
from fhirstudy.service import SearchService
from fhirstudy.service.searchset import searchset_bytes  # noqa: F401  (re-export: it lived here)

bp = Blueprint("fhir", __name__)

JSON_FORMATS = ("json", "application/json", "application/fhir+json")
JSON_MIMETYPES = ["application/fhir+json", "application/json"]
LENIENT = "handling=lenient"


def get_store():
    """The store of the current app (opened by :func:`fhirstudy.server.init_store`)."""
    return current_app.extensions[STORE_EXTENSION]


def get_service() -> SearchService:
    """The search service of the current app (created with its store by :func:`fhirstudy.server.init_store`)."""
    return current_app.extensions[SERVICE_EXTENSION]


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


def require_served(rtype: str) -> None:
    """NotFound unless ``rtype`` is a type the app's registry serves."""
    get_service().require_served(rtype)


def _fhir_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, content_type=FHIR_JSON)


@bp.get("/metadata")
def metadata() -> Response:
    """The CapabilityStatement."""
    return _fhir_response(orjson.dumps(capability_statement(get_service().registry, base_url())))


@bp.get("/<rtype>/<rid>")
def read(rtype: str, rid: str) -> Response:
    """The stored resource as stored, with ETag and Last-Modified."""
    require_served(rtype)
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
    return get_service().search_parameters()


@bp.get("/<rtype>")
def search(rtype: str) -> Response:
    """A searchset Bundle for the search in the query string."""
    return _search(rtype, list(request.args.items(multi=True)))


@bp.post("/<rtype>/_search")
def search_post(rtype: str) -> Response:
    """The same search with its parameters in a form-encoded body (and/or the query string)."""
    return _search(rtype, list(request.args.items(multi=True)) + list(request.form.items(multi=True)))


def _search(rtype: str, args: list[tuple[str, str]]) -> Response:
    lenient = LENIENT in request.headers.get("Prefer", "").replace(" ", "")
    return _fhir_response(get_service().searchset(rtype, args, base_url(), lenient))


def _parse_instant(text: str) -> datetime:
    return datetime.strptime(text.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
