"""Pages for what has no page of its own: any other resource read (``GET /Location/{id}``,
``/metadata``) shown as its JSON with a link to it, any other search as a list of its matches
with paging. The same reads and searches as the FHIR routes (the store, the search service)."""
from __future__ import annotations

import orjson
from flask import Response, render_template, request

from fhirstudy.errors import NotFound
from fhirstudy.pages.search_page import relative_link
from fhirstudy.server.capability import capability_statement
from fhirstudy.server.routes import base_url, get_service, get_store

MAX_SHOWN_BYTES = 60_000   # a resource larger than this is linked, not shown (page weight)


def render_read(rtype: str, rid: str) -> Response:
    """``rtype/rid`` as a page: its title and its JSON."""
    get_service().require_served(rtype)
    entry = get_store().read_entry(rtype, rid)
    if entry is None:
        raise NotFound(f"{rtype}/{rid} is not known")
    return _resource_page(orjson.loads(entry.json), f"/{rtype}/{rid}?_format=json")


def render_metadata() -> Response:
    """The CapabilityStatement as a page."""
    return _resource_page(capability_statement(get_service().registry, base_url()), "/metadata?_format=json")


def _resource_page(resource: dict, json_url: str) -> Response:
    text = orjson.dumps(resource, option=orjson.OPT_INDENT_2).decode()
    title = resource.get("title") or resource.get("name") or f"{resource['resourceType']}/{resource.get('id', '')}"
    shown = text if len(text) <= MAX_SHOWN_BYTES else None
    return Response(render_template("resource.html", title=title if isinstance(title, str) else str(title),
                                    rtype=resource["resourceType"], json_url=json_url, text=shown, size=len(text)),
                    mimetype="text/html")


def render_search(rtype: str) -> Response:
    """A search of ``rtype`` as a page: each match linked, paging by the searchset's links."""
    criteria = [(k, v) for k, v in request.args.items(multi=True) if k != "_format"]
    bundle = orjson.loads(get_service().searchset(rtype, criteria, base_url()))
    matches = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        label = resource.get("title") or resource.get("name") or resource.get("id", "")
        matches.append({"url": f"/{resource.get('resourceType')}/{resource.get('id')}", "mode": entry["search"]["mode"],
                        "label": label if isinstance(label, str) else resource.get("id", ""),
                        "type": resource.get("resourceType", "")})
    links = {link["relation"]: relative_link(link["url"], []) for link in bundle.get("link") or []}
    return Response(render_template("resource_search.html", rtype=rtype, total=bundle.get("total"), matches=matches,
                                    links=links, json_url=relative_link(links.get("self", ""), [("_format", "json")])),
                    mimetype="text/html")
