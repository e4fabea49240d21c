"""Helpers shared by the ClinicalTrials.gov readers of the website CSV export and the legacy XML.

Both formats write enumerated values as display text ("Phase 1/Phase 2", "Active, not recruiting",
"Parallel Assignment") or, in newer exports, as API v2 names (``PHASE1``, ``ACTIVE_NOT_RECRUITING``).
``api_value`` turns either into the API v2 name the Trial uses, from the tables of
``mappings/ctgov-legacy-values.json``. Dates, free text and masking are read here too; roles, ages and
phones are the API v2 reader's (``_ctgov``), so all ClinicalTrials.gov readers agree on them. Everything is
a pure function of its arguments and of that table, which is loaded once.
"""
from __future__ import annotations

import datetime
import re
import textwrap
from functools import cache
from typing import Any

from ..errors import Problem
from ..terminology import load_mapping

TABLE = "ctgov-legacy-values.json"
TEXT = "#text"  # the legacy XML's view: an element's own text beside attributes or children
NCT_ID = re.compile(r"^NCT\d{8}$")

_MONTH_DATE = re.compile(r"^(?P<month>[A-Za-z]+)\.?\s+(?:(?P<day>\d{1,2}),?\s+)?(?P<year>\d{4})$")
_ISO_DATE = re.compile(r"^(?P<year>\d{4})(?:-(?P<month>\d{1,2})(?:-(?P<day>\d{1,2}))?)?$")
_DOWNLOAD_DATE = re.compile(r"([A-Za-z]+\.?\s+\d{1,2},?\s+\d{4})\s*$")
_MASKING = re.compile(r"^(?P<level>[^(]*?)\s*(?:\((?P<who>[^)]*)\)?)?\s*$")
_BULLET_LINE = re.compile(r"^(?:[-*•·–]|\d{1,3}[.)]|[a-zA-Z][.)]|\(\d{1,3}\))\s+")


class UnknownValue(ValueError):
    """A value that is neither legacy display text nor an API v2 name of its value set."""


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


@cache
def _lookup(section: str) -> dict[str, Any]:
    table = load_mapping(TABLE)[section]
    out: dict[str, Any] = {}
    for value in table.values():  # an API v2 name stands for itself
        if isinstance(value, str):
            out[_key(value)] = value
        elif isinstance(value, list) and len(value) == 1:
            out[_key(value[0])] = value
    out.update({_key(k): v for k, v in table.items()})
    return out


def table(section: str) -> dict[str, Any]:
    """One section of the table as written (legacy key -> API v2 value)."""
    return load_mapping(TABLE)[section]


def api_names(section: str) -> list[str]:
    """The API v2 names of one value set of the table, in table order, without duplicates."""
    names: list[str] = []
    for value in load_mapping(TABLE)[section].values():
        for name in value if isinstance(value, list) else [value]:
            if str(name) not in names:
                names.append(str(name))
    return names


def api_value(section: str, raw: str | None) -> Any:
    """The API v2 name (or list of names, for ``phase``; a bool for ``yesNo``) of a legacy display
    text or API name, case and spacing ignored; None for empty input. Raises ``UnknownValue``."""
    if raw is None or not raw.strip():
        return None
    try:
        return _lookup(section)[_key(raw)]
    except KeyError:
        raise UnknownValue(f"unknown value {raw.strip()!r} (expected one of {', '.join(api_names(section))})") \
            from None


def read_value(section: str, raw: str | None, field: str, source: str, problems: list[Problem],
               severity: str = "error") -> Any:
    """``api_value`` that reports an unknown value as a Problem (naming the Trial ``field`` and the
    ``source`` column or element) and returns None for it."""
    try:
        return api_value(section, raw)
    except UnknownValue as exc:
        note = "" if severity == "error" else "; left empty"
        problems.append(Problem(f"{source}: {exc}{note}", field=field, severity=severity))
        return None


