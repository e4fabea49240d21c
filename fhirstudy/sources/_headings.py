"""Which lines of an eligibility text open an inclusion or exclusion block, and which are notes.

Registries head their criteria lists in many ways: "Inclusion Criteria:", "INCLUSION CRITERIA",
"**Exclusion criteria**", "### Exclusion Criteria", "Key Inclusion Criteria", "Exclusion Criteria
for Stage 1", "Exclusion Criteria (Cohort B)", "Inclusion Criteria - Healthy Volunteers:", or a
sentence that opens a list ("Participants are not eligible if:"). The words are data
(``mappings/eligibility-cues.json``: ``headings``, ``openers``, ``notes``); this module only puts
them together. A heading may carry a qualifier ("Stage 1", "Cohort B"): the part of the study its
criteria apply to, which the criteria keep.

A line that starts like a heading but reads as a sentence ("Exclusion criteria are the same as for
Stage 1") is not taken as one; :func:`doubtful` says so, so the reader can warn instead of
guessing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..terminology import load_mapping

_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_DECORATION = re.compile(r"^\s*(?:[*•\-–]\s+)?(?:#{1,6}\s*)?(?:\*\*|__)?\s*|\s*(?:\*\*|__)?\s*$")
_COLON = re.compile(r"\s*(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?\s*$")


@dataclass(frozen=True)
class Heading:
    """``kind`` is "inclusion", "exclusion" or None (a generic "Eligibility criteria:" heading);
    ``qualifier`` the part of the study the block applies to ("Stage 1"), or None."""

    kind: str | None
    qualifier: str | None = None


@lru_cache(maxsize=1)
def _patterns() -> dict:
    cues = load_mapping("eligibility-cues.json")
    h = cues["headings"]
    order = sorted(h["kinds"], key=lambda name: name != "generic")  # "Inclusion and exclusion" first
    kinds = "|".join(f"(?P<{name}>{h['kinds'][name]})" for name in order)
    return {
        "heading": re.compile(rf"^(?:(?:{h['lead']})\s+)*(?:{kinds})(?P<criteria>\s+(?:{h['criteria']}))?\b(?P<rest>.*)$",
                              re.IGNORECASE),
        "unit": re.compile(rf"^{h['unit']}", re.IGNORECASE),
        "sentence": re.compile(h["sentence"], re.IGNORECASE),
        "everyone": re.compile(h["everyone"], re.IGNORECASE),
        "max_words": h["max_qualifier_words"],
        "openers": {kind: [re.compile(p, re.IGNORECASE) for p in cues["openers"][kind]]
                    for kind in ("exclusion", "inclusion")},
        "notes": [re.compile(p, re.IGNORECASE) for p in cues["notes"]["patterns"]],
    }


def _bare(line: str) -> str:
    """The line without markdown escapes, bullet, '#', '**' and surrounding space."""
    return _DECORATION.sub("", _ESCAPE.sub(r"\1", line))


def _qualifier(rest: str, colon: bool) -> tuple[bool, str | None]:
    """Whether ``rest`` (what follows "Exclusion Criteria") is a heading's qualifier, and the
    qualifier. Empty: a plain heading. "for Stage 1", "(Cohort B)", "- Healthy Volunteers",
    "Stage 2": qualifiers. Anything that reads as a sentence: not a heading."""
    p = _patterns()
    rest = rest.strip()
    if not rest:
        return True, None
    text = rest
    marked = False
    for opener, closer in (("(", ")"), ("[", "]")):
        if text.startswith(opener) and text.endswith(closer):
            text, marked = text[1:-1].strip(), True
    if not marked:
        lead = re.match(r"^(?:[-–—:,]\s*|(?:for|in)\s+(?:the\s+)?)", text, re.IGNORECASE)
        if lead and lead.group(0):
            text, marked = text[lead.end():].strip(), True
    if not text or len(text.split()) > p["max_words"] or p["sentence"].search(text):
        return False, None
    if not marked and not p["unit"].match(text) and not colon:
        return False, None
    return True, (None if p["everyone"].match(text) else text)


def heading(line: str) -> Heading | None:
    """The heading this line is, or None. Sentences that open a list count only when they end
    in a colon."""
    p = _patterns()
    bare = _bare(line)
    colon = bool(_COLON.search(bare))
    core = _COLON.sub("", bare).strip()
    if not core or len(core) > 160:
        return None
    match = p["heading"].match(core)
    if match and (match.group("criteria") or not match.group("rest").strip()) \
            and (match.group("criteria") or not match.group("selection")):
        ok, qualifier = _qualifier(match.group("rest"), colon)
        if ok:
            kind = "inclusion" if match.group("inclusion") else "exclusion" if match.group("exclusion") else None
            return Heading(kind, qualifier)
    if colon and len(core) <= 140:
        for kind in ("exclusion", "inclusion"):
            if any(r.search(core) for r in p["openers"][kind]):
                return Heading(kind)
    return None


def doubtful(line: str) -> bool:
    """A line that begins like a heading ("Exclusion criteria ...") but is not read as one."""
    match = _patterns()["heading"].match(_COLON.sub("", _bare(line)).strip())
    return bool(match and match.group("criteria")) and heading(line) is None


def is_note(text: str) -> bool:
    """Text about the list rather than a criterion of it ("Other protocol-defined criteria may apply")."""
    return any(r.search(text) for r in _patterns()["notes"])
