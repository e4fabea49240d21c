"""Splitting a registry's eligibility-criteria text into single criteria, inclusion or exclusion.

ClinicalTrials.gov writes the criteria as one text: headings (``_headings``: "Inclusion Criteria:",
"Key Exclusion Criteria", "Exclusion Criteria for Stage 1", "Participants are not eligible if:"),
optional sub-headings ("For parent participants:"), and bullets (``*``, ``-``, ``•``, ``1.``,
``a)``) whose lines may wrap (the legacy XML indents continuation lines). Each bullet, and each free
paragraph, is one criterion; it keeps the side (inclusion or exclusion) of the block it is in and
the block's qualifier ("Stage 1"), so a stage-specific criterion is not read as applying to
everyone. A sub-heading is kept as the criterion's prefix so its meaning survives ("For parent
participants: Proficient in spoken English or Hindi"). Bullets indented under another (a sub-list)
are the ``items`` of the criterion above them. A paragraph about the list itself ("Other
protocol-defined criteria may apply") is kept as a note, not a criterion. Markdown escapes
(``\\>``) are undone. Where the blocks cannot be told apart with confidence, a warning names the
line: nothing is guessed silently.
"""
from __future__ import annotations

import copy
import re
from functools import lru_cache

from ..errors import Problem
from ._headings import doubtful, heading, is_note

_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_SUBHEADING = re.compile(r"^\s*(?P<text>[^*•\-–\d].{0,118}?[:：])\s*$")
_BULLET = re.compile(r"^(?P<indent>\s*)(?:[*•\-–·]|\d{1,3}[.)]|[a-zA-Z][.)]|\(\d{1,3}\)|\([a-zA-Z]\))\s+")


def _clean(text: str) -> str:
    return " ".join((_ESCAPE.sub(r"\1", text) if "\\" in text else text).split())


def _warning(reason: str) -> Problem:
    return Problem(reason, field="criteria", severity="warning")


class _Reader:
    """The state of one pass over an eligibility text, line by line."""

    def __init__(self) -> None:
        self.criteria: list[dict] = []
        self.problems: list[Problem] = []
        self.exclude = False
        self.qualifier: str | None = None
        self.headings: list[tuple[int, str | None]] = []  # (line, kind) of each heading seen
        self.before_heading = 0  # criteria read before the first heading
        self.sub: str | None = None
        self.current: list[str] | None = None
        self.top_indent: int | None = None  # indent of the list's own bullets; deeper ones are items
        self.depth = 0  # 0: a criterion; 1: an item of the last one; 2: deeper (joins the last item)
        self.item_indent = 0

    def flush(self) -> None:
        if self.current:
            body = _clean(" ".join(self.current))
            last = self.criteria[-1] if self.criteria else None
            if body and self.depth and last is not None:
                items = last.setdefault("items", [])
                if self.depth > 1 and items:
                    items[-1] = f"{items[-1]} / {body}"
                else:
                    items.append(body)
            elif body and is_note(body):
                self.criteria.append({"text": body, "exclude": False, "note": True})
            elif body:
                self.criteria.append({"text": f"{self.sub} {body}" if self.sub else body, "exclude": self.exclude,
                                      **({"qualifier": self.qualifier} if self.qualifier else {})})
                if not self.headings:
                    self.before_heading += 1
        self.current = None
        self.depth = 0

    def line(self, n: int, line: str) -> None:
        if not line.strip():
            self.flush()
            return
        found = heading(line)
        if found:
            self.flush()
            self.headings.append((n, found.kind))
            self.exclude = found.kind == "exclusion"
            self.qualifier = found.qualifier
            self.sub = None
            self.top_indent = None
            return
        if doubtful(line) and not is_note(line):
            self.problems.append(_warning(f"line {n}: {_clean(line)[:80]!r} begins like an eligibility heading "
                                          "but reads as a sentence; kept as text of the block above"))
        bullet = _BULLET.match(line)
        if bullet:
            self.flush()
            indent = len(bullet.group("indent").expandtabs(4))
            if self.top_indent is None or indent < self.top_indent:
                self.top_indent = indent
            last = self.criteria[-1] if self.criteria else None
            if indent > self.top_indent and last is not None and not last.get("note"):
                deeper = bool(last.get("items")) and indent > self.item_indent
                self.depth = 2 if deeper else 1
                if not deeper:
                    self.item_indent = indent
            self.current = [line[bullet.end():]]
            return
        if self.current is None and _SUBHEADING.match(line) and not line.strip().endswith("::"):
            self.sub = _clean(line)
            return
        if self.current is None:
            self.current = [line]
        else:
            self.current.append(line)

    def finish(self) -> None:
        self.flush()
        real = [c for c in self.criteria if not c.get("note")]
        if real and not self.headings:
            self.problems.append(_warning("the eligibility text has no Inclusion/Exclusion heading: every "
                                          "criterion was read as an inclusion criterion"))
        elif self.before_heading and self.headings[0][1] == "inclusion":
            self.problems.append(_warning(
                f"{self.before_heading} criteria come before the first heading (line {self.headings[0][0]}, "
                "an inclusion heading): read as inclusion criteria, but the text does not say which they are"))


def split_criteria(text: str | None) -> tuple[list[dict], list[Problem]]:
    """The criteria of an eligibility text as ``{"text", "exclude"}`` dicts (with ``items`` for a
    sub-list, ``qualifier`` for a qualified block, ``note`` for text about the list), in order,
    and the problems found (warnings where the text does not say with confidence which side a
    criterion is on)."""
    if not text or not text.strip():
        return [], []
    criteria, problems = _split(text)
    return ([{**c, "items": list(c["items"])} if "items" in c else dict(c) for c in criteria],
            [copy.copy(p) for p in problems])


SPLIT_CACHE = 4096  # eligibility texts remembered per process (copied out: callers own the dicts)


@lru_cache(maxsize=SPLIT_CACHE)
def _split(text: str) -> tuple[tuple[dict, ...], tuple[Problem, ...]]:
    """:func:`split_criteria` of a non-blank text, memoized: a pure function of the text, and the
    same criteria recur across the records of a registry (a sponsor's template, a re-registered
    study); what it keeps is never handed out, only copies."""
    reader = _Reader()
    for n, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        reader.line(n, line)
    reader.finish()
    return tuple(reader.criteria), tuple(reader.problems)
