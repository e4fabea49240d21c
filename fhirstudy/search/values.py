"""Search values: one value of a search parameter, parsed by the parameter's type.

Each parser takes one value with its backslash escapes still in (FHIR search, escaping: ``\\,``,
``\\$``, ``\\|`` and ``\\\\`` only; :func:`split_escaped` splits on the others) and resolves them;
a malformed value raises :class:`fhirstudy.search.index.BadValue`, which :func:`parse_value`
turns into InvalidRequest naming the parameter.  Used by :mod:`fhirstudy.search.query`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fhirstudy.errors import InvalidRequest
from fhirstudy.search.geo import DEFAULT_NEAR_KM, Position, PositionError, position, to_km
from fhirstudy.search.index import (BadValue, ID_LENGTH, STRING_INDEX_LENGTH, STRING_KEEP_LENGTH, cut_key,
                                    date_range, normalized_prefix, split_reference)
from fhirstudy.search.registry import SearchParam
from fhirstudy.terminology import MESH_SYSTEM, load_mapping, mesh_descriptor_id

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_NUMBER_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
# C0 controls FHIR strings forbid (tab, LF and CR are allowed) and lone surrogates: no search
# value holds them (PostgreSQL cannot even store NUL in text).
FORBIDDEN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
ESCAPABLE = ",$|\\"  # what a backslash may escape in a search value (FHIR search, escaping)
_ESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)


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
class NearValue:
    """``near=lat|long|distance|unit``: the point, and the distance in km (see :mod:`fhirstudy.search.geo`)."""

    center: Position
    km: float


@dataclass(frozen=True)
class CompositeValue:
    """One value of a composite parameter: one value per component, in order (``a$b``)."""

    parts: tuple


def split_or(raw: str, name: str) -> list[str]:
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


def composite_value(param: SearchParam, raw: str, name: str) -> CompositeValue:
    parts = split_escaped(raw, "$")
    if len(parts) != len(param.components):
        codes = "$".join(c.code for c in param.components)
        raise InvalidRequest(f"{name} takes {len(param.components)} values joined by '$' ({codes}), "
                             f"not {unescape(raw)!r}", expression=name)
    try:
        return CompositeValue(tuple(_PARSERS[c.type](part, None) for c, part in zip(param.components, parts)))
    except BadValue as exc:
        raise InvalidRequest(f"Bad value for {name}: {exc}", expression=name) from exc


def parse_value(param: SearchParam, modifier: str | None, raw: str, name: str):
    try:
        if param.type == "token":
            return _token_value(raw, modifier, _mesh_codes(param))
        return _PARSERS[param.type](raw, modifier)
    except BadValue as exc:
        raise InvalidRequest(f"Bad value for {name}: {exc}", expression=name) from exc


# Each parser takes one value with its escapes still in (see split_escaped) and resolves them.


def _mesh_codes(param: SearchParam) -> bool:
    """Whether a code of ``param`` given without a system is a MeSH id (``mesh.json``)."""
    return f"{param.resource_type}.{param.code}" in load_mapping("mesh.json")["searchParameters"]["codes"]


def _token_value(raw: str, modifier: str | None, mesh_codes: bool = False) -> TokenValue:
    """A token; a MeSH id in NLM's form (as the readers write it) when the system is MeSH, or
    when none is given and ``mesh_codes`` (the parameter's codes are MeSH ids)."""
    if modifier == "text":
        return TokenValue(None, None, text=normalized_prefix(unescape(raw), STRING_INDEX_LENGTH))
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        code = unescape(raw)
        return TokenValue(None, cut_key(mesh_descriptor_id(code) if mesh_codes else code))
    system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
    if code and system == MESH_SYSTEM:
        code = mesh_descriptor_id(code)
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


def near_value(raw: str) -> NearValue:
    """What ``near=raw`` asks for: the point and the distance in km (BadValue when it is not one)."""
    return _near_value(raw, None)


def _near_value(raw: str, modifier: str | None) -> NearValue:
    """``[latitude]|[longitude]|[distance]|[units]``: distance and units may be left out
    (DEFAULT_NEAR_KM; km)."""
    parts = [unescape(part).strip() for part in split_escaped(raw, "|")]
    if not 2 <= len(parts) <= 4:
        raise BadValue(f"near takes latitude|longitude|distance|units (distance and units may be left out), "
                       f"not {unescape(raw)!r}")
    numbers = []
    for name, text in zip(("latitude", "longitude", "distance"), parts):
        if name == "distance" and text == "":
            break
        if not _NUMBER_RE.fullmatch(text):
            raise BadValue(f"the {name} is not a number: {text!r}")
        numbers.append(float(text))
    try:
        center = position(numbers[0], numbers[1])
        km = to_km(numbers[2], parts[3] if len(parts) > 3 else None) if len(numbers) > 2 else DEFAULT_NEAR_KM
        if len(numbers) == 2 and len(parts) > 3:
            to_km(1.0, parts[3])  # a unit without a distance: still refuse one we do not know
    except PositionError as exc:
        raise BadValue(str(exc)) from exc
    return NearValue(center, km)


def _uri_value(raw: str, modifier: str | None) -> UriValue:
    return UriValue(cut_key(unescape(raw)))


_PARSERS = {
    "token": _token_value,
    "string": _string_value,
    "reference": _reference_value,
    "date": _date_value,
    "number": _number_value,
    "uri": _uri_value,
    "special": _near_value,  # the one special parameter served: near (registry.SPECIAL_EXPRESSIONS)
}
