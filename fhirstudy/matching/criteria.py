"""One eligibility characteristic against one patient: met, not met or unknown, and why.

A characteristic of an R5 eligibility EvidenceVariable (as ``mappers/evidence_variable.py`` writes
it) states something about a participant: an age range, a sex, "ECOG 0-1", "ANC >= 1.5 x 10^9/L",
"HER2-negative", "pregnant" (an exclusion). :func:`judge` says whether that statement holds for
the patient (``met``), certainly does not (``not-met``) or cannot be told (``unknown``), which
patient resources decided it, and what information is missing. Text-only characteristics are
``unknown`` and marked not computable: they are for a person to read.

Precision first (a patient who meets every computable criterion must never be dropped): a value
without a unit, in a unit that cannot be converted, older than its window, or failing only by less
than a conversion's precision decides nothing; a threshold with a conditional alternative ("or <= 5
x ULN with liver metastases") that the patient fails is ``unknown``, not ``not-met``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from .. import terminology
from . import units
from .patient import PatientFacts, Value

MET, NOT_MET, UNKNOWN = "met", "not-met", "unknown"
AGE = ("http://snomed.info/sct", "397669002")
GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"
UNITLESS = ("", "1")            # a score or ratio: UCUM's unity, or no code
TOLERANCE = 0.02                # a converted value failing by less than this (relative) is unknown


@dataclass(frozen=True)
class Verdict:
    """Whether a characteristic's statement holds for the patient (``state``: met, not-met,
    unknown); ``evidence`` the patient references that decided it, ``missing`` what would."""

    state: str
    computable: bool = True
    evidence: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    reason: str = ""


def fits(verdict: Verdict, exclude: bool) -> str:
    """Whether the patient fits a criterion: ``pass``, ``fail`` or ``unknown`` (an exclusion
    criterion that is met fails the patient)."""
    if verdict.state == UNKNOWN:
        return "unknown"
    return "pass" if (verdict.state == MET) != exclude else "fail"


@lru_cache(maxsize=1)
def _tables() -> tuple[dict, dict, dict]:
    data = terminology.load_mapping("eligibility-facts.json")
    analytes = {(a["coding"]["system"], a["coding"]["code"]): a for a in data["analytes"]}
    values = {(v["system"], v["code"]): name for name, v in data["interpretations"].items()}
    policy = terminology.load_mapping("match-policy.json")
    return analytes, values, policy


@lru_cache(maxsize=1)
def _window_rules() -> tuple[tuple[re.Pattern, ...], dict]:
    table = terminology.load_mapping("match-policy.json")["windows"]
    return tuple(re.compile(p, re.IGNORECASE) for p in table["patterns"]), table["days"]


@lru_cache(maxsize=8192)
def _window_in(text: str) -> int | None:
    patterns, days = _window_rules()
    found = [int(m.group("n")) * days[m.group("unit").lower()] for p in patterns for m in p.finditer(text)]
    return min(found) if found else None


def window_days(characteristic: dict) -> int | None:
    """The criterion's own window for results in days ("within 14 days prior to registration"),
    from its text (``match-policy.json`` ``windows``), or None."""
    if "_windowDays" in characteristic:
        return characteristic["_windowDays"]
    text = characteristic.get("description")
    return _window_in(text) if isinstance(text, str) else None


def judge(characteristic: dict, patient: PatientFacts, on: date, window: int | None = None) -> Verdict:
    """The verdict on one characteristic (see the module docstring); a nested ``exclude`` inside a
    combination turns its item's verdict round. ``window``: the days a result may be old, from
    the criterion this one is an item of (its own text may narrow it)."""
    own = window_days(characteristic)
    window = own if window is None else window if own is None else min(own, window)
    combination = characteristic.get("definitionByCombination")
    if combination:
        return _combine(combination, patient, on, window)
    definition = characteristic.get("definitionByTypeAndValue")
    if not definition:
        return Verdict(UNKNOWN, computable=False, reason="stated in text only")
    verdict = _by_type_and_value(characteristic, definition, patient, on, window)
    if verdict.state == NOT_MET and characteristic.get("note"):
        notes = "; ".join(n.get("text", "") for n in characteristic["note"])
        return Verdict(UNKNOWN, True, verdict.evidence, (f"whether the alternative applies: {notes}",),
                       f"{verdict.reason}; the criterion allows an alternative ({notes})")
    return verdict


def _flip(verdict: Verdict) -> Verdict:
    state = {MET: NOT_MET, NOT_MET: MET}.get(verdict.state, UNKNOWN)
    return Verdict(state, verdict.computable, verdict.evidence, verdict.missing, verdict.reason)


def _combine(combination: dict, patient: PatientFacts, on: date, window: int | None) -> Verdict:
    parts = []
    for item in combination.get("characteristic", []):
        verdict = judge(item, patient, on, window)
        parts.append(_flip(verdict) if item.get("exclude") else verdict)
    states = {p.state for p in parts}
    any_of = combination.get("code") == "any-of"
    decisive = MET if any_of else NOT_MET
    if decisive in states:
        chosen = [p for p in parts if p.state == decisive]
        state = decisive
    elif states == {MET if not any_of else NOT_MET}:
        chosen, state = parts, MET if not any_of else NOT_MET
    else:
        unknown = [p for p in parts if p.state == UNKNOWN]
        chosen, state = [p for p in unknown if p.computable] or unknown[:1], UNKNOWN
    return Verdict(state, any(p.computable for p in parts),
                   tuple(dict.fromkeys(e for p in chosen for e in p.evidence)),
                   tuple(dict.fromkeys(m for p in parts if p.state == UNKNOWN for m in p.missing)),
                   "; ".join(p.reason for p in chosen if p.reason))


def _by_type_and_value(characteristic: dict, definition: dict, patient: PatientFacts, on: date,
                       window: int | None) -> Verdict:
    kind = _kind(characteristic, definition)
    if kind == "age":
        return _age(definition.get("valueRange") or {}, patient, on)
    if kind == "sex":
        return _sex(definition.get("valueCodeableConcept") or {}, patient)
    if kind == "healthy-volunteers":
        return _healthy(definition.get("valueBoolean"), patient)
    analyte = _tables()[0].get(kind) if isinstance(kind, tuple) else None
    if analyte is None:
        return Verdict(UNKNOWN, computable=False, reason="a characteristic type fhirstudy does not check")
    if "valueCodeableConcept" in definition:
        return _coded(analyte, definition["valueCodeableConcept"], patient, on, window)
    return _quantity(analyte, definition, patient, on, window)


def _kind(characteristic: dict, definition: dict):
    coding = [(c.get("system"), c.get("code")) for c in (definition.get("type") or {}).get("coding", [])]
    if AGE in coding:
        return "age"
    if characteristic.get("linkId") in ("sex", "healthy-volunteers"):
        return characteristic["linkId"]
    return next((c for c in coding if c in _tables()[0]), None)


# -- age, sex, healthy volunteers -------------------------------------------------------------

def _completed(birth: date, on: date, unit: str) -> int | None:
    """Completed years, months, weeks or days of age at ``on`` (ages are counted as people say
    them: 65 until the 66th birthday)."""
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    days = (on - birth).days
    return {"a": months // 12, "mo": months, "wk": days // 7, "d": days, "h": days * 24,
            "min": days * 1440}.get(unit)


def _age(limits: dict, patient: PatientFacts, on: date) -> Verdict:
    if patient.birth_date is None:
        return Verdict(UNKNOWN, missing=("Patient.birthDate",), reason="no birth date")
    evidence = (patient.reference,) if patient.reference else ()
    for side, bound in (("low", limits.get("low")), ("high", limits.get("high"))):
        if not bound:
            continue
        age = _completed(patient.birth_date, on, bound.get("code", "a"))
        if age is None:
            return Verdict(UNKNOWN, reason=f"an age limit in {bound.get('code')!r}")
        if (side == "low" and age < bound["value"]) or (side == "high" and age > bound["value"]):
            return Verdict(NOT_MET, evidence=evidence, reason=f"age {age} {bound.get('unit', '')} is "
                           f"{'below' if side == 'low' else 'above'} {bound['value']}")
    return Verdict(MET, evidence=evidence, reason="age within the limits")


def _sex(concept: dict, patient: PatientFacts) -> Verdict:
    wanted = {c.get("code") for c in concept.get("coding", []) if c.get("system") == GENDER_SYSTEM}
    if patient.gender not in ("female", "male"):
        return Verdict(UNKNOWN, missing=("Patient.gender",), reason="sex not given")
    evidence = (patient.reference,) if patient.reference else ()
    if not wanted:
        return Verdict(UNKNOWN, computable=False, reason="sex not coded")
    state = MET if patient.gender in wanted else NOT_MET
    return Verdict(state, evidence=evidence, reason=f"gender {patient.gender}")


def _healthy(accepts: bool | None, patient: PatientFacts) -> Verdict:
    """"Does not accept healthy volunteers" holds for a patient with a condition; "accepts" for anyone."""
    if accepts:
        return Verdict(MET, reason="healthy volunteers accepted")
    if patient.conditions:
        return Verdict(MET, evidence=(patient.conditions[0].reference,), reason="the patient has a condition")
    return Verdict(UNKNOWN, missing=("a Condition",), reason="no condition recorded")


# -- observations -----------------------------------------------------------------------------

def _fresh(analyte: dict, value: Value, on: date, window: int | None) -> bool:
    freshness = _tables()[2]["freshness_days"]
    days = freshness.get(analyte["key"], freshness.get(analyte["kind"]))
    days = window if days is None else days if window is None else min(days, window)
    return days is None or value.when is None or (on - value.when).days <= days


def _values(analyte: dict, patient: PatientFacts, on: date, window: int | None) -> tuple[list[Value], list[Value]]:
    """The patient's values for ``analyte``: those inside its window, newest first, and the stale."""
    every = patient.values.get(analyte["key"], [])
    fresh = [v for v in every if _fresh(analyte, v, on, window)]
    return fresh, [v for v in every if v not in fresh]


