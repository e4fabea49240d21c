"""Helpers shared by the plain-text readers (registry export, web page, bulleted).

Everything here is a pure function of its arguments and of the tables under ``mappings/``
(``intervention-terms.json``, ``eligibility-cues.json``), which are loaded once.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache

from ._headings import heading
from ..errors import Problem
from ..terminology import load_mapping
from ..trial import INTERVENTION_TYPES

DERIVED_ID_SYSTEM = "https://fhirstudy.org/fhir/sid/source-record"
DERIVED_ID_LENGTH = 16
SNIPPET_LENGTH = 80

# Markdown backslash escapes (CommonMark: any ASCII punctuation may be escaped).
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4}
_PHASE = re.compile(
    r"\b(?P<early>early\s+)?phase\s*(?P<a>IV|III|II|I|[1-4])[ab]?"
    r"(?:\s*(?:/|-|and|or)\s*(?:phase\s*)?(?P<b>IV|III|II|I|[1-4])[ab]?)?\b",
    re.IGNORECASE,
)
# A title's disease phrase ends with one of these head nouns ("... Metastatic Breast Cancer").
_DISEASE_HEADS = r"(?:cancers?|carcinomas?|neoplasms?|tumou?rs?|lymphomas?|leukemias?|sarcomas?|diseases?|syndromes?)"
_TITLE_CONDITION = re.compile(
    r"\b(?:in|for)\s+(?:(?:adult\s+|female\s+|male\s+)?(?:patients|participants|subjects|women|men|people)\s+"
    r"(?:with|who\s+have)\s+)?(?P<cond>[^.;]*?\b" + _DISEASE_HEADS + r")\b",
    re.IGNORECASE,
)


def clean(text: str | None) -> str | None:
    """Strip surrounding whitespace and undo markdown backslash escapes (``\\>`` -> ``>``);
    empty text becomes None."""
    if text is None:
        return None
    if "\\" in text:  # only a backslash starts an escape
        text = _MD_ESCAPE.sub(r"\1", text)
    return text.strip() or None


def snippet(text: str) -> str:
    """A short quotable excerpt of a line for a problem message."""
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_LENGTH else text[: SNIPPET_LENGTH - 1] + "…"


def warning(reason: str, field: str | None = None) -> Problem:
    """A warning Problem (file and record are filled in by ``iter_records``)."""
    return Problem(reason=reason, field=field, severity="warning")


def error(reason: str, field: str | None = None) -> Problem:
    """An error Problem (file and record are filled in by ``iter_records``)."""
    return Problem(reason=reason, field=field, severity="error")


def unplaced(lineno: int, text: str) -> Problem:
    """The warning for a source line the reader could not place (the text goes to ``unplaced``)."""
    return warning(f"line {lineno}: could not place this text, kept in unplaced: {snippet(text)!r}",
                   field="unplaced")


def derived_identifier(title: str) -> dict:
    """An identifier derived from the title, stable across runs and machines: sha256 of the
    NFC-normalised, lower-cased, whitespace-collapsed title, first 16 hex digits. Two records
    with the same title share it (their resource ids differ: ``mappers.ids.study_id``)."""
    norm = " ".join(unicodedata.normalize("NFC", title).lower().split())
    value = hashlib.sha256(norm.encode("utf-8")).hexdigest()[:DERIVED_ID_LENGTH]
    return {"value": value, "kind": "derived", "system": DERIVED_ID_SYSTEM}


def phases_from_text(texts: dict[str, str | None]) -> tuple[list[str], list[Problem]]:
    """The phases a trial's own text names ("a phase II single-arm study" -> ``["PHASE2"]``).

    ``texts`` maps a field name (``brief_title``, ``brief_summary``) to its text; pass only text
    about this trial (not a detailed description that cites other trials' phases). Returns the
    phases and a warning saying they were inferred; names nothing when the text names no phase,
    and nothing (with a warning) when it names different phases.
    """
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    for field, text in texts.items():
        for m in _PHASE.finditer(text or ""):
            nums = [m.group("a")] + ([m.group("b")] if m.group("b") else [])
            phases = tuple(dict.fromkeys(
                f"PHASE{_ROMAN.get(n.upper(), n)}" for n in nums))
            if m.group("early") and phases == ("PHASE1",):
                phases = ("EARLY_PHASE1",)
            found.setdefault(phases, (field, m.group(0)))
    if not found:
        return [], []
    if len(found) > 1:
        quoted = ", ".join(repr(v[1]) for v in found.values())
        return [], [warning(f"text names different phases ({quoted}); phases left empty", "phases")]
    (phases, (field, words)), = found.items()
    return list(phases), [warning(f"phases {', '.join(phases)} inferred from {words!r} in {field}",
                                  "phases")]


def intervention_type(raw: str) -> str | None:
    """A ClinicalTrials.gov intervention type from its display or API form ("Drug", "DRUG",
    "Dietary Supplement"); None when it is not one."""
    value = re.sub(r"[\s-]+", "_", raw.strip()).upper()
    return value if value in INTERVENTION_TYPES else None


def _connector_pattern(key: str) -> re.Pattern:
    terms = sorted(load_mapping("intervention-terms.json")[key]["terms"], key=len, reverse=True)
    alts = []
    for t in terms:
        if re.fullmatch(r"[\w/ ]+", t):
            alts.append(r"\s+" + r"\s+".join(map(re.escape, t.split())) + r"\s+")
        else:  # a symbol: spaces around it are optional
            alts.append(r"\s*" + re.escape(t) + r"\s*")
    return re.compile("|".join(alts), re.IGNORECASE)


@cache
def _connectors() -> re.Pattern:
    return _connector_pattern("connectors")


@cache
def _title_connectors() -> re.Pattern:
    return _connector_pattern("title_connectors")


def _component(part: str) -> str | None:
    terms = load_mapping("intervention-terms.json")
    part = part.strip(" .;:")
    if not part:
        return None
    part = terms["abbreviations"]["terms"].get(part, part)
    low = " ".join(part.lower().split())
    for q in terms["qualifiers"]["terms"]:
        if low.endswith(" " + q) and low[: -len(q)].strip():
            low = low[: -len(q)].strip()
            break
    return low


def split_components(name: str) -> list[str]:
    """The single drugs or procedures an intervention name names, lower-case, in order
    ("Inetetamab and Paclitaxel ± Pertuzumab" -> inetetamab, paclitaxel, pertuzumab)."""
    parts = (_component(p) for p in _connectors().split(name))
    return list(dict.fromkeys(p for p in parts if p))


def intervention_from_title(title: str) -> tuple[dict | None, list[Problem]]:
    """An intervention inferred from a title that names a combination of single-word drugs
    joined by a strong connector ("... of Anlotinib Combined With Fulvestrant in ..."), with a
    warning saying so; None when the title names none."""
    word = r"[A-Za-z][\w-]*"
    conn = _title_connectors().pattern
    m = re.search(rf"\b(?P<reg>{word}(?:(?:{conn}){word})+)\s+(?:in|for|versus|vs\.?|as|on)\b", title,
                  re.IGNORECASE)
    if not m:
        return None, []
    name = m.group("reg")
    components = split_components(name)
    if len(components) < 2:
        return None, []
    data = {"type": "DRUG", "name": name, "components": components}
    return data, [warning(f"intervention {name!r} (type DRUG) inferred from the title: the layout "
                          "has no intervention field", "interventions")]


def condition_from_title(title: str) -> tuple[str | None, list[Problem]]:
    """A condition text inferred from a title's "in Patients With <disease>" phrase, with a
    warning saying so; None when the title has no such phrase."""
    matches = list(_TITLE_CONDITION.finditer(title))
    if not matches:
        return None, []
    cond = " ".join(matches[-1].group("cond").split())
    return cond, [warning(f"condition {cond!r} inferred from the title: the layout has no "
                          "condition field", "conditions")]


def _count(patterns: list[re.Pattern], text: str) -> int:
    return sum(1 for p in patterns if p.search(text))


@cache
def _cues() -> tuple[list[re.Pattern], list[re.Pattern]]:
    cues = load_mapping("eligibility-cues.json")
    return ([re.compile(p, re.IGNORECASE) for p in cues["inclusion"]],
            [re.compile(p, re.IGNORECASE) for p in cues["exclusion"]])


def eligibility_label(line: str) -> str | None:
    """"inclusion" or "exclusion" when the line is a heading such as "Exclusion Criteria:"
    (``_headings``, the same headings the ClinicalTrials.gov readers know)."""
    found = heading(line)
    return found.kind if found else None


def split_eligibility(criteria: list[str]) -> int | None:
    """Where an unlabelled list of criteria (inclusion first, then exclusion) switches to
    exclusion: the index of the first exclusion criterion, ``len(criteria)`` for none.

    Each criterion scores +1 per inclusion cue and -1 per exclusion cue it matches; the split is
    the point that maximises (scores before) - (scores after); among equally good points the
    middle one. None when no criterion matches any cue (no evidence to split on).
    """
    inc, exc = _cues()
    scores = [_count(inc, c) - _count(exc, c) for c in criteria]
    if not any(scores):
        return None
    agreement = [sum(scores[:k]) - sum(scores[k:]) for k in range(len(criteria) + 1)]
    best = max(agreement)
    tied = [k for k, a in enumerate(agreement) if a == best]
    return tied[len(tied) // 2]
