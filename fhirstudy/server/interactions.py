"""The interactions the write processor runs, and how they are read from a REST call or a Bundle
entry: :class:`WriteRequest` (what to do), :class:`WriteOutcome` (what was done), and the parsing of
URLs, criteria and ETags.  No database, no Flask."""
from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhirstudy.errors import InvalidRequest
from fhirstudy.limits import parse_integer
from fhirstudy.search.query import RESULT_PARAMETERS as SEARCH_RESULT_PARAMETERS
from fhirstudy.server.boundary import FHIR_ID

METHODS = ("GET", "POST", "PUT", "DELETE")
# Parameters of the request URL that are about the response, not conditional criteria.
RESULT_PARAMETERS = frozenset({*SEARCH_RESULT_PARAMETERS, "_format", "_pretty"})
PREFER_RETURN = ("minimal", "representation", "OperationOutcome")


@dataclass
class WriteRequest:
    """One interaction: from a REST call or from a Bundle entry (``index``)."""

    method: str
    rtype: str
    rid: str | None = None
    criteria: list[tuple[str, str]] | None = None     # PUT/DELETE Type?criteria
    resource: dict | None = None
    if_match: int | None = None                        # the version If-Match asks for
    if_none_exist: list[tuple[str, str]] | None = None
    full_url: str | None = None
    index: int | None = None
    matched: str | None = None                         # the id an If-None-Exist found
    search: list[tuple[str, str]] | None = None        # GET Type?params: a search, every parameter

    @property
    def label(self) -> str:
        """``PUT ResearchStudy/x`` or ``PUT ResearchStudy?identifier=...``, for messages."""
        target = self.rtype + (f"/{self.rid}" if self.rid else "")
        if self.criteria:
            target += "?" + urlencode(self.criteria)
        return f"{self.method} {target}"


@dataclass(frozen=True)
class WriteOutcome:
    """What an interaction did: the HTTP status, the resource's keys and version, and the stored
    bytes (None for a delete or when there is nothing to show)."""

    status: int
    method: str
    rtype: str
    rid: str | None
    version: int | None = None
    last_updated: str | None = None
    json: bytes | None = None
    message: str = ""

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"

    @property
    def etag(self) -> str | None:
        return f'W/"{self.version}"' if self.version is not None else None

    @property
    def location(self) -> str | None:
        """``Type/id/_history/n`` of a created or updated version."""
        if self.rid is None or self.version is None or self.method in ("GET", "DELETE"):
            return None
        return f"{self.rtype}/{self.rid}/_history/{self.version}"


# ---------------------------------------------------------------------------------------------
# parsing


def parse_etag(value: str | None, where: str = "If-Match") -> int | None:
    """The version in an ETag (``W/"3"`` or ``"3"``), None when absent; InvalidRequest if malformed."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    try:
        return parse_integer(text.strip('"'), where)
    except InvalidRequest:
        raise InvalidRequest(f"{where} must be a version ETag like W/\"1\", not {value[:80]!r}",
                             expression=where) from None


def parse_criteria(query: str | None, where: str = "criteria") -> list[tuple[str, str]] | None:
    """Search criteria of a conditional interaction (``identifier=x&status=active``, optionally
    after ``Type?``), or None when there is no query at all.  Result parameters (``_count``,
    ``_sort``, ``_format``...) are not criteria and are left out; InvalidRequest when nothing else
    is left."""
    if query is None or query.strip() == "":
        return None
    head, question, rest = query.partition("?")
    if question and not {"=", "&"} & set(head):  # "Type?criteria" or "?criteria"
        query = rest
    criteria = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                if k.partition(":")[0] not in RESULT_PARAMETERS]
    if not criteria:
        raise InvalidRequest(f"{where} {query[:200]!r} has no search criteria once result parameters "
                             f"({', '.join(sorted(RESULT_PARAMETERS))}) are set aside", expression=where)
    return criteria  # their values are checked by parse_search, which names the parameter


def parse_url(url: Any, base: str, where: str) -> tuple[str, str | None, list[tuple[str, str]] | None]:
    """``Type``, ``Type/id`` or ``Type?criteria`` (optionally under ``base``) -> (type, id, criteria)."""
    rtype, rid, query = split_url(url, base, where)
    return rtype, rid, parse_criteria(query) if query is not None else None


def split_url(url: Any, base: str, where: str) -> tuple[str, str | None, str | None]:
    """``Type``, ``Type/id`` or ``Type?query`` (optionally under ``base``) -> (type, id, query or None)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("request.url is missing", expression=where)
    url = url.strip()
    if url.startswith(base + "/"):
        url = url[len(base) + 1:]
    path, question, query = url.partition("?")
    parts = path.strip("/").split("/")
    if len(parts) > 2 or not parts[0] or (len(parts) == 2 and (not parts[1] or parts[1].startswith("_"))):
        raise InvalidRequest(f"request.url {url!r} is not Type, Type/id or Type?criteria", expression=where)
    if question and len(parts) != 1:
        raise InvalidRequest(f"request.url {url!r}: criteria go with a type only", expression=where)
    return parts[0], (parts[1] if len(parts) == 2 else None), query if question else None


