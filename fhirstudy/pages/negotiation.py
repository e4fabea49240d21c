"""Whether a request asks for a web page: ``_format=html`` (or ``text/html``), or an ``Accept``
header that rates ``text/html`` above every FHIR JSON type.

A browser sends ``text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8``: HTML at 1,
JSON only through ``*/*`` at 0.8, so it gets a page. No ``Accept``, ``*/*`` (HTML and JSON rated
the same), ``application/fhir+json`` and any ``_format`` but html keep the FHIR JSON answer, as
before pages existed: a tie goes to JSON.
"""
from __future__ import annotations

from functools import lru_cache

from flask import request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

HTML_FORMATS = ("html", "text/html")
JSON_TYPES = ("application/fhir+json", "application/json")


def wants_html() -> bool:
    """Whether the current request asks for HTML (``_format`` wins over ``Accept``)."""
    wanted = request.args.get("_format")
    if wanted is not None:
        return wanted.split(";")[0].strip().lower() in HTML_FORMATS
    accept = request.headers.get("Accept")
    return bool(accept) and prefers_html(accept)


@lru_cache(maxsize=256)
def prefers_html(accept: str) -> bool:
    """Whether an ``Accept`` header rates ``text/html`` above FHIR JSON (a tie is JSON)."""
    parsed = parse_accept_header(accept, MIMEAccept)
    html = parsed.quality("text/html")
    return html > 0 and html > max(parsed.quality(t) for t in JSON_TYPES)
