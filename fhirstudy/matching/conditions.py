"""Whether a study is about one of the patient's conditions: the "condition" criterion of $match.

A study's conditions (``ResearchStudy.condition``) carry fhirstudy's condition groups
(``conditions.json``), MeSH descriptors and the registry's text; a patient's Conditions carry
SNOMED CT, ICD-10 or MeSH codings and text. Both sides are put in groups the same way
(:func:`fhirstudy.terminology.condition_codings`, on the text and displays and the MeSH ids).

- ``met``: a patient condition shares a group, a MeSH descriptor or the folded text of a study
  condition, or has every significant word of it ("Dysphagia" for "Oropharyngeal dysphagia");
- ``not-met``: every study condition is in a group, the patient has conditions in groups, and no
  group is shared (a lung cancer patient and a breast cancer study);
- ``unknown`` otherwise: a study condition in no group ("Advanced Solid Tumors", "Healthy") may
  admit the patient, and a patient condition in no group says nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .. import terminology
from .criteria import MET, NOT_MET, UNKNOWN, Verdict
from .patient import Diagnosis, PatientFacts

MESH = "https://www.nlm.nih.gov/mesh"


@lru_cache(maxsize=1)
def _group_system() -> str:
    return terminology.load_mapping("conditions.json")["codeSystem"]["url"]


@dataclass(frozen=True)
class StudyCondition:
    """One condition of a study as matching compares it: groups, MeSH ids, folded text."""

    groups: frozenset[str]
    mesh: frozenset[str]
    folded: str
    text: str


def study_conditions(study: dict) -> tuple[StudyCondition, ...]:
    """The conditions of a ResearchStudy, ready to compare."""
    system, out = _group_system(), []
    for concept in study.get("condition") or []:
        codings = concept.get("coding") or []
        text = concept.get("text") or next((c.get("display") for c in codings if c.get("display")), "") or ""
        out.append(StudyCondition(frozenset(c.get("code") for c in codings if c.get("system") == system),
                                  frozenset(c.get("code") for c in codings if c.get("system") == MESH),
                                  terminology.fold(text), text))
    return tuple(out)


@lru_cache(maxsize=1)
def _word_rule() -> tuple[int, frozenset[str]]:
    policy = terminology.load_mapping("match-policy.json")["candidates"]
    return policy["word_length"], frozenset(policy["common_words"])


@lru_cache(maxsize=16384)
def significant_words(folded: str) -> frozenset[str]:
    """The words of a folded condition text that say which condition it is (``match-policy.json``
    ``candidates``: long enough, not a common word)."""
    length, common = _word_rule()
    words = (w.strip("()[],.;:'\"") for w in folded.replace("-", " ").replace("/", " ").split())
    return frozenset(w for w in words if len(w) >= length and w not in common)


@lru_cache(maxsize=4096)
def patient_keys(diagnosis: Diagnosis) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """A patient condition's groups, MeSH ids and folded texts (its text and displays)."""
    texts = [t for t in [diagnosis.text] + [display for _, _, display in diagnosis.codings] if t]
    mesh = frozenset(code for system, code, _ in diagnosis.codings if system == MESH)
    system = _group_system()
    groups = frozenset(c["code"] for text in texts or [""]
                       for c in terminology.condition_codings(text, mesh) if c["system"] == system)
    return groups, mesh, frozenset(terminology.fold(t) for t in texts)


def judge_condition(study, patient: PatientFacts) -> Verdict:
    """The condition criterion of ``study`` (a ResearchStudy, or its :func:`study_conditions`)
    for ``patient`` (module docstring)."""
    conditions = study_conditions(study) if isinstance(study, dict) else study
    if not conditions:
        return Verdict(UNKNOWN, computable=False, reason="the study names no condition")
    if not patient.conditions:
        return Verdict(UNKNOWN, missing=("the patient's conditions (Condition)",), reason="no condition given")
    grouped_patient = []
    for diagnosis in patient.conditions:
        groups, mesh, texts = patient_keys(diagnosis)
        words = frozenset().union(*(significant_words(t) for t in texts)) if texts else frozenset()
        for c in conditions:
            said = significant_words(c.folded)
            if groups & c.groups or mesh & c.mesh or (c.folded and c.folded in texts) or (said and said <= words):
                return Verdict(MET, evidence=(diagnosis.reference,),
                               reason=f"{diagnosis.text or 'condition'} matches {c.text or 'the study'}")
        if groups:
            grouped_patient.append(diagnosis)
    ungrouped = [c.text for c in conditions if not c.groups]
    if grouped_patient and not ungrouped:
        return Verdict(NOT_MET, evidence=tuple(d.reference for d in grouped_patient),
                       reason="none of the patient's conditions is among the study's: "
                              + "; ".join(c.text for c in conditions))
    return Verdict(UNKNOWN, missing=("whether the patient's condition is among the study's",),
                   reason=f"the study's condition {ungrouped[0]!r} is in no condition group" if ungrouped
                   else "none of the patient's conditions is in a condition group")


SUBTYPE_SYSTEM = "https://fhirstudy.org/fhir/CodeSystem/subtype"


def subtype_characteristics(study: dict) -> list[dict]:
    """The receptor status a study's subtype keywords ask for ("HER2-negative breast cancer"), as
    eligibility characteristics :func:`~.criteria.judge` reads (``match-policy.json`` ``subtypes``);
    a ``not`` requirement is an exclusion."""
    table = terminology.load_mapping("match-policy.json")["subtypes"]
    facts = terminology.load_mapping("eligibility-facts.json")
    analytes = {a["key"]: a["coding"] for a in facts["analytes"]}
    values = facts["interpretations"]
    out = []
    for keyword in study.get("keyword") or []:
        for coding in keyword.get("coding", []):
            rule = table.get(coding.get("code")) if coding.get("system") == SUBTYPE_SYSTEM else None
            if not rule:
                continue
            (kind, pairs), = ((k, v) for k, v in rule.items())
            items = [{"definitionByTypeAndValue": {
                "type": {"coding": [{k: analytes[a][k] for k in ("system", "code", "display")}]},
                "valueCodeableConcept": {"coding": [{k: values[i][k] for k in ("system", "code", "display")}]}}}
                for a, i in pairs]
            shape = items[0] if len(items) == 1 else {"definitionByCombination": {
                "code": "any-of" if kind in ("any", "not") else "all-of", "characteristic": items}}
            out.append({"linkId": f"subtype-{coding['code']}", "exclude": kind == "not",
                        "description": f"Subtype: {coding.get('display') or coding['code']} (from the study's "
                                       f"conditions and title)", **shape})
    return out
