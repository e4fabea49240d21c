"""Index rows of a resource, one table per search-parameter type (after HAPI FHIR's
``ResourceIndexedSearchParamToken``, ``...String``, ``...Date`` and so on).

:func:`index_rows` evaluates every served parameter of the resource's type and turns each value
into rows according to the parameter type and the value's FHIR type (or, when unknown, its JSON
shape).  The same normalisation functions are used by :mod:`fhirstudy.search.query` so that what is
written and what is asked for always agree.

Row shapes (``param`` is the search parameter code):

- token:     param, system, code, text   (text: normalised CodeableConcept.text / Coding.display)
- string:    param, value, full, exact   (value: normalised, cut to STRING_INDEX_LENGTH; full:
             the whole normalised text when value was cut, else None; exact: as written)
- reference: param, target_type, target_id, url
- date:      param, low, high            (UTC instants, ``YYYY-MM-DDTHH:MM:SS.mmm``)
- number:    param, value
- uri:       param, uri
- composite: param, grp, comp, system, code, text, low, high, num   (one row per value of each
             component ``comp`` of item ``grp`` of the composite's expression; the columns of
             the component's type are set, the others None)
"""
from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from fhirstudy.search.fhirpath import Item
from fhirstudy.search.registry import SearchParam

STRING_INDEX_LENGTH = 200  # longer strings are cut in the indexed column, kept whole in ``full``
TOKEN_LENGTH = 255
LOW_INSTANT = "0001-01-01T00:00:00.000"
HIGH_INSTANT = "9999-12-31T23:59:59.999"
# The parts of complex datatypes a string parameter searches (HumanName, Address, Annotation...).
STRING_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
                "postalCode", "country")

_DATE_RE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class BadValue(ValueError):
    """A value that cannot be read as the type asked for (e.g. a malformed date)."""


# ---------------------------------------------------------------------------------------------
# normalisation shared with query parsing


def normalize(text: str) -> str:
    """Lower-case ``text`` and strip accents (NFKD, combining marks removed)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def format_instant(moment: datetime) -> str:
    """``moment`` (UTC) as the fixed-width string stored in date columns."""
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}")


def date_range(text: str) -> tuple[str, str]:
    """The low and high UTC instants a FHIR date/dateTime/instant covers, given its precision.

    ``2024-03`` covers ``2024-03-01T00:00:00.000`` to ``2024-03-31T23:59:59.999``.  Values without
    a time zone are read as UTC.  Raises :class:`BadValue` for anything else.
    """
    match = _DATE_RE.match(text.strip())
    if not match:
        raise BadValue(f"not a FHIR date: {text!r}")
    part = {k: (int(v) if v and k not in ("fraction", "tz") else v) for k, v in match.groupdict().items()}
    try:
        low = datetime(part["year"], part["month"] or 1, part["day"] or 1, part["hour"] or 0,
                       part["minute"] or 0, part["second"] or 0,
                       int((part["fraction"] or "0")[:6].ljust(6, "0")))
    except ValueError as exc:
        raise BadValue(f"not a valid date: {text!r}") from exc
    if part["month"] is None:
        high = low.replace(year=low.year + 1) if low.year < 9999 else None
    elif part["day"] is None:
        high = low + timedelta(days=calendar.monthrange(low.year, low.month)[1])
    elif part["hour"] is None:
        high = low + timedelta(days=1)
    elif part["second"] is None:
        high = low + timedelta(minutes=1)
    elif part["fraction"] is None:
        high = low + timedelta(seconds=1)
    else:
        high = low + timedelta(milliseconds=1) - timedelta(microseconds=low.microsecond % 1000)
    tz = part["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
        low, high = low - offset, (high - offset if high else None)
    low_text = format_instant(low.replace(tzinfo=None))
    high_text = format_instant(high - timedelta(milliseconds=1)) if high else HIGH_INSTANT
    return low_text, high_text


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


def _token(system: str | None, code: Any, text: str | None = None) -> dict | None:
    return {
        "system": system[:TOKEN_LENGTH] if system else None,
        "code": str(code)[:TOKEN_LENGTH] if code not in (None, "") else None,
        "text": normalize(text)[:STRING_INDEX_LENGTH] if text else None,
    }


def _string_rows(item: Item) -> Iterable[dict]:
    value = item.value
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, dict):
        texts = []
        for part in STRING_PARTS:
            part_value = value.get(part)
            texts.extend(part_value if isinstance(part_value, list) else [part_value])
    else:
        return
    for text in texts:
        if isinstance(text, str) and text:
            full = normalize(text)
            cut = full[:STRING_INDEX_LENGTH]
            yield {"value": cut, "full": full if len(full) > len(cut) else None, "exact": text}


def _reference_rows(item: Item) -> Iterable[dict]:
    value = item.value
    reference = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(reference, str) or not reference or reference.startswith("#"):
        return
    target_type, target_id = split_reference(reference)
    yield {"target_type": target_type, "target_id": target_id, "url": reference.split("|")[0]}


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


def _number_rows(item: Item) -> Iterable[dict]:
    value = item.value
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        yield {"value": float(value)}


def _uri_rows(item: Item) -> Iterable[dict]:
    if isinstance(item.value, str) and item.value:
        yield {"uri": item.value}


ROWS_BY_TYPE = {
    "token": _token_rows,
    "string": _string_rows,
    "reference": _reference_rows,
    "date": _date_rows,
    "number": _number_rows,
    "uri": _uri_rows,
}


_COMPOSITE_EMPTY = {"system": None, "code": None, "text": None, "low": None, "high": None, "num": None}


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
                        row = {"num": row["value"]}
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
