"""What any one client may ask of the server, in one place, and the one parser for integers and
the one depth check that every request goes through.

Each limit is a named default; the server's config (``create_app`` keys of the same name, or the
``FHIRSTUDY_<NAME>`` environment variable) overrides it.  Going over a limit is the client's
mistake: :class:`fhirstudy.errors.InvalidRequest` (400) or, for the body, 413, each with an
OperationOutcome saying which limit and where.
"""
from __future__ import annotations

import re
from typing import Any

from fhirstudy.errors import InvalidRequest

MAX_BODY_BYTES = 8 * 2**20        # a request body (JSON resource, Bundle, _search form)
MAX_JSON_DEPTH = 64               # nesting of objects and arrays in a JSON body
MAX_BUNDLE_ENTRIES = 5000         # entries of one batch or transaction Bundle
MAX_SEARCH_CLAUSES = 64           # search parameters (AND) in one search, result parameters aside
MAX_OR_VALUES = 100               # comma-separated values (OR) in one search parameter
MAX_SEARCH_VALUES = 256           # values of all search parameters of one search together
MAX_VALUE_LENGTH = 2048           # characters of one search value (and of one result parameter)
MAX_OFFSET = 10_000               # _offset of a search: further on, follow the next links (keyset)
MAX_SORT_KEYS = 8                 # keys of _sort
MAX_INCLUDES = 16                 # _include and _revinclude parameters (with :iterate) in one search
MAX_RESULT_PARAMETERS = 32        # result parameters (_count, _sort, _include...) in one search
MAX_INTEGER = 2**63 - 1           # the largest integer taken anywhere (_count, _offset, versions)
MAX_URL_BYTES = 16 * 2**10        # path and query string of one request (414 past it)
MAX_HEADER_BYTES = 8 * 2**10      # one header line, name and value (431 past it)
MAX_HEADER_FIELDS = 100           # header lines of one request (431 past it)
MAX_HISTORY_OFFSET = 10_000       # _offset of a history page (deeper pages: narrow with _since)
MAX_MATCH_SECONDS = 30            # one $match: screening candidates past it ends the request (400 too-costly)

_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)


def parse_integer(raw: Any, where: str, *, minimum: int = 0, maximum: int = MAX_INTEGER) -> int:
    """``raw`` as an integer between ``minimum`` and ``maximum``; InvalidRequest naming ``where``
    otherwise.  Only ASCII digits count (``str.isdigit`` takes ``²``, ``int`` does not), and
    nothing past 64 bits is taken."""
    text = raw.strip() if isinstance(raw, str) else raw
    if isinstance(text, bool) or not (isinstance(text, int) or (isinstance(text, str) and _DIGITS.fullmatch(text))):
        raise InvalidRequest(f"{where} must be a whole number {_bounds(minimum, maximum)}, not {raw!r}",
                             expression=where)
    value = int(text)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{where} must be {_bounds(minimum, maximum)}, not {value}", expression=where)
    return value


def _bounds(minimum: int, maximum: int) -> str:
    return f"({minimum} or more, below 2^63)" if maximum == MAX_INTEGER else f"from {minimum} to {maximum}"


def check_depth(document: Any, where: str = "body", limit: int = MAX_JSON_DEPTH) -> None:
    """InvalidRequest when objects and arrays in ``document`` nest deeper than ``limit`` (walked
    without recursion, so a hostile document cannot exhaust the stack here)."""
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise InvalidRequest(f"The {where} nests deeper than {limit} levels", expression=where)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
