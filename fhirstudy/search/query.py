"""Parse a FHIR search request (``GET /{type}?...``) into a :class:`SearchQuery`.

A repeated parameter is AND (one :class:`Clause` per occurrence); a comma inside a value is OR
(several values in one clause).  Values are parsed here according to the parameter type, so the
store only ever sees well-formed criteria; anything malformed raises
:class:`fhirstudy.errors.InvalidRequest` naming the parameter.

Result parameters: ``_count`` (capped at :data:`MAX_COUNT`), ``_offset``, ``_sort`` (several keys,
``-`` for descending), ``_total`` (``none``, ``estimate``, ``accurate``), ``_summary`` (``true``,
``text``, ``data``, ``count``, ``false``), ``_elements``, ``_include`` and ``_revinclude`` (with
``:iterate``), ``_cursor`` and ``_before``, the opaque keyset positions the server writes into
``next`` and ``previous`` links (see :mod:`fhirstudy.server.routes`).
"""
from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import orjson

from fhirstudy.errors import InvalidRequest
from fhirstudy.search.index import (BadValue, date_range, normalize, split_reference,
                                    STRING_INDEX_LENGTH)
from fhirstudy.search.registry import Registry, SearchParam

DEFAULT_COUNT = 20
MAX_COUNT = 500
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Result parameters we honour; ``_format`` and ``_pretty`` are the server's business.
RESULT_PARAMETERS = ("_count", "_offset", "_sort", "_total", "_summary", "_format", "_pretty", "_elements",
                     "_include", "_revinclude", "_include:iterate", "_revinclude:iterate", "_cursor",
                     "_before")
