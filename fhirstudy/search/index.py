"""Index rows of a resource, one table per search-parameter type (after HAPI FHIR's
``ResourceIndexedSearchParamToken``, ``...String``, ``...Date`` and so on).

:func:`index_rows` evaluates every served parameter of the resource's type and turns each value
into rows according to the parameter type and the value's FHIR type (or, when unknown, its JSON
shape).  The same normalisation functions are used by :mod:`fhirstudy.search.query` so that what is
written and what is asked for always agree.

Row shapes (``param`` is the search parameter code):

- token:     param, system, code, text   (text: normalised CodeableConcept.text / Coding.display;
             system and code cut to TOKEN_LENGTH, text to STRING_INDEX_LENGTH)
- string:    param, value, full, exact, part   (value: normalised, cut to STRING_INDEX_LENGTH; full:
             the normalised text up to STRING_KEEP_LENGTH characters when value was cut, else
             None; exact: as written, None when longer than STRING_KEEP_LENGTH; part: which of
             registry.STRING_PARTS of an Address or HumanName it is, 1 on, 0 for a plain string)
- reference: param, target_type, target_id, url   (type and id cut to ID_LENGTH, url to TOKEN_LENGTH)
- date:      param, low, high            (UTC instants, ``YYYY-MM-DDTHH:MM:SS.mmm``)
- number:    param, value, low, high   (value: a number; low/high: what a Range or a Quantity
             with a comparator admits, value None)
- uri:       param, uri                  (cut to TOKEN_LENGTH)
- special:   param, latitude, longitude, x, y, z, cell, source   (``near``: a position in WGS84
             degrees, its unit vector and its grid cell, :mod:`fhirstudy.search.geo`; the one
             special parameter indexed; ``source``: the id of the resource a linked parameter
             read it from, ``site-near``'s site, None for a resource's own)

Text in index rows never holds the C0 control characters FHIR strings forbid (:func:`clean`).
- composite: param, grp, comp, system, code, text, low, high, num, num_low, num_high (one row per value of each
             component ``comp`` of item ``grp`` of the composite's expression; the columns of
             the component's type are set, the others None)
"""
from __future__ import annotations

import calendar
import math
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Iterable

from fhirstudy.search.fhirpath import Item
from fhirstudy.search.index_near import linked_positions, linked_walk, position_rows
from fhirstudy.search.registry import STRING_PARTS, SearchParam
from fhirstudy.search.units import canonical
from fhirstudy.terminology import normalize_text

STRING_INDEX_LENGTH = 200  # longer strings are cut in the indexed column, kept (up to a limit) in ``full``
# What a string row keeps beyond ``value``: ``full``, the first STRING_KEEP_LENGTH characters of
# the normalised text, and ``exact``, the text as written when it is at most that long (a longer
# one equals no search value: those are at most limits.MAX_VALUE_LENGTH characters).
STRING_KEEP_LENGTH = 8192
TOKEN_LENGTH = 255  # systems, codes, uris and reference urls: compared on their first 255 characters
ID_LENGTH = 64  # reference target types and ids
LOW_INSTANT = "0001-01-01T00:00:00.000"
HIGH_INSTANT = "9999-12-31T23:59:59.999"

_DATE_RE = re.compile(
    r"(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
_MS_PER_DAY = 86_400_000
_LOW_MS = 0  # LOW_INSTANT in milliseconds from 0001-01-01T00:00:00.000
_HIGH_MS = date(9999, 12, 31).toordinal() * _MS_PER_DAY - 1  # HIGH_INSTANT
_MAX_OFFSET_MINUTES = 14 * 60  # time zones run from -14:00 to +14:00
# Texts whose columns are remembered (dates, tokens, strings: the same status, system, profile
# and date come back in every resource of a trial and across trials, and a load computes the
# rows of each again): at most VALUE_CACHE_SIZE of them, none longer than CACHED_TEXT_LENGTH (a
# long text seldom comes back), so a load's memory stays flat (a few MB).
VALUE_CACHE_SIZE = 8192
CACHED_TEXT_LENGTH = 256
# C0 control characters FHIR strings may not hold (tab, line feed and carriage return they may);
# PostgreSQL cannot store NUL in text at all.
_FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


class BadValue(ValueError):
    """A value that cannot be read as the type asked for (e.g. a malformed date)."""


# ---------------------------------------------------------------------------------------------
# normalisation shared with query parsing


def normalize(text: str) -> str:
    """``text`` case-folded and without accents (:func:`fhirstudy.terminology.normalize_text`,
    the one normalisation of index rows, search values and terminology)."""
    return normalize_text(text)


def normalized_prefix(text: str, length: int) -> str:
    """The first ``length`` characters of ``normalize(text)``, normalising no more of ``text`` than
    that needs (normalisation works character by character once combining marks are gone, so
    the pieces join up exactly)."""
    pieces, size, position = [], 0, 0
    while size < length and position < len(text):
        piece = normalize(text[position:position + length])
        pieces.append(piece)
        size += len(piece)
        position += length
    return "".join(pieces)[:length]


def cut_key(text: str, length: int = TOKEN_LENGTH) -> str:
    """``text`` as an index key column holds it (and a search value is compared with it): its
    first ``length`` characters."""
    return text[:length]


def clean(text: str) -> str:
    """``text`` without the C0 control characters FHIR strings forbid (index rows never hold them)."""
    return _FORBIDDEN_CONTROLS.sub("", text) if _FORBIDDEN_CONTROLS.search(text) else text


def format_instant(moment: datetime) -> str:
    """``moment`` (UTC) as the fixed-width string stored in date columns."""
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}")