def _missing(analyte: dict, stale: list[Value]) -> tuple[str, ...]:
    name = analyte["coding"]["display"]
    code = f"{analyte['coding']['system']}|{analyte['coding']['code']}"
    if stale:
        return (f"a recent {name} ({code}): the last one, {stale[0].reference}, is too old",)
    return (f"{name} ({code})",)


def _coded(analyte: dict, concept: dict, patient: PatientFacts, on: date, window: int | None) -> Verdict:
    interpretations = _tables()[1]
    wanted = {interpretations.get((c.get("system"), c.get("code"))) for c in concept.get("coding", [])} - {None}
    if not wanted:
        return Verdict(UNKNOWN, computable=False, reason="a value fhirstudy does not check")
    fresh, stale = _values(analyte, patient, on, window)
    known = [v for v in fresh if v.interpretation]
    if analyte["key"] == "pregnancy" and not known and patient.gender == "male":
        return Verdict(NOT_MET, evidence=(patient.reference,) if patient.reference else (), reason="male")
    if not known:
        return Verdict(UNKNOWN, missing=_missing(analyte, stale), reason="no result")
    latest = known[0]
    opposite = {"positive": "negative", "negative": "positive", "present": "absent", "absent": "present"}
    if latest.interpretation in wanted:
        state = MET
    elif any(opposite.get(w) == latest.interpretation for w in wanted):
        state = NOT_MET
    else:
        return Verdict(UNKNOWN, evidence=(latest.reference,), missing=_missing(analyte, []),
                       reason=f"result {latest.interpretation}")
    return Verdict(state, evidence=(latest.reference,), reason=f"{analyte['key']} {latest.interpretation}")


