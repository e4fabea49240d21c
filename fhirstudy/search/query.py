"""Parse a FHIR search request (``GET /{type}?...``) into a :class:`SearchQuery`.

A repeated parameter is AND (one :class:`Clause` per occurrence); a comma inside a value is OR
(several values in one clause).  Values are parsed here according to the parameter type, so the
store only ever sees well-formed criteria; anything malformed raises
:class:`fhirstudy.errors.InvalidRequest` naming the parameter.

Every value is checked before anything reaches the store (:mod:`fhirstudy.limits`): at most
``MAX_SEARCH_CLAUSES`` search parameters and ``MAX_RESULT_PARAMETERS`` result parameters, at most
``MAX_OR_VALUES`` comma-separated values in one parameter and ``MAX_SEARCH_VALUES`` in all (a
composite value counts once per component), each of at most ``MAX_VALUE_LENGTH`` characters, no C0
control character FHIR strings forbid (nor a lone surrogate), and backslash escapes as the FHIR
search page defines them: ``\\,``, ``\\$``, ``\\|`` and ``\\\\`` only (a backslash before any other
character, or at the end of a value, is refused).

Result parameters: ``_count`` (capped at :data:`MAX_COUNT`), ``_offset`` (at most ``MAX_OFFSET``:
further on, the ``next`` links page by position), ``_sort`` (up to ``MAX_SORT_KEYS`` keys,
``-`` for descending), ``_total`` (``none``, ``estimate``, ``accurate``), ``_summary`` (``true``,
``text``, ``data``, ``count``, ``false``), ``_elements``, ``_include`` and ``_revinclude`` (with
``:iterate``, at most ``MAX_INCLUDES`` in all), ``_cursor`` and ``_before``, the opaque keyset
positions the server writes into ``next`` and ``previous`` links (see
:mod:`fhirstudy.server.routes`): one value per sort key, of that key's type, then the primary key.
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
from fhirstudy.limits import (MAX_INCLUDES, MAX_INTEGER, MAX_OFFSET, MAX_OR_VALUES, MAX_RESULT_PARAMETERS,
                              MAX_SEARCH_CLAUSES, MAX_SEARCH_VALUES, MAX_SORT_KEYS, MAX_VALUE_LENGTH,
                              parse_integer)
from fhirstudy.search.index import (BadValue, ID_LENGTH, STRING_INDEX_LENGTH, STRING_KEEP_LENGTH, TOKEN_LENGTH,
                                    cut_key, date_range, normalized_prefix, split_reference)
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
_NUMBER_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
# C0 controls FHIR strings forbid (tab, LF and CR are allowed) and lone surrogates: no search
# value holds them (PostgreSQL cannot even store NUL in text).
_FORBIDDEN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
ESCAPABLE = ",$|\\"  # what a backslash may escape in a search value (FHIR search, escaping)
_ESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)
# A cursor holds at most MAX_SORT_KEYS index values of at most TOKEN_LENGTH characters and a key.
MAX_CURSOR_LENGTH = 16 * 1024
_INCLUDE_PARAMETERS = ("_include", "_revinclude", "_include:iterate", "_revinclude:iterate")
_NOT_OURS = "{name} is not a value this server wrote"


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
    handling=lenient``), in which case they are listed in ``ignored``.  Going over a limit of
    :mod:`fhirstudy.limits`, a value with a forbidden character or a bad escape, and a ``_cursor``
    that does not fit the sort keys raise InvalidRequest naming the parameter, lenient or not.
    """
    query = SearchQuery(resource_type)
    clauses = values = results = includes = 0
    for name, raw in args:
        _check_text(name, raw)
        if name in RESULT_PARAMETERS:
            results += 1
            includes += name in _INCLUDE_PARAMETERS
            if results > MAX_RESULT_PARAMETERS:
                raise InvalidRequest(f"A search takes at most {MAX_RESULT_PARAMETERS} result parameters "
                                     f"(_count, _sort, _include...)", expression=name)
            if includes > MAX_INCLUDES:
                raise InvalidRequest(f"A search takes at most {MAX_INCLUDES} _include and _revinclude "
                                     f"parameters", expression=name)
            longest = MAX_CURSOR_LENGTH if name in ("_cursor", "_before") else MAX_VALUE_LENGTH
            if len(raw) > longest:
                raise InvalidRequest(f"{name} is longer than {longest} characters", expression=name)
            _result_parameter(query, name, raw, registry, lenient)
            continue
        clauses += 1
        if clauses > MAX_SEARCH_CLAUSES:
            raise InvalidRequest(f"A search takes at most {MAX_SEARCH_CLAUSES} search parameters (criteria "
                                 f"joined by AND); this one has more", expression=name)
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
        values += max(1, len(query.clauses[-1].values)) * max(1, len(param.components))  # a composite: each part
        if values > MAX_SEARCH_VALUES:
            raise InvalidRequest(f"A search takes at most {MAX_SEARCH_VALUES} values in all its search parameters "
                                 f"together; this one has more", expression=name)
    if query.summary == "count":
        query.count, query.total = 0, "accurate"
    for name, position in (("_cursor", query.cursor), ("_before", query.before)):
        if position is not None:
            _check_position(position, query.sort, name)
    return query


