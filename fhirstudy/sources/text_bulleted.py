"""Reader of the ``text-bulleted`` layout: a title line, summary paragraph(s), then eligibility
criteria one per ``•`` bullet (all inclusion unless an "Exclusion Criteria:" heading says
otherwise).

The layout has no intervention or condition field. When the title names a drug combination
("Anlotinib Combined With Fulvestrant") or a disease ("in Patients With ... Breast Cancer"), the
reader derives them from it and reports each as inferred.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from ..errors import Problem
from ._text import (clean, condition_from_title, derived_identifier, eligibility_label,
                    intervention_from_title, phases_from_text, warning)

FORMAT = "text-bulleted"
_BULLET = re.compile(r"^\s*[•●▪◦·]\s*")


def detect(text: str) -> bool:
    """True when the text has a title line followed, somewhere, by ``•`` bullet lines."""
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) >= 2 and not _BULLET.match(lines[0]) and any(_BULLET.match(x) for x in lines[1:])


def read(text: str, file: str) -> Iterator[tuple[dict, list[Problem]]]:
    """The one record of a bulleted file, as a ``TrialSchema`` dict (without provenance), with the
    problems found."""
    problems: list[Problem] = []
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    data: dict = {"identifiers": [], "criteria": [], "unplaced": []}
    if lines and not _BULLET.match(lines[0][1]):
        title = clean(lines.pop(0)[1])
        data["brief_title"] = title
        data["identifiers"].append(derived_identifier(title))
    summary: list[str] = []
    while lines and not _BULLET.match(lines[0][1]) and not eligibility_label(lines[0][1]):
        summary.append(clean(lines.pop(0)[1]))
    data["brief_summary"] = "\n\n".join(summary) or None
    exclude = False
    for n, line in lines:
        label = eligibility_label(line)
        if label:
            exclude = label == "exclusion"
            continue
        if not _BULLET.match(line):
            problems.append(warning(f"line {n}: unbulleted line inside the criteria list read as a "
                                    "criterion of its own", "criteria"))
        text_ = clean(_BULLET.sub("", line))
        if text_:
            data["criteria"].append({"text": text_, "exclude": exclude})
    data["eligibility_text"] = "\n".join(c["text"] for c in data["criteria"]) or None
    title = data.get("brief_title") or ""
    phases, found = phases_from_text({"brief_title": title, "brief_summary": data["brief_summary"]})
    data["phases"] = phases
    problems += found
    intervention, found = intervention_from_title(title)
    data["interventions"] = [intervention] if intervention else []
    problems += found
    condition, found = condition_from_title(title)
    data["conditions"] = [condition] if condition else []
    problems += found
    yield data, problems