def _format_ms(ms: int) -> str:
    """Milliseconds from LOW_INSTANT as a date-column string."""
    days, rest = divmod(ms, _MS_PER_DAY)
    day = date.fromordinal(days + 1)
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}"


def date_range(text: str) -> tuple[str, str]:
    """The low and high UTC instants a FHIR date/dateTime/instant covers, given its precision.

    ``2024-03`` covers ``2024-03-01T00:00:00.000`` to ``2024-03-31T23:59:59.999``.  Values without
    a time zone are read as UTC.  A range reaching past the calendar FHIR dates live in (years
    0001 to 9999: ``0001-01-01T00:00+05:00``, ``9999-12-31T23:59:59-12:00``) is clamped to
    LOW_INSTANT..HIGH_INSTANT.  Raises :class:`BadValue` for anything else, and nothing but that.
    """
    if not isinstance(text, str):
        raise BadValue(f"not a FHIR date: {text!r}")
    return _date_range(text) if len(text) <= CACHED_TEXT_LENGTH else _date_range.__wrapped__(text)


@lru_cache(maxsize=VALUE_CACHE_SIZE)
def _date_range(text: str) -> tuple[str, str]:
    match = _DATE_RE.fullmatch(text.strip())
    if not match:
        raise BadValue(f"not a FHIR date: {text!r}")
    part = match.groupdict()
    year, month, day = int(part["year"]), int(part["month"] or 1), int(part["day"] or 1)
    try:
        start = datetime(year, month, day, int(part["hour"] or 0), int(part["minute"] or 0),
                         int(part["second"] or 0))
    except ValueError as exc:
        raise BadValue(f"not a valid date: {text!r}") from exc
    low = ((start.toordinal() - 1) * _MS_PER_DAY
           + ((start.hour * 60 + start.minute) * 60 + start.second) * 1000)
    if part["month"] is None:
        end = date(year, 12, 31).toordinal() * _MS_PER_DAY
    elif part["day"] is None:
        end = date(year, month, calendar.monthrange(year, month)[1]).toordinal() * _MS_PER_DAY
    elif part["hour"] is None:
        end = start.toordinal() * _MS_PER_DAY
    elif part["second"] is None:
        end = low + 60_000
    elif part["fraction"] is None:
        end = low + 1000
    else:
        low += int(part["fraction"][:3].ljust(3, "0"))
        end = low + 1
    offset = _offset_ms(part["tz"], text)
    low, high = low - offset, end - 1 - offset
    return (_format_ms(min(max(low, _LOW_MS), _HIGH_MS)), _format_ms(min(max(high, _LOW_MS), _HIGH_MS)))


def _offset_ms(tz: str | None, text: str) -> int:
    """The time-zone offset ``+hh:mm``/``-hh:mm`` in milliseconds (0 for ``Z`` or none)."""
    if not tz or tz == "Z":
        return 0
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if minutes > 59 or hours * 60 + minutes > _MAX_OFFSET_MINUTES:
        raise BadValue(f"not a time zone (-14:00 to +14:00): {text!r}")
    return (hours * 60 + minutes) * 60_000 * (1 if tz[0] == "+" else -1)


def now_instant() -> str:
    """The current time as a FHIR instant (UTC, milliseconds, ``Z``)."""
    return format_instant(datetime.now(timezone.utc)) + "Z"