def _check_text(name: str, raw: str) -> None:
    """InvalidRequest when the parameter's name or value holds a character no FHIR string may."""
    for text in (name, raw):
        bad = _FORBIDDEN_TEXT.search(text)
        if bad:
            where = name.encode("unicode_escape").decode("ascii") if text is name else name
            raise InvalidRequest(f"{where} holds the character U+{ord(bad.group()):04X} at {bad.start()}, "
                                 f"which FHIR strings may not contain", expression=where)
    if len(name) > MAX_VALUE_LENGTH:
        raise InvalidRequest(f"A parameter name is longer than {MAX_VALUE_LENGTH} characters",
                             expression=name[:64])


def _modifier_ok(param: SearchParam, modifier: str) -> bool:
    if modifier in param.modifiers:
        return True
    return param.type == "reference" and re.fullmatch(r"[A-Z][A-Za-z]+", modifier) is not None


def _result_parameter(query: SearchQuery, name: str, raw: str, registry: Registry, lenient: bool) -> None:
    if name == "_count":
        query.count = min(parse_integer(raw, name), MAX_COUNT)
    elif name == "_offset":
        query.offset = parse_integer(raw, name)
        if query.offset > MAX_OFFSET:
            raise InvalidRequest(f"_offset goes up to {MAX_OFFSET}, not {query.offset}: a larger offset makes the "
                                 f"database step over every match before it. Follow the search's next links "
                                 f"instead, which page by position (keyset) however far they go",
                                 expression=name)
    elif name == "_sort":
        keys = [key for key in raw.split(",") if key]
        if len(keys) > MAX_SORT_KEYS:
            raise InvalidRequest(f"_sort takes at most {MAX_SORT_KEYS} keys, not {len(keys)}", expression=name)
        query.sort = [_sort_key(query.resource_type, key, registry) for key in keys]
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
    is not ours: not base64 JSON, or not a list of at most MAX_SORT_KEYS index values (strings of at
    most TOKEN_LENGTH characters without control characters, numbers, nulls) followed by a primary
    key (an integer from 0 to 2^63 - 1).  Whether the values fit the search's sort keys is checked
    once the whole search is read (:func:`parse_search`)."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidRequest(_NOT_OURS.format(name=name), expression=name) from exc
    if not (isinstance(values, list) and 1 <= len(values) <= MAX_SORT_KEYS + 1
            and all(_index_value(v) for v in values[:-1]) and _primary_key(values[-1])):
        raise InvalidRequest(_NOT_OURS.format(name=name), expression=name)
    return tuple(values)


