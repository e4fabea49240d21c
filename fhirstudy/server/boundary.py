"""The checks every request meets before any route sees it: sizes, characters and ids.

Config keys (``create_app``; :mod:`fhirstudy.config` reads their defaults, ``FHIRSTUDY_<KEY>``):
``MAX_BODY_BYTES`` (a request body, default :data:`fhirstudy.limits.MAX_BODY_BYTES`; Flask's
``MAX_CONTENT_LENGTH`` is set from it; a declared ``Content-Length`` over it and a chunked body
that runs past it are both 413), ``MAX_URL_BYTES`` (path and query string, 414) and
``MAX_HEADER_BYTES`` / ``MAX_HEADER_FIELDS`` (one header line / how many, 431).

Then the request's own text: no character below U+0020 in the path or the query string (a NUL
would reach the database), a ``Host`` header that is a host name and port when ``BASE_URL`` is not
configured (it goes into every ``fullUrl`` and ``Location``), and every resource id in the path
(``/{type}/{id}...``) matching the FHIR id type, ``[A-Za-z0-9\\-.]{1,64}``.  Each refusal is a
:class:`fhirstudy.errors.FhirError`, so the one error handler answers it with an OperationOutcome.
"""
from __future__ import annotations

import re

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from fhirstudy import limits
from fhirstudy.errors import FhirError, InvalidRequest

CONFIG_LIMITS = ("MAX_BODY_BYTES", "MAX_URL_BYTES", "MAX_HEADER_BYTES", "MAX_HEADER_FIELDS")
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)
# characters FHIR strings SHALL NOT contain; in a URL not even tab, CR and LF make sense
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# a Host header echoed into links when BASE_URL is not configured: a name or address, a port
_HOST = re.compile(r"([A-Za-z0-9\-.]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?", re.ASCII)


def check_request() -> None:
    """Refuse a request past the size limits, with control characters in its URL, or naming a
    resource id FHIR does not allow."""
    config = current_app.config
    environ = request.environ
    url_bytes = len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", ""))
    if url_bytes > config["MAX_URL_BYTES"]:
        raise FhirError(f"The URL is {url_bytes} bytes long; this server takes at most "
                        f"{config['MAX_URL_BYTES']} (send long searches as POST [type]/_search)",
                        status=414, code="too-long")
    if len(request.headers) > config["MAX_HEADER_FIELDS"]:
        raise FhirError(f"The request has {len(request.headers)} header lines; this server takes at most "
                        f"{config['MAX_HEADER_FIELDS']}", status=431, code="too-long")
    for name, value in request.headers.items():
        if len(name) + len(value) > config["MAX_HEADER_BYTES"]:
            raise FhirError(f"The {name} header is longer than {config['MAX_HEADER_BYTES']} bytes",
                            expression=name, status=431, code="too-long")
    _check_body_size(config["MAX_BODY_BYTES"])
    if not config.get("BASE_URL") and not _HOST.fullmatch(request.host):
        raise InvalidRequest(f"The Host header {request.host[:80]!r} is not a host name and port", expression="Host")
    if _URL_CONTROL.search(request.path):
        raise InvalidRequest("The path contains a control character")
    for name, value in request.args.items(multi=True):
        if _URL_CONTROL.search(name) or _URL_CONTROL.search(value):
            raise InvalidRequest(f"The query parameter {name!r} contains a control character", expression=name)
    rid = (request.view_args or {}).get("rid")
    if rid is not None and not FHIR_ID.fullmatch(rid):
        raise InvalidRequest(f"{rid[:80]!r} is not a FHIR id (1 to 64 of A-Z, a-z, 0-9, '-' and '.')",
                             expression="id")


def _check_body_size(limit: int) -> None:
    """413 for a body over ``limit`` bytes: a declared ``Content-Length`` before reading anything,
    a chunked body by reading at most one byte past the limit (Flask's ``MAX_CONTENT_LENGTH``, one
    above, stops the stream there; the bytes read stay cached for the route)."""
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise RequestEntityTooLarge()
    elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        if len(request.get_data()) > limit:
            raise RequestEntityTooLarge()


def init_app(app: Flask) -> None:
    """Apply the body limit (Flask ``MAX_CONTENT_LENGTH``) and run :func:`check_request` first on
    every request of ``app``."""
    for name in CONFIG_LIMITS:
        app.config[name] = limits.parse_integer(app.config[name], name, minimum=1)
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"] + 1  # see _check_body_size
    app.config["MAX_FORM_MEMORY_SIZE"] = app.config["MAX_BODY_BYTES"]
    app.url_map.merge_slashes = False  # "//_history" is not found, not a redirect page
    app.before_request(check_request)
