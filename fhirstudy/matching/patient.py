"""The patient side of ``ResearchStudy/$match``: a Bundle of a patient's FHIR resources (R4 or R5,
e.g. mCODE STU2/3) read into :class:`PatientFacts`, values keyed by the analytes of
``eligibility-facts.json``.

Read leniently: unknown resource types and unknown codes are ignored; an entry that cannot be read
is noted in ``PatientFacts.problems`` with its place. Only a body that is not a Bundle, or a Bundle
of more than one Patient, is refused (:class:`~fhirstudy.errors.InvalidRequest`). Which codes mean
which analyte is data: ``match-patient.json``.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from functools import lru_cache

from fhirstudy.errors import InvalidRequest
from fhirstudy.terminology import load_mapping

Date = datetime.date
SKIPPED_OBSERVATION_STATUSES = frozenset({"entered-in-error", "cancelled"})
SKIPPED_CLINICAL_STATUSES = frozenset({"inactive", "resolved"})  # remission, relapse, recurrence are kept
SKIPPED_VERIFICATION_STATUSES = frozenset({"refuted", "entered-in-error"})
SKIPPED_EVENT_STATUSES = frozenset({"entered-in-error", "not-done", "not-taken", "cancelled"})


@dataclass(frozen=True)
class Value:
    """One value of one analyte, with where it was read."""

    analyte: str                  # key of eligibility-facts.json analytes
    reference: str                # "Observation/<id>" or "Condition/<id>", else the entry's fullUrl
    quantity: float | None        # the number as written (None for coded results)
    unit: str | None              # UCUM code; "" for a unitless score; None = no usable unit
    uln: float | None             # referenceRange high in the value's unit
    interpretation: str | None    # "positive" | "negative" | "present" | "absent"
    when: Date | None


@dataclass(frozen=True)
class Diagnosis:
    """A Condition, medication or Procedure: its codings, its text and its date."""

    reference: str
    codings: tuple[tuple[str, str, str], ...]   # (system, code, display)
    text: str
    when: Date | None


@dataclass
class PatientFacts:
    """What :func:`read_patient` understood of a Bundle, and what it could not read."""

    reference: str | None = None
    birth_date: Date | None = None
    gender: str | None = None
    values: dict[str, list[Value]] = field(default_factory=dict)
    conditions: list[Diagnosis] = field(default_factory=list)
    medications: list[Diagnosis] = field(default_factory=list)
    procedures: list[Diagnosis] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def age(self, on: Date) -> float | None:
        """Age on ``on`` in years (completed years plus the part of the year since the last
        birthday), or None without a birthDate."""
        born = self.birth_date
        if born is None:
            return None
        years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        last, following = _birthday(born, born.year + years), _birthday(born, born.year + years + 1)
        return years + (on - last).days / (following - last).days


def _birthday(born: Date, year: int) -> Date:
    try:
        return born.replace(year=year)
    except ValueError:  # 29 February in a common year
        return Date(year, 3, 1)


@lru_cache(maxsize=1)
def _tables() -> dict:
    data = load_mapping("match-patient.json")
    return {
        "codes": {(c["system"], c["code"]): c["analyte"] for c in data["observationCodes"]},
        "scores": {k: {(a["system"], a["code"]): a["score"] for a in v} for k, v in data["scoreAnswers"].items()},
        "statuses": {(a["system"], a["code"]): a["interpretation"] for a in data["statusAnswers"]},
        "pregnancy": {(a["system"], a["code"]): a["interpretation"] for a in data["pregnancyAnswers"]},
        "conditions": {(c["system"], c["code"]): c["analyte"] for c in data["conditionCodes"]},
        "secondary": data["secondaryCancer"]["profile"],
        "sites": {(s["system"], s["code"]): s["analyte"] for s in data["secondaryCancer"]["bodySites"]},
        "spellings": data["unitSpellings"]["spellings"],
        "ucum": data["ucum"],
        "kinds": {a["key"]: a["kind"] for a in load_mapping("eligibility-facts.json")["analytes"]},
    }


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _codings(concept) -> list[tuple[str, str, str]]:
    return [(_str(c.get("system")) or "", c["code"], _str(c.get("display")) or "")
            for c in map(_obj, _list(_obj(concept).get("coding"))) if _str(c.get("code"))]


def _keys(concept) -> list[tuple[str, str]]:
    return [(system, code) for system, code, _ in _codings(concept)]


def _date(value) -> Date | None:
    """The date part of a FHIR date/dateTime/instant; a partial date is read as its first day."""
    text = _str(value)
    if not text:
        return None
    parts = (text[:10].split("-") + ["01", "01"])[:3]
    try:
        return Date(*(int(p) for p in parts))
    except ValueError:
        return None


def _when(resource: dict, *names: str) -> Date | None:
    """The first date found under ``names`` (a Period by its end, else its start)."""
    for name in names:
        value = resource.get(name)
        found = _date(_obj(value).get("end")) or _date(_obj(value).get("start")) if name.endswith("Period") \
            else _date(value)
        if found:
            return found
    return None


def read_patient(bundle: dict) -> PatientFacts:
    """The facts of the one patient in ``bundle`` (a Bundle of any type), newest value first."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("$match needs a Bundle of the patient's resources", expression="Bundle")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest("Bundle.entry is not a list", expression="Bundle.entry")
    facts, patient_at = PatientFacts(), None
    for index, entry in enumerate(entries):
        where = f"entry[{index}]"
        resource = _obj(entry).get("resource")
        if not isinstance(resource, dict) or not _str(resource.get("resourceType")):
            facts.problems.append(f"{where}: not a resource (no object with a resourceType)")
            continue
        kind, rid = resource["resourceType"], _str(resource.get("id"))
        reference = f"{kind}/{rid}" if rid else (_str(_obj(entry).get("fullUrl")) or where)
        if kind == "Patient":
            if patient_at is not None and reference != facts.reference:
                raise InvalidRequest(f"Bundle holds more than one Patient (entry[{patient_at}] and {where})",
                                     expression=f"Bundle.{where}")
            patient_at = index
            facts.reference, facts.birth_date = reference, _date(resource.get("birthDate"))
            facts.gender = _str(resource.get("gender"))
        elif kind in _READERS:
            _READERS[kind](facts, resource, reference, f"{where} {reference}")
    for values in facts.values.values():
        values.sort(key=lambda v: (v.when is None, -(v.when.toordinal() if v.when else 0)))
    return facts


