"""Trial -> the disease subtypes it selects patients by (HER2-positive, triple-negative, metastatic,
EGFR-mutant ...), as ResearchStudy.keyword CodeableConcepts of fhirstudy's subtype CodeSystem.

Where a subtype is read: the trial's conditions, brief and official titles and keywords (text
patterns), and its inclusion criteria through their eligibility facts only (the facts of
:mod:`fhirstudy.eligibility`, e.g. HER2 LOINC 48676-1 = Negative); exclusion criteria are never
read. Patterns, fact rows, implications and conflicts are data in ``mappings/subtypes.json``.
Precision first: a study that states both polarities of one marker gets neither code.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from .. import terminology
from ..trial import Trial
from . import evidence_variable

TABLE = "subtypes.json"  # in fhirstudy.mappings
_TERM = re.compile(r"@(\w+)@")


@dataclass(frozen=True)
class _Rule:
    code: str
    include: tuple[re.Pattern, ...]
    exclude: tuple[re.Pattern, ...]


def _expand(pattern: str, terms: dict[str, str]) -> str:
    for _ in range(5):  # terms may name terms; a few levels is all the table uses
        if not _TERM.search(pattern):
            return pattern
        pattern = _TERM.sub(lambda m: terms[m.group(1)], pattern)
    raise ValueError(f"{TABLE}: terms nest too deep in {pattern!r}")


@lru_cache(maxsize=None)
def _rules() -> tuple[_Rule, ...]:
    data = terminology.load_mapping(TABLE)
    terms = data["terms"]

    def compiled(patterns: list[str]) -> tuple[re.Pattern, ...]:
        return tuple(re.compile(_expand(p, terms), re.IGNORECASE) for p in patterns)

    return tuple(_Rule(c["code"], compiled(c.get("text", [])), compiled(c.get("exclude_text", [])))
                 for c in data["concepts"])


@lru_cache(maxsize=None)
def _dashes() -> dict[int, str]:
    return {ord(c): "-" for c in terminology.load_mapping(TABLE)["normalise"]["dashes"]}


def normalise(text: str) -> str:
    """``text`` as the patterns read it: Unicode NFKC (superscript ⁺ is +), every dash and minus
    sign a hyphen-minus, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_dashes()).split())


def text_subtypes(text: str) -> set[str]:
    """The subtype codes one text (a condition, a title, a keyword) states."""
    return set(_text_subtypes(text))


@lru_cache(maxsize=1 << 14)
def _text_subtypes(text: str) -> frozenset[str]:
    """:func:`text_subtypes`, memoized (a pure function; conditions and titles recur across trials)."""
    norm = normalise(text)
    return frozenset(r.code for r in _rules()
                     if any(p.search(norm) for p in r.include) and not any(p.search(norm) for p in r.exclude))


@lru_cache(maxsize=None)
def _fact_rows() -> dict[tuple[str, str, str, str], str]:
    rows = terminology.load_mapping(TABLE)["facts"]["rows"]
    return {(r["type"]["system"], r["type"]["code"], r["value"]["system"], r["value"]["code"]): r["subtype"]
            for r in rows}


def _fact_subtype(definition: dict) -> str | None:
    value = definition.get("valueCodeableConcept")
    if not value:
        return None
    for t in definition["type"].get("coding", []):
        for v in value.get("coding", []):
            found = _fact_rows().get((t.get("system"), t.get("code"), v.get("system"), v.get("code")))
            if found:
                return found
    return None


def fact_subtypes(characteristic: dict) -> set[str]:
    """The subtype codes an inclusion characteristic's facts state (nothing for an exclusion):
    a fact by its type and value codes; an ``all-of`` what any part states; an ``any-of`` only
    what every alternative states (ER-positive or PR-positive: hr-positive)."""
    if characteristic.get("exclude"):
        return set()
    by_value = characteristic.get("definitionByTypeAndValue")
    if by_value:
        code = _fact_subtype(by_value)
        return closure({code}) if code else set()
    combination = characteristic.get("definitionByCombination")
    if not combination:
        return set()
    parts = [fact_subtypes(part) for part in combination["characteristic"]]
    if combination["code"] == "all-of":
        return set().union(*parts)
    if combination["code"] == "any-of" and parts:
        return set.intersection(*parts)
    return set()


def closure(codes: set[str]) -> set[str]:
    """``codes`` with every code they imply (``implies``) or give together (``combinations``)."""
    data = terminology.load_mapping(TABLE)
    out = set(codes)
    while True:
        more = {i for c in out for i in data["implies"].get(c, [])}
        more |= {r["gives"] for r in data["combinations"] if set(r["allOf"]) <= out}
        if more <= out:
            return out
        out |= more


def resolve(stated: set[str]) -> list[str]:
    """The codes a study gets from the codes its sources state: their closure, less both sides of
    any conflict (HER2-positive and HER2-negative both stated: the study does not select by HER2)
    and every code that implies one of those; in the CodeSystem's order."""
    conflicts = terminology.load_mapping(TABLE)["conflicts"]
    full = closure(stated)
    dropped = {code for pair in conflicts if set(pair) <= full for code in pair}
    kept = closure({s for s in stated if not closure({s}) & dropped})
    kept = {c for c in kept if not closure({c}) & dropped}
    return [r.code for r in _rules() if r.code in kept]


def study_subtypes(trial: Trial) -> list[str]:
    """The subtype codes of a trial: stated by its conditions, titles and keywords, or by the facts
    of its inclusion criteria (a criterion of a qualified block, "Cohort B: ...", holds for part
    of the study only and is not read)."""
    stated: set[str] = set()
    for text in (*trial.conditions, trial.brief_title, trial.official_title, *trial.keywords):
        if text:
            stated |= text_subtypes(text)
    for characteristic in evidence_variable.criteria(trial):  # qualified ones carry no facts
        stated |= fact_subtypes(characteristic)
    return resolve(stated)


def keywords(trial: Trial) -> list[dict]:
    """ResearchStudy.keyword CodeableConcepts, one per subtype code of the trial."""
    data = terminology.load_mapping(TABLE)
    system = data["codeSystem"]["url"]
    display = {c["code"]: c["display"] for c in data["concepts"]}
    return [{"coding": [{"system": system, "code": code, "display": display[code]}], "text": display[code]}
            for code in study_subtypes(trial)]
