"""Web pages for people (research coordinators, clinicians, patients): the FHIR searches and reads
of this server rendered as HTML, server-side, with no build step and no asset from the internet.

    GET /                                    the search form (a FHIR client still gets 405: POST / is a Bundle)
    GET /ResearchStudy?condition=...         the search form and its results: the FHIR search, rendered
    GET /ResearchStudy/{id}                  a study page: summary, conditions, arms, outcomes, criteria
                                             beside their computable facts, sites, results, JSON links
    GET|POST /ResearchStudy/$match           "Check a patient": a patient Bundle in, $match's answer out
    GET /{type}/{id}, GET /{type}?...        any other resource or search, as a simple page
    GET /_pages/find                         the form's target: drops empty fields, turns a ZIP code or a
                                             city into ``site.near``, and redirects (303) to the FHIR URL

HTML only when asked: ``_format=html``, or an ``Accept`` that prefers ``text/html`` to FHIR JSON
(a browser's ``text/html,...,*/*;q=0.8``; :mod:`.negotiation`). Every other request (no
``Accept``, ``*/*``, ``application/fhir+json``, ``_format=json``) goes on to the FHIR routes
untouched. A page is the FHIR answer rendered: it calls the same search service, store and
matcher as the FHIR routes, so a page's URL fetched with ``Accept: application/fhir+json`` gives
its data. An error on a page is the one error handler's OperationOutcome (same status), shown
as a page. Pages carry ``Content-Security-Policy: default-src 'self'`` and ``Vary: Accept``.

Modules: ``negotiation`` (HTML or not), ``present`` (FHIR JSON -> what a page shows), one view
module per page (``search_page``, ``study_page``, ``match_page``, ``resource_page``); templates in
``templates/``, one stylesheet in ``static/``. May import Flask, werkzeug, jinja2, the foundation,
fhirstudy.search, fhirstudy.service, fhirstudy.matching and fhirstudy.server (its helpers:
``base_url``, ``get_service``, ``get_store``, ``get_matcher``; the server imports this room only
inside ``create_app``).
"""
from __future__ import annotations

import orjson
from flask import Blueprint, Flask, Response, render_template, request

from fhirstudy.pages.negotiation import wants_html
from fhirstudy.server.outcome import FHIR_JSON

bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/_pages/static")
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin"}
NEGOTIATED = {"fhir.read", "fhir.search", "fhir.metadata", "pages.home", "fhir_operations.match",
              "fhir_operations.match_get"}


def init_app(app: Flask) -> None:
    """Register the pages on ``app``: after the request checks (:mod:`fhirstudy.server.boundary`),
    before the FHIR routes' own negotiation, so that a request for HTML never reaches them."""
    from fhirstudy.pages import match_page, resource_page, search_page, study_page  # noqa: F401 (routes)

    app.register_blueprint(bp)
    app.before_request(_serve_page)
    app.after_request(_page_headers)


def _serve_page() -> Response | None:
    """The page for a FHIR URL asked for as HTML (None: the FHIR route answers)."""
    endpoint = request.endpoint
    if endpoint not in NEGOTIATED or endpoint.startswith("pages.") or not wants_html():
        return None
    from fhirstudy.pages import match_page, resource_page, search_page, study_page

    args = request.view_args or {}
    rtype = args.get("rtype")
    if endpoint == "fhir.search":
        return search_page.render_search() if rtype == "ResearchStudy" else resource_page.render_search(rtype)
    if endpoint == "fhir.read":
        return study_page.render_study(args["rid"]) if rtype == "ResearchStudy" \
            else resource_page.render_read(rtype, args["rid"])
    if endpoint == "fhir.metadata":
        return resource_page.render_metadata()
    if endpoint == "fhir_operations.match_get":
        return match_page.render_form()
    if endpoint == "fhir_operations.match" and request.mimetype in match_page.FORM_TYPES:
        return match_page.render_match()
    return None


def _page_headers(response: Response) -> Response:
    """Security headers on pages; an error answer of a page request (an OperationOutcome from the
    one error handler) shown as an HTML page with the same status."""
    if request.endpoint in NEGOTIATED or request.endpoint is None or request.blueprint == "pages":
        if response.status_code >= 400 and response.mimetype == FHIR_JSON and wants_html():
            response = _error_page(response)
        if response.mimetype == "text/html":
            response.headers.update(PAGE_HEADERS)
        if request.endpoint in NEGOTIATED:
            response.vary.add("Accept")
    return response


def _error_page(response: Response) -> Response:
    try:
        issues = orjson.loads(response.get_data()).get("issue") or []
    except (orjson.JSONDecodeError, AttributeError):
        issues = []
    page = Response(render_template("error.html", status=response.status_code, title=_TITLES.get(
        response.status_code, "Something went wrong"), issues=issues), status=response.status_code,
        mimetype="text/html")
    for name in ("Allow", "Retry-After", "WWW-Authenticate"):
        if name in response.headers:
            page.headers[name] = response.headers[name]
    return page


_TITLES = {400: "The search could not be run", 404: "Not found", 405: "Not available here",
           406: "Not available in this format", 410: "Deleted", 413: "Too large",
           414: "The address is too long", 415: "Not a form this page takes",
           503: "The database could not answer"}