def _index_value(value) -> bool:
    if isinstance(value, str):
        return len(value) <= TOKEN_LENGTH and not _FORBIDDEN_TEXT.search(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -MAX_INTEGER <= value <= MAX_INTEGER
    return value is None or isinstance(value, float)  # orjson reads no NaN or infinity


def _primary_key(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INTEGER


def _check_position(values: tuple, sort: list[SortKey], name: str) -> None:
    """InvalidRequest unless ``values`` holds one value of each sort key's type (a number for a
    number parameter, a string otherwise; null for a resource without one) and the primary key."""
    if len(values) != len(sort) + 1:
        raise InvalidRequest(_NOT_OURS.format(name=name) + " (it does not belong to this search)",
                             expression=name)
    for key, value in zip(sort, values):
        wanted = (int, float) if key.param.type == "number" else str
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            raise InvalidRequest(_NOT_OURS.format(name=name) + " (it does not belong to this search)",
                                 expression=name)


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
    parts = _split_or(raw, name)
    if len(parts) > MAX_OR_VALUES:
        raise InvalidRequest(f"{name} has {len(parts)} values joined by ',' (OR); at most {MAX_OR_VALUES} are "
                             f"taken", expression=name)
    long = next((p for p in parts if len(p) > MAX_VALUE_LENGTH), None)
    if long is not None:
        raise InvalidRequest(f"A value of {name} is {len(long)} characters long; at most {MAX_VALUE_LENGTH} "
                             f"are taken", expression=name)
    if param.type == "composite":
        values = tuple(_composite_value(param, part, name) for part in parts)
    else:
        values = tuple(_value(param, modifier, part, name) for part in parts)
    if not values:
        raise InvalidRequest(f"{name} needs a value", expression=name)
    return Clause(param, modifier, values)


def _split_or(raw: str, name: str) -> list[str]:
    """The non-empty values of ``raw`` split on commas no backslash escapes, their escapes kept
    (the token ``|`` and composite ``$`` are split on later); InvalidRequest naming ``name`` for a
    backslash that escapes nothing the FHIR search page lets it escape."""
    for escape in _ESCAPE_RE.finditer(raw):
        if escape.group(1) == "":
            raise InvalidRequest(f"{name} ends in a backslash that escapes nothing; write \\\\ for a "
                                 f"backslash", expression=name)
        if escape.group(1) not in ESCAPABLE:
            raise InvalidRequest(f"{name} has a backslash before {escape.group(1)!r}: a backslash escapes only "
                                 f"',', '$', '|' and itself (write \\\\ for a backslash)", expression=name)
    return [part for part in split_escaped(raw, ",") if part != ""]


def split_escaped(text: str, separator: str) -> list[str]:
    """``text`` split on each ``separator`` no backslash escapes, the escapes kept."""
    parts, start, position = [], 0, 0
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if char == separator:
            parts.append(text[start:position])
            start = position + 1
        position += 1
    parts.append(text[start:])
    return parts


def unescape(text: str) -> str:
    """``text`` with its search escapes (``\\,``, ``\\$``, ``\\|``, ``\\\\``) resolved."""
    return _ESCAPE_RE.sub(lambda m: m.group(1), text) if "\\" in text else text


def _composite_value(param: SearchParam, raw: str, name: str) -> CompositeValue:
    parts = split_escaped(raw, "$")
    if len(parts) != len(param.components):
        codes = "$".join(c.code for c in param.components)
        raise InvalidRequest(f"{name} takes {len(param.components)} values joined by '$' ({codes}), "
                             f"not {unescape(raw)!r}", expression=name)
    try:
        return CompositeValue(tuple(_PARSERS[c.type](part, None) for c, part in zip(param.components, parts)))
    except BadValue as exc:
        raise InvalidRequest(f"Bad value for {name}: {exc}", expression=name) from exc


def _value(param: SearchParam, modifier: str | None, raw: str, name: str):
    try:
        return _PARSERS[param.type](raw, modifier)
    except BadValue as exc:
        raise InvalidRequest(f"Bad value for {name}: {exc}", expression=name) from exc


# Each parser takes one value with its escapes still in (see split_escaped) and resolves them.


def _token_value(raw: str, modifier: str | None) -> TokenValue:
    if modifier == "text":
        return TokenValue(None, None, text=normalized_prefix(unescape(raw), STRING_INDEX_LENGTH))
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return TokenValue(None, cut_key(unescape(raw)))
    system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
    return TokenValue(cut_key(system) if system else None, cut_key(code) if code else None,
                      no_system=(system == ""))


def _string_value(raw: str, modifier: str | None) -> StringValue:
    text = unescape(raw)
    return StringValue(normalized_prefix(text, STRING_KEEP_LENGTH), text)


def _reference_value(raw: str, modifier: str | None) -> ReferenceValue:
    raw = unescape(raw)
    target_type, target_id = split_reference(raw)
    if target_id is None:
        if "/" in raw or ":" in raw:
            return ReferenceValue(None, None, cut_key(raw.split("|")[0]))
        return ReferenceValue(modifier, cut_key(raw, ID_LENGTH), None)
    if modifier and modifier != target_type:
        raise BadValue(f"{raw!r} is not a {modifier}")
    is_url = raw.startswith(("http://", "https://", "urn:"))
    return ReferenceValue(cut_key(target_type, ID_LENGTH), cut_key(target_id, ID_LENGTH),
                          cut_key(raw) if is_url else None)


def _split_prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in PREFIXES and len(raw) > 2 and not raw[2:3].isalpha():
        return raw[:2], raw[2:]
    return "eq", raw


def _date_value(raw: str, modifier: str | None) -> RangeValue:
    prefix, text = _split_prefix(unescape(raw))
    low, high = date_range(text.replace(" ", "+"))  # an unescaped "+" in a query string is a space
    return RangeValue(prefix, low, high)


def _number_value(raw: str, modifier: str | None) -> RangeValue:
    prefix, text = _split_prefix(unescape(raw))
    if not _NUMBER_RE.fullmatch(text):
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
    return UriValue(cut_key(unescape(raw)))


_PARSERS = {
    "token": _token_value,
    "string": _string_value,
    "reference": _reference_value,
    "date": _date_value,
    "number": _number_value,
    "uri": _uri_value,
}