def split_reference(reference: str) -> tuple[str | None, str | None]:
    """``(type, id)`` of a literal reference: ``Location/1``, ``http://x/fhir/Location/1/_history/2``."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and re.fullmatch(r"[A-Z][A-Za-z]+", parts[-2]) and parts[-1]:
        return parts[-2], parts[-1]
    return None, None


# ---------------------------------------------------------------------------------------------
# rows per parameter type


def _shape(item: Item) -> str | None:
    value = item.value
    if item.type:
        return item.type
    if isinstance(value, dict):
        if "coding" in value:
            return "CodeableConcept"
        if "reference" in value:
            return "Reference"
        if "start" in value or "end" in value:
            return "Period"
        if "code" in value:
            return "Coding"
        if "value" in value:
            return "Identifier"
        return "CodeableConcept" if "text" in value else None
    return None


def _token_rows(item: Item) -> Iterable[dict]:
    value, shape = item.value, _shape(item)
    if isinstance(value, bool):
        yield _token(None, "true" if value else "false")
    elif isinstance(value, (str, int, float, Decimal)):
        yield _token(None, str(value))
    elif not isinstance(value, dict):
        return
    elif shape == "CodeableConcept":
        for coding in value.get("coding") or []:
            yield _token(coding.get("system"), coding.get("code"), coding.get("display"))
        if value.get("text"):
            yield _token(None, None, value["text"])
    elif shape == "Coding":
        yield _token(value.get("system"), value.get("code"), value.get("display"))
    elif shape == "ContactPoint":
        yield _token(None, value.get("value"))
    elif shape == "Identifier":
        yield _token(value.get("system"), value.get("value"), (value.get("type") or {}).get("text"))
    elif shape == "CodeableReference" and value.get("concept"):
        yield from _token_rows(Item(value["concept"], "CodeableConcept"))


def _token(system: Any, code: Any, text: Any = None) -> dict | None:
    if _cached(system) and _cached(code) and _cached(text):
        return dict(zip(("system", "code", "text"), _token_texts(system, code, text)))
    return _token_columns(system, code, text)


def _cached(value: Any) -> bool:
    """Whether the columns computed from ``value`` are remembered (:data:`VALUE_CACHE_SIZE`)."""
    return value is None or (type(value) is str and len(value) <= CACHED_TEXT_LENGTH)


@lru_cache(maxsize=VALUE_CACHE_SIZE)
def _token_texts(system: str | None, code: str | None, text: str | None) -> tuple:
    return tuple(_token_columns(system, code, text).values())


def _token_columns(system: Any, code: Any, text: Any) -> dict:
    system = clean(str(system)) if system not in (None, "") else None
    code = clean(str(code)) if code not in (None, "") else None
    text = clean(text) if isinstance(text, str) and text else None
    return {
        "system": cut_key(system) if system else None,
        "code": cut_key(code) if code else None,
        "text": normalized_prefix(text, STRING_INDEX_LENGTH) if text else None,
    }


def _string_rows(item: Item) -> Iterable[dict]:
    value = item.value
    if isinstance(value, str):
        texts = [(0, value)]
    elif isinstance(value, dict):
        texts = []
        for number, part in enumerate(STRING_PARTS, 1):
            part_value = value.get(part)
            texts.extend((number, t) for t in (part_value if isinstance(part_value, list) else [part_value]))
    else:
        return
    for number, text in texts:
        if isinstance(text, str) and text:
            yield {**string_row(text), "part": number}


def string_row(text: str) -> dict:
    """The columns of a string index row for ``text``: ``value`` (normalised, cut to
    STRING_INDEX_LENGTH), ``full`` (the normalised text up to STRING_KEEP_LENGTH characters, only
    when ``value`` was cut) and ``exact`` (as written, when at most STRING_KEEP_LENGTH long)."""
    texts = _string_texts(text) if len(text) <= CACHED_TEXT_LENGTH else _string_texts.__wrapped__(text)
    return dict(zip(("value", "full", "exact"), texts))


@lru_cache(maxsize=VALUE_CACHE_SIZE)
def _string_texts(text: str) -> tuple:
    text = clean(text)
    full = normalized_prefix(text, STRING_KEEP_LENGTH)
    value = full[:STRING_INDEX_LENGTH]
    return value, full if len(full) > len(value) else None, text if len(text) <= STRING_KEEP_LENGTH else None


def _reference_rows(item: Item) -> Iterable[dict]:
    value = item.value
    reference = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(reference, str) or not reference or reference.startswith("#"):
        return
    reference = clean(reference)
    target_type, target_id = split_reference(reference)
    yield {"target_type": cut_key(target_type, ID_LENGTH) if target_type else None,
           "target_id": cut_key(target_id, ID_LENGTH) if target_id else None,
           "url": cut_key(reference.split("|")[0])}


def _date_rows(item: Item) -> Iterable[dict]:
    value = item.value
    if isinstance(value, str):
        low, high = date_range(value)
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        low = date_range(value["start"])[0] if value.get("start") else LOW_INSTANT
        high = date_range(value["end"])[1] if value.get("end") else HIGH_INSTANT
    else:
        return
    yield {"low": low, "high": high}


_QUANTITY_TYPES = (None, "Quantity", "SimpleQuantity", "Age", "Duration", "Count", "Distance", "MoneyQuantity")


def _number_rows(item: Item) -> Iterable[dict]:
    """A number as ``value``; a Range, or a Quantity with a comparator, as the numbers it admits
    (``low``..``high``, None unbounded, strict bounds one float step inside) in the unit
    :func:`fhirstudy.search.units.canonical` gives (ages in years, counts in 10*9/L ...)."""
    value = item.value
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        yield {"value": float(value)}
    elif isinstance(value, dict) and ("low" in value or "high" in value) and item.type in ("Range", None):
        low, high = canonical(value.get("low")), canonical(value.get("high"))
        if low is not None or high is not None:
            yield {"value": None, "low": low, "high": high}
    elif isinstance(value, dict) and "value" in value and item.type in _QUANTITY_TYPES:
        number = canonical(value)
        if number is None:
            return
        comparator = value.get("comparator")
        if comparator is None:
            yield {"value": number}
        elif comparator in (">", ">="):
            yield {"value": None, "low": number if comparator == ">=" else math.nextafter(number, math.inf), "high": None}
        elif comparator in ("<", "<="):
            yield {"value": None, "low": None, "high": number if comparator == "<=" else math.nextafter(number, -math.inf)}


def _uri_rows(item: Item) -> Iterable[dict]:
    if isinstance(item.value, str) and item.value:
        yield {"uri": cut_key(clean(item.value))}


ROWS_BY_TYPE = {
    "token": _token_rows,
    "string": _string_rows,
    "reference": _reference_rows,
    "date": _date_rows,
    "number": _number_rows,
    "uri": _uri_rows,
    "special": position_rows,
}


_COMPOSITE_EMPTY = {"system": None, "code": None, "text": None, "low": None, "high": None, "num": None,
                    "num_low": None, "num_high": None}


def _composite_rows(param: SearchParam, resource: dict) -> Iterable[dict]:
    for group, item in enumerate(param.evaluate(resource)):
        for number, component in enumerate(param.components):
            seen = set()
            for value in component.expression.evaluate_on(item):
                try:
                    rows = list(ROWS_BY_TYPE[component.type](value))
                except BadValue:
                    continue
                for row in rows:
                    if component.type == "number":
                        row = {"num": row["value"], "num_low": row.get("low"), "num_high": row.get("high")}
                    elif component.type == "string":
                        row = {"text": row["value"]}
                    elif component.type in ("uri", "reference"):
                        row = {"code": row.get("uri") or row.get("url")}
                    key = tuple(sorted(row.items()))
                    if key not in seen:
                        seen.add(key)
                        yield {**_COMPOSITE_EMPTY, **row, "grp": group, "comp": number}


def index_rows(resource: dict, params: Iterable[SearchParam]) -> dict[str, list[dict]]:
    """Index rows of ``resource`` for ``params``, by parameter type (= index table).

    Each row carries ``param`` (the code).  Values that cannot be read (a malformed date) are
    skipped: validation is not the index's job.  Duplicate rows are dropped.
    """
    tables: dict[str, list[dict]] = {kind: [] for kind in (*ROWS_BY_TYPE, "composite")}
    for param in params:
        if param.type == "composite":
            tables["composite"].extend({"param": param.code, **row} for row in _composite_rows(param, resource))
            continue
        walk = linked_walk(param.expression.text) if param.type == "special" and param.via else None
        if walk is not None:
            tables["special"].extend({"param": param.code, **row} for row in linked_positions(resource, *walk))
            continue
        seen = set()
        for item in param.evaluate(resource):
            try:
                rows = list(ROWS_BY_TYPE[param.type](item))
            except BadValue:
                continue
            for row in rows:
                key = tuple(sorted(row.items()))
                if key not in seen:
                    seen.add(key)
                    tables[param.type].append({"param": param.code, **row})
    return tables