def _add(facts: PatientFacts, value: Value) -> None:
    facts.values.setdefault(value.analyte, []).append(value)


def _read_observation(facts: PatientFacts, obs: dict, reference: str, where: str) -> None:
    if _str(obs.get("status")) in SKIPPED_OBSERVATION_STATUSES:
        return
    tables, when = _tables(), _when(obs, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
    parts = [(obs, "")] + [(_obj(c), f"component[{i}].") for i, c in enumerate(_list(obs.get("component")))]
    for part, prefix in parts:
        analyte = next((tables["codes"][key] for key in _keys(part.get("code")) if key in tables["codes"]), None)
        if analyte is None or "dataAbsentReason" in part:
            continue
        value = _read_value(facts, analyte, part, reference, f"{where}: {prefix}", when)
        if value is not None:
            _add(facts, value)


def _read_value(facts, analyte, part, reference, where, when) -> Value | None:
    tables = _tables()
    kind = tables["kinds"].get(analyte)
    coded = _keys(part.get("valueCodeableConcept"))
    interpreted = [k for i in _list(part.get("interpretation")) for k in _keys(i)]
    if kind == "score":
        score = _score(facts, analyte, part, where, coded, interpreted)
        return None if score is None else Value(analyte, reference, score, "", None, None, when)
    if kind in ("status", "finding"):
        table = tables["pregnancy"] if analyte == "pregnancy" else tables["statuses"]
        answer = _first(table, coded, interpreted)
        return None if answer is None else Value(analyte, reference, None, None, None, answer, when)
    if "valueInteger" in part and _number(part["valueInteger"]):  # a bare count: no unit to read
        return Value(analyte, reference, float(part["valueInteger"]), None, None, None, when)
    if "valueQuantity" not in part:
        return None
    quantity = part["valueQuantity"]
    number, unit = _quantity(facts, quantity, where + "valueQuantity")
    if number is None:
        return None
    return Value(analyte, reference, number, unit, _uln(part, unit), None, when)


def _first(table: dict, *candidates: list):
    """The answer of the first code the table knows, from the first list that has one (the value
    before the interpretation); None also when that answer is 'unknown'."""
    for keys in candidates:
        known = [table[k] for k in keys if k in table]
        if known:
            return known[0]
    return None


def _score(facts, analyte, part, where, coded, interpreted) -> float | None:
    if "valueInteger" in part or "valueQuantity" in part:
        raw = part["valueInteger"] if "valueInteger" in part else _obj(part["valueQuantity"]).get("value")
        if _number(raw):
            return float(raw)
        facts.problems.append(f"{where}value{'Integer' if 'valueInteger' in part else 'Quantity.value'} "
                              "is not a number")
        return None
    found = _first(_tables()["scores"].get(analyte, {}), coded, interpreted)
    return None if found is None else float(found)


def _quantity(facts, quantity, where) -> tuple[float | None, str | None]:
    """The number of a Quantity and its UCUM code (None when the unit cannot be read as one)."""
    if not isinstance(quantity, dict):
        facts.problems.append(f"{where} is not an object")
        return None, None
    raw = quantity.get("value")
    if not _number(raw):
        facts.problems.append(f"{where}.value is {'missing' if raw is None else 'not a number'}")
        return None, None
    return float(raw), _ucum(facts, quantity, where)


def _ucum(facts, quantity: dict, where: str | None) -> str | None:
    tables = _tables()
    code = _str(quantity.get("code"))
    if quantity.get("system") == tables["ucum"] and code is not None:
        return code
    for written in (_str(quantity.get("unit")), code):
        if written is not None and written.strip() in tables["spellings"]:
            return tables["spellings"][written.strip()]
    if where is not None:
        facts.problems.append(f"{where} has no unit that can be read as UCUM")
    return None


def _uln(part: dict, unit: str | None) -> float | None:
    if unit is None:
        return None
    for ranges in map(_obj, _list(part.get("referenceRange"))):
        high = _obj(ranges.get("high"))
        if _number(high.get("value")) and _ucum(None, high, None) == unit:
            return float(high["value"])
    return None


def _read_condition(facts: PatientFacts, condition: dict, reference: str, where: str) -> None:
    if {c for _, c in _keys(condition.get("clinicalStatus"))} & SKIPPED_CLINICAL_STATUSES or \
            {c for _, c in _keys(condition.get("verificationStatus"))} & SKIPPED_VERIFICATION_STATUSES:
        return
    when = _when(condition, "onsetDateTime", "onsetPeriod", "recordedDate")
    diagnosis = _diagnosis(condition.get("code"), reference, when)
    if diagnosis is None:
        facts.problems.append(f"{where}: Condition.code has neither a coding nor text")
        return
    facts.conditions.append(diagnosis)
    tables = _tables()
    analytes = {tables["conditions"][k] for k in _keys(condition.get("code")) if k in tables["conditions"]}
    profiles = _list(_obj(condition.get("meta")).get("profile"))
    if any(_str(p) and p.split("|")[0] == tables["secondary"] for p in profiles):
        analytes |= {tables["sites"][k] for site in _list(condition.get("bodySite"))
                     for k in _keys(site) if k in tables["sites"]}
    for analyte in sorted(analytes):
        _add(facts, Value(analyte, reference, None, None, None, "present", when))


def _diagnosis(concept, reference: str, when: Date | None) -> Diagnosis | None:
    codings = tuple(_codings(concept))
    text = _str(_obj(concept).get("text")) or next((d for _, _, d in codings if d), "")
    return Diagnosis(reference, codings, text, when) if codings or text else None


# resourceType -> (PatientFacts list, where its code is, where its date is); R4 and R5 names both
_EVENTS = {
    "MedicationStatement": ("medications", ("medicationCodeableConcept", "medication"),
                            ("effectiveDateTime", "effectivePeriod", "dateAsserted")),
    "MedicationRequest": ("medications", ("medicationCodeableConcept", "medication"), ("authoredOn",)),
    "Procedure": ("procedures", ("code",),
                  ("performedDateTime", "performedPeriod", "occurrenceDateTime", "occurrencePeriod")),
}


def _read_event(facts: PatientFacts, resource: dict, reference: str, where: str) -> None:
    """A medication (R4 medicationCodeableConcept, R5 medication.concept) or a Procedure."""
    found, codes, dates = _EVENTS[resource["resourceType"]]
    if _str(resource.get("status")) in SKIPPED_EVENT_STATUSES:
        return
    concepts = [resource.get(name) if name != "medication" else _obj(resource.get(name)).get("concept")
                for name in codes]
    diagnosis = next((d for d in (_diagnosis(c, reference, _when(resource, *dates)) for c in concepts) if d), None)
    if diagnosis is None:
        facts.problems.append(f"{where}: no code or text (a reference to a Medication is not followed)")
    else:
        getattr(facts, found).append(diagnosis)


_READERS = {"Observation": _read_observation, "Condition": _read_condition,
            **{kind: _read_event for kind in _EVENTS}}
