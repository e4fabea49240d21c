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

import re
from dataclasses import dataclass, field
from typing import Iterable

from fhirstudy.errors import InvalidRequest
from fhirstudy.limits import (MAX_INCLUDES, MAX_OFFSET, MAX_OR_VALUES, MAX_RESULT_PARAMETERS, MAX_SEARCH_CLAUSES,
                              MAX_SEARCH_VALUES, MAX_SORT_KEYS, MAX_VALUE_LENGTH, parse_integer)
from fhirstudy.search.cursor import MAX_CURSOR_LENGTH, check_position, decode_cursor, encode_cursor
from fhirstudy.search.registry import Registry, SearchParam
from fhirstudy.search.values import (ESCAPABLE, FORBIDDEN_TEXT, PREFIXES, CompositeValue, NearValue, RangeValue,
                                     ReferenceValue, StringValue, TokenValue, UriValue, composite_value,
                                     parse_value, split_escaped, split_or, unescape)

__all__ = [  # the values and cursor rooms' names stay importable from here
    "CompositeValue", "Clause", "DEFAULT_COUNT", "ESCAPABLE", "Include", "MAX_COUNT", "MAX_CURSOR_LENGTH", "NearValue",
    "PREFIXES", "RESULT_PARAMETERS", "RangeValue", "ReferenceValue", "SUMMARY_VALUES", "SearchQuery", "SortKey",
    "StringValue", "TOTAL_VALUES", "TokenValue", "UriValue", "decode_cursor", "encode_cursor", "parse_search",
    "split_escaped", "unescape",
]

DEFAULT_COUNT = 20
MAX_COUNT = 500
# Result parameters we honour; ``_format`` and ``_pretty`` are the server's business.
RESULT_PARAMETERS = ("_count", "_offset", "_sort", "_total", "_summary", "_format", "_pretty", "_elements",
                     "_include", "_revinclude", "_include:iterate", "_revinclude:iterate", "_cursor",
                     "_before")
SUMMARY_VALUES = ("true", "text", "data", "count", "false")
TOTAL_VALUES = ("none", "estimate", "accurate")
# Element names for _elements: a top-level element of the resource (no paths into it).
_ELEMENT_RE = re.compile(r"^[a-z][A-Za-z0-9]*$")
_TYPE_RE = re.compile(r"[A-Z][A-Za-z]+")
_INCLUDE_PARAMETERS = ("_include", "_revinclude", "_include:iterate", "_revinclude:iterate")


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
    """One occurrence of a search parameter: the values are ORed.

    A chained clause (``site.address-city=Boston``, ``site:Location.near=...``) has the reference
    parameter as ``param``, the ``:Type`` modifier (or None) as ``modifier``, no values, and in
    ``chain`` one clause per type it may point at that serves the chained parameter (ORed: a site
    in Boston that is a Location or an Organization).  A reverse chain (``_has:ResearchStudy:site:
    status=active`` on Location) has ``reverse`` set, the pointing type's reference parameter as
    ``param`` and its one clause in ``chain``.
    """

    param: SearchParam
    modifier: str | None
    values: tuple
    missing: bool | None = None  # for ``:missing``
    chain: tuple["Clause", ...] = ()
    reverse: bool = False


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
        if name.startswith("_has:") or "." in name:
            chained, problem = (_reverse_chain if name.startswith("_has:") else _chain)(
                resource_type, name, raw, registry)
            if chained is None:
                if lenient:
                    query.ignored.append(name)
                    continue
                raise InvalidRequest(f"Unknown search parameter {name!r} for {resource_type}: {problem}",
                                     expression=name)
            query.clauses.append(chained)
            query.echo.append((name, raw))
            values += max(max(1, len(c.values)) * max(1, len(c.param.components)) for c in chained.chain or [chained])
            if values > MAX_SEARCH_VALUES:
                raise InvalidRequest(f"A search takes at most {MAX_SEARCH_VALUES} values in all its search "
                                     f"parameters together; this one has more", expression=name)
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
        values += max(1, len(query.clauses[-1].values)) * max(1, len(param.components))  # a composite: each part
        if values > MAX_SEARCH_VALUES:
            raise InvalidRequest(f"A search takes at most {MAX_SEARCH_VALUES} values in all its search parameters "
                                 f"together; this one has more", expression=name)
    if query.summary == "count":
        query.count, query.total = 0, "accurate"
    for name, position in (("_cursor", query.cursor), ("_before", query.before)):
        if position is not None:
            check_position(position, query.sort, name)
    return query


