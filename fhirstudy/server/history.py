"""History and version reads, and the conditional/deleted cases of ``GET /{type}/{id}``:

    GET /{type}/{id}/_history            instance history (newest first)
    GET /{type}/_history                 type history
    GET /_history                        system history
    GET /{type}/{id}/_history/{vid}      vread (404 unknown version, 410 a deleted version)

History parameters: ``_count`` (page size), ``_since`` (versions written at or after an instant)
and ``_offset`` (used by the ``next``/``previous`` links; at most
:data:`fhirstudy.limits.MAX_HISTORY_OFFSET`, since the database walks every version it skips).
A history Bundle splices the stored bytes of each version into its entries, with ``request``
(method and url that made the version) and ``response`` (status, etag, lastModified).

:func:`init_app` adds an ``after_request`` hook on the read route of :mod:`.routes`:
``If-None-Match: W/"n"`` naming the current version answers 304, and a 404 for a resource that was
deleted becomes 410 Gone.
"""
from __future__ import annotations

from urllib.parse import urlencode

import orjson
from flask import Blueprint, Flask, Response, request

from fhirstudy.errors import Gone, InvalidRequest, NotFound
from fhirstudy.limits import MAX_HISTORY_OFFSET, MAX_INTEGER, parse_integer
from fhirstudy.search.index import BadValue, date_range
from fhirstudy.search.query import MAX_COUNT
from fhirstudy.server.outcome import handle_error
from fhirstudy.server.routes import base_url, get_store, require_served
from fhirstudy.server.write import fhir_response, negotiate, pretty, version_headers
from fhirstudy.store import HistoryEntry, HistoryPage
from fhirstudy.store.repository import HISTORY_COUNT

bp = Blueprint("fhir_history", __name__)
bp.before_request(negotiate)
bp.after_request(pretty)
READ_ENDPOINT = "fhir.read"  # the read route of routes.py
HISTORY_PARAMETERS = ("_count", "_since", "_offset", "_format", "_pretty")
_STATUS = {"created": "201 Created", "updated": "200 OK", "deleted": "204 No Content"}


@bp.get("/_history")
@bp.get("/<rtype>/_history")
@bp.get("/<rtype>/<rid>/_history")
def history(rtype: str | None = None, rid: str | None = None) -> Response:
    """A history Bundle of one resource, one type, or everything."""
    if rtype is not None:
        require_served(rtype)
    count, since, offset = _history_parameters()
    store = get_store()
    page = store.history(rtype, rid, since=since, count=count, offset=offset)
    if rid is not None and page.total == 0 and store.head(rtype, rid) is None:
        raise NotFound(f"{rtype}/{rid} is not known")
    path = "".join(f"/{p}" for p in (rtype, rid) if p) + "/_history"
    return fhir_response(_history_bundle(page, base_url() + path, count, offset))


@bp.get("/<rtype>/<rid>/_history/<vid>")
def vread(rtype: str, rid: str, vid: str) -> Response:
    """Version ``vid`` of ``rtype/rid`` as stored, with its ETag and Last-Modified."""
    require_served(rtype)
    try:
        version = parse_integer(vid, "version", minimum=1)
    except InvalidRequest:  # no version can have this id: not a bad request, a version not found
        version = None
    entry = get_store().read_version(rtype, rid, version) if version is not None else None
    if entry is None:
        raise NotFound(f"{rtype}/{rid} has no version {vid[:80]!r}")
    if entry.deleted:
        raise Gone(f"Version {vid} of {rtype}/{rid} is its deletion")
    return fhir_response(entry.json, headers=version_headers(entry.version, entry.last_updated))


def _history_parameters() -> tuple[int, str | None, int]:
    for name in request.args:
        if name not in HISTORY_PARAMETERS:
            raise InvalidRequest(f"Unknown history parameter {name!r}", expression=name)
    count = min(_non_negative("_count", HISTORY_COUNT), MAX_COUNT)
    offset = _non_negative("_offset", 0, MAX_HISTORY_OFFSET)
    since = request.args.get("_since")
    if since is not None:
        try:
            since = date_range(since)[0] + "Z"
        except BadValue as exc:
            raise InvalidRequest(f"_since must be a FHIR instant: {exc}", expression="_since") from exc
    return count, since, offset


def _non_negative(name: str, default: int, maximum: int = MAX_INTEGER) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return parse_integer(raw, name, maximum=maximum)
    except InvalidRequest as exc:
        if maximum == MAX_INTEGER:
            raise
        raise InvalidRequest(f"{exc.diagnostics}: history pages go {maximum} versions deep at most; "
                             f"narrow the history with _since", expression=name) from None


def _history_bundle(page: HistoryPage, url: str, count: int, offset: int) -> dict:
    echo = [(k, v) for k, v in request.args.items(multi=True) if k in ("_since", "_format")]

    def link(at: int) -> str:
        return url + "?" + urlencode([*echo, ("_count", count), ("_offset", at)])

    links = [{"relation": "self", "url": link(offset)}]
    if count and offset + count < page.total and offset + count <= MAX_HISTORY_OFFSET:
        links.append({"relation": "next", "url": link(offset + count)})
    if count and offset > 0:
        links.append({"relation": "previous", "url": link(max(0, offset - count))})
    bundle = {"resourceType": "Bundle", "type": "history", "total": page.total, "link": links}
    if page.entries:
        bundle["entry"] = [_history_entry(entry, base_url()) for entry in page.entries]
    return bundle


def _history_entry(entry: HistoryEntry, base: str) -> dict:
    kind = "deleted" if entry.deleted else "created" if entry.created else "updated"
    out: dict = {"fullUrl": f"{base}/{entry.type}/{entry.id}"}
    if entry.json is not None:
        out["resource"] = orjson.Fragment(entry.json)
    out["request"] = {"method": entry.method,
                      "url": entry.type if entry.method == "POST" else f"{entry.type}/{entry.id}"}
    out["response"] = {"status": _STATUS[kind], "etag": f'W/"{entry.version}"',
                       "lastModified": entry.last_updated}
    return out


def _conditional_read(response: Response) -> Response:
    """On ``GET /{type}/{id}``: 304 when ``If-None-Match`` names the current version, 410 when a
    404 is for a deleted resource."""
    if request.endpoint != READ_ENDPOINT or not request.view_args:
        return response
    if response.status_code == 200 and request.headers.get("If-None-Match"):
        current = response.headers.get("ETag", "").removeprefix("W/")
        wanted = [tag.strip().removeprefix("W/") for tag in request.headers["If-None-Match"].split(",")]
        if "*" in wanted or current in wanted:
            not_modified = Response(status=304)
            for header in ("ETag", "Last-Modified"):
                if header in response.headers:
                    not_modified.headers[header] = response.headers[header]
            return not_modified
    if response.status_code == 404:
        rtype, rid = request.view_args.get("rtype"), request.view_args.get("rid")
        head = get_store().head(rtype, rid)
        if head is not None and head.deleted:
            return handle_error(Gone(f"{rtype}/{rid} was deleted (version {head.version})"))
    return response


def init_app(app: Flask) -> None:
    """Add the conditional-read hook (304, 410) to ``app``."""
    app.after_request(_conditional_read)
