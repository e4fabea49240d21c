"""Splitting a registry's eligibility-criteria text into single criteria, inclusion or exclusion.

ClinicalTrials.gov writes the criteria as one text: headings ("Inclusion Criteria:", "Key Exclusion
Criteria:", "Eligibility criteria:" / "Exclusion criteria:"), optional sub-headings ("For parent
participants:"), and bullets (``*``, ``-``, ``•``, ``1.``, ``a)``) whose lines may wrap (the legacy
XML indents continuation lines). Each bullet, and each free paragraph, is one criterion; a
sub-heading is kept as the criterion's prefix so its meaning survives ("For parent participants:
Proficient in spoken English or Hindi"). A bullet indented under another (a sub-list) belongs
to the criterion above it. A paragraph about the list itself ("The information listed above is
not intended to contain all considerations...") is kept as a note, not a criterion. Markdown
escapes (``\\>``) are undone.
"""
from __future__ import annotations

import re

from ..errors import Problem

_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_HEADING = re.compile(
    r"^\s*(?:key\s+|main\s+|general\s+)?(?P<kind>inclusion|exclusion|eligibility)(?:\s+criteria)?\s*[:：]?\s*$",
    re.IGNORECASE)
_SUBHEADING = re.compile(r"^\s*(?P<text>[^*•\-–\d].{0,118}?[:：])\s*$")
# Text in a criteria list that is about the list, not a criterion of it.
_NOTE = re.compile(r"^\s*(note\s*[:：]|the (information|criteria) listed above\b|\(?not all (inclusion|exclusion)\b)",
                   re.IGNORECASE)
_BULLET = re.compile(r"^(?P<indent>\s*)(?:[*•\-–·]|\d{1,3}[.)]|[a-zA-Z][.)]|\(\d{1,3}\)|\([a-zA-Z]\))\s+")


def _clean(text: str) -> str:
    return " ".join(_ESCAPE.sub(r"\1", text).split())


def split_criteria(text: str | None) -> tuple[list[dict], list[Problem]]:
    """The criteria of an eligibility text as ``{"text", "exclude"}`` dicts, in order, and the
    problems found (a warning when no inclusion/exclusion heading tells which is which)."""
    if not text or not text.strip():
        return [], []
    criteria: list[dict] = []
    problems: list[Problem] = []
    exclude = False
    saw_heading = False
    sub: str | None = None
    current: list[str] | None = None
    top_indent: int | None = None  # indent of the list's own bullets; deeper ones are sub-items
    nested = False  # whether `current` is a sub-item of the last criterion

    def flush() -> None:
        nonlocal current, nested
        if current:
            body = _clean(" ".join(current))
            if body and nested and criteria:
                last = criteria[-1]
                joiner = " " if last["text"].endswith((":", "：")) else " / "
                last["text"] = f"{last['text']}{joiner}{body}"
            elif body and _NOTE.match(body):
                criteria.append({"text": body, "exclude": False, "note": True})
            elif body:
                criteria.append({"text": f"{sub} {body}" if sub else body, "exclude": exclude})
        current = None
        nested = False

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            flush()
            continue
        heading = _HEADING.match(_ESCAPE.sub(r"\1", line))
        if heading:
            flush()
            saw_heading = True
            exclude = heading.group("kind").lower() == "exclusion"
            sub = None
            top_indent = None
            continue
        bullet = _BULLET.match(line)
        if bullet:
            flush()
            indent = len(bullet.group("indent").expandtabs(4))
            if top_indent is None or indent < top_indent:
                top_indent = indent
            nested = indent > top_indent and bool(criteria) and not criteria[-1].get("note")
            current = [line[bullet.end():]]
            continue
        if current is None and _SUBHEADING.match(line) and not line.strip().endswith("::"):
            sub = _clean(line)
            continue
        if current is None:
            current = [line]
        else:
            current.append(line)
    flush()
    if criteria and not saw_heading:
        problems.append(Problem("the eligibility text has no Inclusion/Exclusion heading: every criterion "
                                "was read as an inclusion criterion", field="criteria", severity="warning"))
    return criteria, problems