# the JSON type each element of a Bundle entry's request must have (R5 Bundle.entry.request)
REQUEST_FIELDS = {"method": str, "url": str, "ifNoneMatch": str, "ifModifiedSince": str, "ifMatch": str,
                  "ifNoneExist": str}
ENTRY_FIELDS = {"fullUrl": str, "resource": dict, "request": dict}
_JSON_NAMES = {str: "a string", dict: "an object"}


def request_from_entry(index: int, entry: Any, base: str) -> WriteRequest:
    """The :class:`WriteRequest` of Bundle entry ``index``; InvalidRequest when it is malformed
    (each element of the entry and of its request checked for its JSON type)."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise InvalidRequest("an entry must be an object", expression=where)
    if "request" not in entry:
        raise InvalidRequest("an entry needs a request (method and url)", expression=f"{where}.request")
    _check_types(entry, ENTRY_FIELDS, where)
    request = entry["request"]
    _check_types(request, REQUEST_FIELDS, f"{where}.request")
    method = request.get("method")
    if method not in METHODS:
        raise InvalidRequest(f"request.method {method!r} is not supported (only {', '.join(METHODS)})",
                             expression=f"{where}.request.method")
    rtype, rid, query = split_url(request.get("url"), base, f"{where}.request.url")
    if method == "GET" and rid is None:  # a search: every parameter, result parameters included
        return WriteRequest(method="GET", rtype=rtype, full_url=entry.get("fullUrl"), index=index,
                            search=parse_qsl(query or "", keep_blank_values=True))
    criteria = parse_criteria(query) if query is not None else None
    if method == "POST" and (rid or criteria):
        raise InvalidRequest("a POST entry's url is the type only", expression=f"{where}.request.url")
    if method in ("PUT", "DELETE") and not (rid or criteria):
        raise InvalidRequest(f"a {method} entry's url needs an id or criteria", expression=f"{where}.request.url")
    if rid is not None and not FHIR_ID.fullmatch(rid):
        raise InvalidRequest(f"{rid[:80]!r} is not a FHIR id", expression=f"{where}.request.url")
    return WriteRequest(
        method=method, rtype=rtype, rid=rid, criteria=criteria, resource=entry.get("resource"),
        if_match=parse_etag(request.get("ifMatch"), f"{where}.request.ifMatch"),
        if_none_exist=(parse_criteria(request.get("ifNoneExist"), f"{where}.request.ifNoneExist")
                       if method == "POST" else None),
        full_url=entry.get("fullUrl"), index=index)


def _check_types(node: dict, fields: dict[str, type], where: str) -> None:
    for name, kind in fields.items():
        if name in node and not isinstance(node[name], kind):
            raise InvalidRequest(f"{where}.{name} must be {_JSON_NAMES[kind]}, not {type(node[name]).__name__}",
                                 expression=f"{where}.{name}")