def _check_text(name: str, raw: str) -> None:
    """InvalidRequest when the parameter's name or value holds a character no FHIR string may."""
    for text in (name, raw):
        bad = FORBIDDEN_TEXT.search(text)
        if bad:
            where = name.encode("unicode_escape").decode("ascii") if text is name else name
            raise InvalidRequest(f"{where} holds the character U+{ord(bad.group()):04X} at {bad.start()}, "
                                 f"which FHIR strings may not contain", expression=where)
    if len(name) > MAX_VALUE_LENGTH:
        raise InvalidRequest(f"A parameter name is longer than {MAX_VALUE_LENGTH} characters",
                             expression=name[:64])


def _chain(resource_type: str, name: str, raw: str, registry: Registry) -> tuple[Clause | None, str]:
    """``reference[:Type].code[:modifier]``: a clause on the resources the reference points at
    (one level), or None and why not."""
    head, _, tail = name.partition(".")
    code, _, target = head.partition(":")
    param = registry.get(resource_type, code)
    if param is None or param.type != "reference":
        return None, f"{code!r} is not a reference search parameter of {resource_type}"
    if target and (not _TYPE_RE.fullmatch(target) or target not in registry.served_types
                   or (param.target and target not in param.target)):
        return None, f"{code} does not point at a {target!r}"
    if "." in tail:
        return None, "chains go one level deep (reference.parameter)"
    inner_code, _, inner_modifier = tail.partition(":")
    if inner_code.startswith("_has") or not inner_code:
        return None, f"{inner_code!r} cannot be chained"
    inner = []
    for rtype in [target] if target else [t for t in (param.target or registry.served_types)
                                          if t in registry.served_types]:
        inner_param = registry.get(rtype, inner_code)
        if inner_param is not None and (not inner_modifier or _modifier_ok(inner_param, inner_modifier)):
            inner.append(_clause(inner_param, inner_modifier or None, raw, name))
    if not inner:
        where = target or " or ".join(param.target) or "any type"
        return None, f"{where} has no search parameter {tail!r}"
    answer = None if inner_modifier else registry.answering(resource_type, f"{code}.{inner_code}")
    if answer is not None and all(c.param.type == answer.type for c in inner):
        return Clause(answer, None, inner[0].values), ""  # from the resource's own rows (registry.ANSWERS_CHAIN)
    return Clause(param, target or None, (), chain=tuple(inner)), ""


def _reverse_chain(resource_type: str, name: str, raw: str, registry: Registry) -> tuple[Clause | None, str]:
    """``_has:Type:reference:code[:modifier]``: resources that a ``Type`` meeting ``code`` points at
    with ``reference`` (one level), or None and why not."""
    parts = name.split(":")
    if len(parts) not in (4, 5):
        return None, "_has takes _has:Type:reference:parameter (one level)"
    _, source, code, inner_code, *modifier = parts
    param = registry.get(source, code) if source in registry.served_types else None
    if param is None or param.type != "reference" or (param.target and resource_type not in param.target):
        return None, f"{source} has no reference search parameter {code!r} pointing at {resource_type}"
    inner_param = registry.get(source, inner_code)
    if inner_param is None or (modifier and not _modifier_ok(inner_param, modifier[0])):
        return None, f"{source} has no search parameter {':'.join([inner_code, *modifier])!r}"
    return Clause(param, None, (), chain=(_clause(inner_param, modifier[0] if modifier else None, raw, name),),
                  reverse=True), ""


def _modifier_ok(param: SearchParam, modifier: str) -> bool:
    if modifier in param.modifiers:
        return True
    return param.type == "reference" and _TYPE_RE.fullmatch(modifier) is not None


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
    parts = split_or(raw, name)
    if len(parts) > MAX_OR_VALUES:
        raise InvalidRequest(f"{name} has {len(parts)} values joined by ',' (OR); at most {MAX_OR_VALUES} are "
                             f"taken", expression=name)
    long = next((p for p in parts if len(p) > MAX_VALUE_LENGTH), None)
    if long is not None:
        raise InvalidRequest(f"A value of {name} is {len(long)} characters long; at most {MAX_VALUE_LENGTH} "
                             f"are taken", expression=name)
    if param.type == "composite":
        values = tuple(composite_value(param, part, name) for part in parts)
    else:
        values = tuple(parse_value(param, modifier, part, name) for part in parts)
    if not values:
        raise InvalidRequest(f"{name} needs a value", expression=name)
    return Clause(param, modifier, values)