SUMMARY_VALUES = ("true", "text", "data", "count", "false")
TOTAL_VALUES = ("none", "estimate", "accurate")
# Element names for _elements: a top-level element of the resource (no paths into it).
_ELEMENT_RE = re.compile(r"^[a-z][A-Za-z0-9]*$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class TokenValue:
    """``code``, ``system|code``, ``|code`` (no system) or ``system|``; or text for ``:text``."""

    system: str | None
    code: str | None
    no_system: bool = False
    text: str | None = None


@dataclass(frozen=True)
class StringValue:
    """A string to match: ``normalized`` for starts-with/contains, ``exact`` for ``:exact``."""

    normalized: str
    exact: str


@dataclass(frozen=True)
class ReferenceValue:
    """``Type/id``, ``id`` or an absolute URL / canonical."""

    target_type: str | None
    target_id: str | None
    url: str | None


@dataclass(frozen=True)
class RangeValue:
    """A date or number with its prefix and the range its precision covers."""

    prefix: str
    low: object
    high: object
    value: object = None


@dataclass(frozen=True)
class UriValue:
    uri: str


@dataclass(frozen=True)
class CompositeValue:
    """One value of a composite parameter: one value per component, in order (``a$b``)."""

    parts: tuple


@dataclass(frozen=True)
class Include:
    """``_include`` (``reverse`` False: resources the matches point at with ``param``) or
    ``_revinclude`` (``reverse`` True: resources of ``param.resource_type`` pointing at them
    with ``param``); ``target_type`` restricts the type pointed at."""

    param: SearchParam
    target_type: str | None = None
    reverse: bool = False
    iterate: bool = False


@dataclass(frozen=True)
class Clause:
    """One occurrence of a search parameter: the values are ORed."""

    param: SearchParam
    modifier: str | None
    values: tuple
    missing: bool | None = None  # for ``:missing``


@dataclass(frozen=True)
class SortKey:
    """Sort by ``param`` (None = by id), descending when ``descending``."""

    param: SearchParam | None
    descending: bool = False


@dataclass
class SearchQuery:
    """Everything the store needs to answer a search, plus what the server needs for links."""

    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[SortKey] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    # the accepted search parameters as given, to rebuild self/next links
    echo: list[tuple[str, str]] = field(default_factory=list)
    total: str = "accurate"
    summary: str | None = None
    elements: tuple[str, ...] | None = None
    includes: list[Include] = field(default_factory=list)
    cursor: tuple | None = None  # the sort values and primary key of the previous page's last entry
    before: tuple | None = None  # the sort values and primary key of the next page's first entry

    @property
    def subsetted(self) -> bool:
        """Whether matched resources are returned in part (``_summary`` or ``_elements``)."""
        return self.summary in ("true", "text", "data") or self.elements is not None


def parse_search(resource_type: str, args: Iterable[tuple[str, str]], registry: Registry,
                 lenient: bool = False) -> SearchQuery:
    """Parse query-string pairs for ``resource_type`` into a :class:`SearchQuery`.

    Unknown parameters and modifiers raise InvalidRequest unless ``lenient`` (``Prefer:
    handling=lenient``), in which case they are listed in ``ignored``.
    """
    query = SearchQuery(resource_type)
    for name, raw in args:
        if name in RESULT_PARAMETERS:
            _result_parameter(query, name, raw, registry, lenient)
            continue
        code, _, modifier = name.partition(":")
        param = registry.get(resource_type, code)
        if param is None or (modifier and not _modifier_ok(param, modifier)):
            if lenient:
                query.ignored.append(name)
                continue
            what = "modifier" if param is not None else "parameter"
            raise InvalidRequest(f"Unknown search {what} {name!r} for {resource_type}", expression=name)
        query.clauses.append(_clause(param, modifier or None, raw, name))
        query.echo.append((name, raw))
    if query.summary == "count":
        query.count, query.total = 0, "accurate"
    return query


def _modifier_ok(param: SearchParam, modifier: str) -> bool:
    if modifier in param.modifiers:
        return True
    return param.type == "reference" and re.fullmatch(r"[A-Z][A-Za-z]+", modifier) is not None


def _result_parameter(query: SearchQuery, name: str, raw: str, registry: Registry, lenient: bool) -> None:
    if name == "_count":
        query.count = min(_non_negative(name, raw), MAX_COUNT)
    elif name == "_offset":
        query.offset = _non_negative(name, raw)
    elif name == "_sort":
        query.sort = [_sort_key(query.resource_type, key, registry) for key in raw.split(",") if key]
    elif name == "_summary":
        if raw not in SUMMARY_VALUES:
            raise InvalidRequest(f"_summary must be one of {', '.join(SUMMARY_VALUES)}, not {raw!r}",
                                 expression=name)
        query.summary = None if raw == "false" else raw
        if raw == "count":
            query.count, query.total = 0, "accurate"
    elif name == "_total":
        if raw not in TOTAL_VALUES:
            raise InvalidRequest(f"_total must be none, estimate or accurate, not {raw!r}", expression=name)
        if query.summary != "count":
            query.total = raw
    elif name == "_elements":
        names = tuple(part.strip() for part in raw.split(",") if part.strip())
        bad = [n for n in names if not _ELEMENT_RE.match(n)]
        if bad:
            raise InvalidRequest(f"_elements takes top-level element names, not {', '.join(bad)}",
                                 expression=name)
        query.elements = (query.elements or ()) + names
    elif name in ("_include", "_revinclude", "_include:iterate", "_revinclude:iterate"):
        query.includes.extend(_includes(query.resource_type, name, raw, registry, lenient))
    elif name in ("_cursor", "_before"):
        values = decode_cursor(raw, name)
        if name == "_cursor":
            query.cursor = values
        else:
            query.before = values
        if query.cursor is not None and query.before is not None:
            raise InvalidRequest("_cursor and _before do not go together", expression=name)
        return  # the server writes them into paging links itself
    if name not in ("_format", "_pretty", "_count", "_offset"):  # links set _count themselves
        query.echo.append((name, raw))


def _includes(resource_type: str, name: str, raw: str, registry: Registry, lenient: bool) -> list[Include]:
    """``Source:param[:Target]`` or ``Source:*`` of ``_include``/``_revinclude`` (``:iterate``)."""
    reverse = name.startswith("_revinclude")
    iterate = name.endswith(":iterate")
    parts = raw.split(":")
    source = parts[0]
    code = parts[1] if len(parts) > 1 else ""
    target = parts[2] if len(parts) > 2 else None
    if code == "*":
        params = [p for p in registry.params(source).values() if p.type == "reference"]
    else:
        param = registry.get(source, code)
        params = [param] if param is not None and param.type == "reference" else []
    problem = None
    if len(parts) not in (2, 3) or not params:
        problem = f"{name}={raw}: no reference search parameter {code!r} on {source!r}"
    elif not reverse and not iterate and source != resource_type:
        problem = f"{name}={raw}: {source} is not the type searched ({resource_type}); use {name}:iterate"
    elif target is not None and params[0].target and target not in params[0].target and code != "*":
        problem = f"{name}={raw}: {code} does not point at {target}"
    if problem:
        if lenient:
            return []
        raise InvalidRequest(problem, expression=name)
    return [Include(param, target, reverse, iterate) for param in params]


def encode_cursor(values: tuple) -> str:
    """The opaque ``_cursor`` value for a page that starts after ``values`` (sort values, primary key)."""
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode("ascii").rstrip("=")


def decode_cursor(raw: str, name: str = "_cursor") -> tuple:
    """The sort values and primary key a ``_cursor`` (or ``_before``) value holds; InvalidRequest when it
    is not ours."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidRequest(f"{name} is not a value this server wrote", expression=name) from exc
    if not isinstance(values, list) or not values or not all(
            v is None or isinstance(v, (str, int, float)) for v in values):
        raise InvalidRequest(f"{name} is not a value this server wrote", expression=name)
    return tuple(values)


def _non_negative(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise InvalidRequest(f"{name} must be a non-negative integer, not {raw!r}", expression=name)
    return int(raw)


def _sort_key(resource_type: str, key: str, registry: Registry) -> SortKey:
    descending = key.startswith("-")
    code = key.lstrip("-")
    param = registry.get(resource_type, code)
    if param is None or param.type not in ("token", "string", "date", "number", "uri"):
        raise InvalidRequest(f"Cannot sort {resource_type} by {code!r}", expression="_sort")
    return SortKey(param, descending)


def _clause(param: SearchParam, modifier: str | None, raw: str, name: str) -> Clause:
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise InvalidRequest(f"{name} must be true or false, not {raw!r}", expression=name)
        return Clause(param, modifier, (), missing=raw == "true")
    if param.type == "composite":
        values = tuple(_composite_value(param, part, name) for part in _split_or(raw))
    else:
        values = tuple(_value(param, modifier, part, name) for part in _split_or(raw))
    if not values:
        raise InvalidRequest(f"{name} needs a value", expression=name)
    return Clause(param, modifier, values)


def _split_or(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash; unescape ``\\,``, ``\\|``, ``\\$``, ``\\\\``."""
    parts, current, escaped = [], [], False
    for char in raw:
        if escaped:
            current.append(char if char in ",$|\\" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p != ""]


def _composite_value(param: SearchParam, raw: str, name: str) -> CompositeValue:
    parts = raw.split("$")
    if len(parts) != len(param.components):
        codes = "$".join(c.code for c in param.components)
        raise InvalidRequest(f"{name} takes {len(param.components)} values joined by '$' ({codes}), "
                             f"not {raw!r}", expression=name)
    try:
        return CompositeValue(tuple(_PARSERS[c.type](part, None) for c, part in zip(param.components, parts)))
    except BadValue as exc:
        raise InvalidRequest(f"Bad value for {name}: {exc}", expression=name) from exc


def _value(param: SearchParam, modifier: str | None, raw: str, name: str):
    try:
        return _PARSERS[param.type](raw, modifier)
    except BadValue as exc:
        raise InvalidRequest(f"Bad value for {name}: {exc}", expression=name) from exc


def _token_value(raw: str, modifier: str | None) -> TokenValue:
    if modifier == "text":
        return TokenValue(None, None, text=normalize(raw)[:STRING_INDEX_LENGTH])
    if "|" not in raw:
        return TokenValue(None, raw)
    system, _, code = raw.partition("|")
    return TokenValue(system or None, code or None, no_system=(system == ""))


def _string_value(raw: str, modifier: str | None) -> StringValue:
    return StringValue(normalize(raw), raw)


def _reference_value(raw: str, modifier: str | None) -> ReferenceValue:
    target_type, target_id = split_reference(raw)
    if target_id is None:
        if "/" in raw or ":" in raw:
            return ReferenceValue(None, None, raw.split("|")[0])
        return ReferenceValue(modifier, raw, None)
    if modifier and modifier != target_type:
        raise BadValue(f"{raw!r} is not a {modifier}")
    is_url = raw.startswith(("http://", "https://", "urn:"))
    return ReferenceValue(target_type, target_id, raw if is_url else None)


def _split_prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in PREFIXES and len(raw) > 2 and not raw[2:3].isalpha():
        return raw[:2], raw[2:]
    return "eq", raw


def _date_value(raw: str, modifier: str | None) -> RangeValue:
    prefix, text = _split_prefix(raw)
    low, high = date_range(text.replace(" ", "+"))  # an unescaped "+" in a query string is a space
    return RangeValue(prefix, low, high)


def _number_value(raw: str, modifier: str | None) -> RangeValue:
    prefix, text = _split_prefix(raw)
    if not _NUMBER_RE.match(text):
        raise BadValue(f"not a number: {text!r}")
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    try:
        value = float(text)
        half = 0.5 * 10.0 ** (int(exponent or 0) - decimals)  # implicit precision: 100 is [99.5, 100.5)
    except OverflowError as exc:
        raise BadValue(f"number out of range: {text!r}") from exc
    if not math.isfinite(value) or not math.isfinite(half):
        raise BadValue(f"number out of range: {text!r}")
    return RangeValue(prefix, value - half, value + half, value)


def _uri_value(raw: str, modifier: str | None) -> UriValue:
    return UriValue(raw)


_PARSERS = {
    "token": _token_value,
    "string": _string_value,
    "reference": _reference_value,
    "date": _date_value,
    "number": _number_value,
    "uri": _uri_value,
}

