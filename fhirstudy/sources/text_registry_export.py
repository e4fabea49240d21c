"""Reader of the ``text-registry-export`` layout: one field per line, in a fixed order.

    1 title
    2 brief summary
    3 conditions                  Breast Cancer|Breast Cancer Stage IV
    4 interventions               DRUG: Inetetamab|DRUG: Pyrotinib
    5 primary outcome measures    name, description, time frame|...
    6 secondary outcome measures  name, description, time frame|...
    7 detailed description        (further lines: more paragraphs of it)

An empty field is an empty line. The field a line holds is given by its position, so a line is
never guessed into another field; shapes are checked and a line of the wrong shape is an error.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from ..errors import Problem
from ..trial import INTERVENTION_TYPES
from ._text import (clean, derived_identifier, error, intervention_type, phases_from_text,
                    split_components)

FORMAT = "text-registry-export"
FIELDS = ("brief_title", "brief_summary", "conditions", "interventions", "primary_outcomes",
          "secondary_outcomes", "detailed_description")
_LINE = {name: i + 1 for i, name in enumerate(FIELDS)}
_INTERVENTIONS_LINE = re.compile(r"^[A-Z][A-Z_ ]*:\s*\S[^|]*(\|\s*[A-Z][A-Z_ ]*:\s*\S[^|]*)*$")
_TIME_WORDS = re.compile(
    r"\d|\b(years?|months?|weeks?|days?|hours?|minutes?|baseline|cycles?|until|through|end of|"
    r"visits?|follow|enrol|dates?|surgery|discharge|progression|death)", re.IGNORECASE)
_MAX_TIME_FRAME = 150
# A name/description boundary: ", " at parenthesis depth 0 followed by what starts a sentence.
_SENTENCE_START = re.compile(r"[A-Z0-9\"'“(]")


def detect(text: str) -> bool:
    """True when the text looks like a registry export: its fourth line is ``TYPE: name|...``
    with an upper-case type (or empty, with a ``name, description, time frame`` line after)."""
    lines = text.splitlines()
    if len(lines) < 4 or not lines[0].strip():
        return False
    if _INTERVENTIONS_LINE.match(lines[3].strip()):
        return True
    return not lines[3].strip() and any(
        line.count(", ") >= 2 and not line.lstrip().startswith(("-", "•")) for line in lines[4:6])


def _balanced(text: str) -> bool:
    return text.count("(") == text.count(")") and text.count("（") == text.count("）")


def _time_frame_like(text: str) -> bool:
    return len(text) <= _MAX_TIME_FRAME and _balanced(text) and bool(_TIME_WORDS.search(text))


def split_outcome(item: str) -> tuple[str, str | None, str]:
    """``name, description, time frame`` -> its three parts; raises ValueError without a time frame.

    The time frame is the last field: after the last ``"., "`` when what follows looks like a
    time frame (so a time frame may hold commas: "Until progression, assessed up to 24 months"),
    else after the last ``", "``. The name is the first field: it ends at the first ``", "`` outside
    parentheses that is followed by the start of a sentence (descriptions are sentences), else at
    the first ``", "``; full-width commas (``，``) never split. ``name, time frame`` is read as
    having no description when the second part looks like a time frame.
    """
    cut = item.rfind("., ")
    if cut != -1 and _time_frame_like(item[cut + 3:]):
        head, time_frame = item[: cut + 1], item[cut + 3:]
    elif ", " in item:
        cut = item.rfind(", ")
        head, time_frame = item[:cut], item[cut + 2:]
    else:
        raise ValueError("has no time frame (expected 'name, description, time frame')")
    time_frame = time_frame.strip()
    if not time_frame:
        raise ValueError("has an empty time frame")
    depth, boundary, first = 0, None, None
    for i, ch in enumerate(head):
        if ch in "(（[":
            depth += 1
        elif ch in ")）]":
            depth -= 1
        if head.startswith(", ", i) and depth <= 0:
            first = i if first is None else first
            if _SENTENCE_START.match(head, i + 2):
                boundary = i
                break
    boundary = boundary if boundary is not None else first
    if boundary is None:  # two fields: name and time frame, or name and description?
        if time_frame.endswith(".") or not _time_frame_like(time_frame):
            raise ValueError(f"has no time frame: {time_frame!r} reads as a description")
        return head.strip(), None, time_frame
    return head[:boundary].strip(), head[boundary + 2:].strip() or None, time_frame


def _outcomes(kind: str, line: str, lineno: int, problems: list[Problem]) -> list[dict]:
    out = []
    for n, item in enumerate(line.split("|"), start=1):
        item = item.strip()
        if not item:
            continue
        try:
            name, description, time_frame = split_outcome(item)
        except ValueError as exc:
            problems.append(error(f"line {lineno}, {kind} outcome {n} ({item[:60]!r}) {exc}",
                                  "outcomes"))
            continue
        out.append({"kind": kind, "name": name, "description": description, "time_frame": time_frame})
    return out


def _interventions(line: str, lineno: int, problems: list[Problem]) -> list[dict]:
    out = []
    for n, item in enumerate(line.split("|"), start=1):
        item = item.strip()
        if not item:
            continue
        raw_type, sep, name = item.partition(":")
        name = name.strip()
        if not sep or not name:
            problems.append(error(f"line {lineno}, intervention {n} ({item!r}) is not 'TYPE: name'",
                                  "interventions"))
            continue
        kind = intervention_type(raw_type)
        if kind is None:
            problems.append(error(
                f"line {lineno}, intervention {n}: unknown intervention type {raw_type.strip()!r} "
                f"(expected one of {', '.join(INTERVENTION_TYPES)})", "interventions"))
            continue
        out.append({"type": kind, "name": name, "components": split_components(name)})
    return out


def read(text: str, file: str) -> Iterator[tuple[dict, list[Problem]]]:
    """The one record of a registry-export file, as a ``TrialSchema`` dict (without provenance),
    with the problems found."""
    lines = [clean(line) for line in text.splitlines()]
    lines += [None] * (len(FIELDS) - len(lines))
    field = dict(zip(FIELDS, lines))
    extra = [line for line in lines[len(FIELDS):] if line]
    if extra:  # more lines than fields: further paragraphs of the detailed description
        field["detailed_description"] = "\n\n".join(filter(None, [field["detailed_description"], *extra]))
    problems: list[Problem] = []
    data: dict = {"identifiers": [], "unplaced": []}
    title = field["brief_title"]
    if title:
        data["brief_title"] = title
        data["identifiers"].append(derived_identifier(title))
    data["brief_summary"] = field["brief_summary"]
    data["detailed_description"] = field["detailed_description"]
    data["conditions"] = [c for c in (clean(c) for c in (field["conditions"] or "").split("|")) if c]
    data["interventions"] = _interventions(field["interventions"] or "", _LINE["interventions"],
                                           problems)
    data["outcomes"] = (
        _outcomes("primary", field["primary_outcomes"] or "", _LINE["primary_outcomes"], problems)
        + _outcomes("secondary", field["secondary_outcomes"] or "", _LINE["secondary_outcomes"],
                    problems))
    data["phases"], found = phases_from_text({"brief_title": title, "brief_summary": data["brief_summary"]})
    problems += found
    yield data, problems