def _in_unit(analyte: dict, value: Value, unit: str) -> tuple[float | None, bool, str]:
    """The value in the criterion's unit, whether a conversion was needed, and why not when None."""
    if value.quantity is None:
        return None, False, "no number"
    if value.unit is None:
        return None, False, f"{value.reference} has no unit"
    given = "" if value.unit in analyte.get("drop_units", []) or _unitless(value.unit) else value.unit
    if unit == "{ULN}":
        multiple = units.uln_multiple(value)
        return (multiple, False, "") if multiple is not None else (
            None, False, f"{value.reference} gives no upper limit of normal (referenceRange.high)")
    if given == unit or (_unitless(unit) and given == ""):
        return value.quantity, False, ""
    converted = units.convert(analyte["key"], value.quantity, given, unit)
    if converted is None:
        return None, False, f"{value.reference} is in {value.unit!r}, which does not convert to {unit!r}"
    return converted, True, ""


def _unitless(code: str) -> bool:
    return code in UNITLESS or (code.startswith("{") and code.endswith("}") and code != "{ULN}")


def _holds(x: float, definition: dict) -> tuple[bool, float] | None:
    """Whether ``x`` satisfies the quantity or range, and the limit it is closest to."""
    if "valueRange" in definition:
        low, high = (definition["valueRange"].get(k, {}).get("value") for k in ("low", "high"))
        if low is not None and x < low:
            return False, low
        if high is not None and x > high:
            return False, high
        return True, low if low is not None else high
    q = definition.get("valueQuantity") or {}
    if "value" not in q:
        return None
    v, comparator = q["value"], q.get("comparator")
    ok = {"<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v}.get(
        comparator, math.isclose(x, v, rel_tol=1e-9, abs_tol=1e-12))
    return ok, v


def _quantity(analyte: dict, definition: dict, patient: PatientFacts, on: date, window: int | None) -> Verdict:
    bound = definition.get("valueQuantity") or (definition.get("valueRange") or {}).get("high") \
        or (definition.get("valueRange") or {}).get("low") or {}
    unit = bound.get("code", "") if bound.get("system", terminology_ucum()) == terminology_ucum() else None
    if unit is None:
        return Verdict(UNKNOWN, computable=False, reason="a limit not in UCUM")
    fresh, stale = _values(analyte, patient, on, window)
    reasons = []
    for value in fresh:
        x, converted, why = _in_unit(analyte, value, unit)
        if x is None:
            reasons.append(why)
            continue
        result = _holds(x, definition)
        if result is None:
            return Verdict(UNKNOWN, computable=False, reason="a limit without a value")
        ok, limit = result
        shown = f"{analyte['key']} {x:g} {unit or ''}".rstrip()
        if ok:
            return Verdict(MET, evidence=(value.reference,), reason=shown)
        if converted and abs(x - limit) <= TOLERANCE * max(abs(limit), 1e-12):
            return Verdict(UNKNOWN, evidence=(value.reference,), missing=_missing(analyte, []),
                           reason=f"{shown}: too close to {limit:g} to tell after converting units")
        return Verdict(NOT_MET, evidence=(value.reference,), reason=f"{shown}, limit {limit:g}")
    return Verdict(UNKNOWN, missing=_missing(analyte, stale) + tuple(reasons),
                   reason="; ".join(reasons) or "no result")


def terminology_ucum() -> str:
    return "http://unitsofmeasure.org"