def partial_date(raw: str | None) -> str | None:
    """A registry date as ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``: "March 2014" -> "2014-03",
    "March 3, 2014" -> "2014-03-03", "2014-03-03" unchanged; None for empty input. Raises
    ValueError when it is not a date."""
    if raw is None or not raw.strip():
        return None
    text = " ".join(raw.split())
    m = _ISO_DATE.match(text)
    if m:
        year, month, day = m.group("year"), m.group("month"), m.group("day")
    else:
        m = _MONTH_DATE.match(text)
        months = {k.casefold(): v for k, v in load_mapping(TABLE)["month"].items()}
        month_number = months.get(m.group("month").casefold()) if m else None
        if month_number is None:
            raise ValueError(f"not a date: {text!r}")
        year, month, day = m.group("year"), str(month_number), m.group("day")
    if month is None:
        return year
    try:
        datetime.date(int(year), int(month), int(day or 1))
    except ValueError:
        raise ValueError(f"not a date: {text!r}") from None
    return f"{year}-{int(month):02d}" + (f"-{int(day):02d}" if day else "")


def download_date(raw: str | None) -> str | None:
    """The date of a legacy ``<download_date>`` ("ClinicalTrials.gov processed this data on May
    09, 2023" -> "2023-05-09"), or None when it names none."""
    m = _DOWNLOAD_DATE.search(raw or "")
    if not m:
        return None
    try:
        return partial_date(m.group(1))
    except ValueError:
        return None


def block_text(raw: str | None) -> str | None:
    """Free text with its line structure kept: line breaks normalised (CRLF and escaped ``&#xD;``
    CRs become one newline), common indentation removed, surrounding blank lines stripped."""
    if raw is None:
        return None
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = textwrap.dedent(text).strip("\n").rstrip()
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip() or None


def paragraphs(raw: str | None) -> str | None:
    """Free text re-flowed: lines wrapped by the registry are joined, paragraphs are separated by
    one blank line, and bullet lines ("-  item") start a line of their own."""
    text = block_text(raw)
    if text is None:
        return None
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines: list[str] = []
        for line in para.split("\n"):
            line = " ".join(line.split())
            if not line:
                continue
            if lines and not _BULLET_LINE.match(line):
                lines[-1] = f"{lines[-1]} {line}"
            else:
                lines.append(line)
        if lines:
            out.append("\n".join(lines))
    return "\n\n".join(out) or None


def one_line(raw: str | None) -> str | None:
    """Text with all whitespace runs collapsed to single spaces; None when empty."""
    if raw is None:
        return None
    return " ".join(raw.split()) or None


def masking(raw: str | None, source: str, problems: list[Problem]) -> tuple[str | None, list[str]]:
    """The masking level and who is masked, from "Double (Participant, Investigator)" or
    "TRIPLE (PARTICIPANT, CARE_PROVIDER, INVESTIGATOR)" or "None (Open Label)"; unknown parts are
    reported as warnings and left out."""
    if raw is None or not raw.strip():
        return None, []
    try:  # "None (Open Label)" is a value of its own
        return api_value("masking", raw), []
    except UnknownValue:
        pass
    m = _MASKING.match(" ".join(raw.split()))
    level = read_value("masking", m.group("level"), "masking", source, problems, "warning")
    who = []
    for part in (m.group("who") or "").split(","):
        value = read_value("whoMasked", part, "who_masked", source, problems, "warning")
        if value and value not in who:
            who.append(value)
    return level, who


def element_text(f, key: str) -> str | None:
    """The text of the legacy XML element at ``key`` of the view ``f`` (a ``_fields.Fields``; its
    ``#text`` when it has attributes; the first when repeated where the schema allows one),
    marked used."""
    value = f.at(key)
    if value is None:
        return None
    if isinstance(value, list):
        f.mark(key)
        value = value[0]
    if isinstance(value, dict):
        f.mark(f"{key}.{TEXT}")
        return value.get(TEXT)
    f.mark(key)
    return value
