"""The patient side of ResearchStudy/$match: read_patient on six synthetic mCODE-style Bundles
(tests/data/patients), unit conversions, the sources of match-patient.json, and bad input.

The Bundles are made up; their codes are the cited ones of match-patient.json, plus SNOMED CT
254837009 'Malignant neoplasm of breast (disorder)' and 254637007 'Non-small cell lung cancer
(disorder)' and 363346000 'Malignant neoplastic disease (disorder)' as HL7/fhir-mCODE-ig writes them
(input/fsh/EX_ExtendedExample.fsh, EX_Basic.fsh, EX_TumorSize.fsh @543477b5).
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from fhirstudy.errors import InvalidRequest
from fhirstudy.matching.patient import PatientFacts, Value, read_patient
from fhirstudy.matching.units import convert, uln_multiple
from fhirstudy.terminology import load_mapping

DATA = Path(__file__).parent / "data" / "patients"
BUNDLES = sorted(p.stem for p in DATA.glob("*.json"))
TODAY = date(2026, 12, 3)


def bundle(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def facts(name: str) -> PatientFacts:
    return read_patient(bundle(name))


# (bundle, analyte, position newest-first, quantity, unit, uln, interpretation, when, reference)
VALUES = [
    ("her2-positive-metastatic-breast", "her2", 0, None, None, None, "positive", "2026-02-20", "Observation/her2-ihc"),
    ("her2-positive-metastatic-breast", "er", 0, None, None, None, "negative", "2026-02-20", "Observation/er"),
    ("her2-positive-metastatic-breast", "pr", 0, None, None, None, "negative", "2026-02-20", "Observation/pr"),
    ("her2-positive-metastatic-breast", "ecog", 0, 1, "", None, None, "2026-11-25", "Observation/ecog-november"),
    ("her2-positive-metastatic-breast", "ecog", 1, 0, "", None, None, "2026-06-01", "Observation/ecog-june"),
    ("her2-positive-metastatic-breast", "anc", 0, 2.1, "10*9/L", None, None, "2026-11-28", "Observation/anc"),
    ("her2-positive-metastatic-breast", "platelets", 0, 180, "10*9/L", None, None, "2026-11-28", "Observation/platelets"),
    ("her2-positive-metastatic-breast", "hemoglobin", 0, 11.8, "g/dL", None, None, "2026-11-28", "Observation/hemoglobin"),
    ("her2-positive-metastatic-breast", "bilirubin", 0, 0.8, "mg/dL", 1.2, None, "2026-11-28", "Observation/bilirubin"),
    ("her2-positive-metastatic-breast", "alt", 0, 30, "U/L", 40, None, "2026-11-28", "Observation/alt"),
    ("her2-positive-metastatic-breast", "creatinine", 0, 0.9, "mg/dL", None, None, "2026-11-28", "Observation/creatinine"),
    ("her2-positive-metastatic-breast", "lvef", 0, 60, "%", None, None, "2026-10-14", "Observation/lvef"),
    # alternative LOINC code 26499-4, unit only as the string '10^9/L'
    ("poor-organ-function", "anc", 0, 0.8, "10*9/L", None, None, "2026-11-30", "Observation/anc"),
    ("poor-organ-function", "platelets", 0, 60000, "/mm3", None, None, "2026-11-30", "Observation/platelets"),
    ("poor-organ-function", "bilirubin", 0, 51, "umol/L", 21, None, "2026-11-30", "Observation/bilirubin"),
    ("poor-organ-function", "ast", 0, 110, "U/L", 40, None, "2026-11-30", "Observation/ast"),
    # referenceRange high in 'IU/L' (no UCUM): not the value's unit, so no ULN
    ("poor-organ-function", "alt", 0, 95, "U/L", None, None, "2026-11-30", "Observation/alt"),
    ("poor-organ-function", "creatinine", 0, 150, "umol/L", None, None, "2026-11-30", "Observation/creatinine"),
    ("poor-organ-function", "egfr", 0, 38, "mL/min/{1.73_m2}", None, None, "2026-11-30", "Observation/egfr"),
    ("poor-organ-function", "albumin", 0, 2.9, "g/dL", None, None, "2026-11-30", "Observation/albumin"),
    ("poor-organ-function", "inr", 0, 1.6, "{INR}", None, None, "2026-11-30", "Observation/inr"),
    ("poor-organ-function", "ecog", 0, 2, "", None, None, "2026-11-29", "Observation/ecog"),
    ("pregnant", "pregnancy", 0, None, None, None, "present", "2026-11-30", "Observation/pregnancy-november"),
    ("pregnant", "pregnancy", 1, None, None, None, "present", "2026-09-15", "Condition/pregnancy"),
    ("pregnant", "pregnancy", 2, None, None, None, "absent", "2026-03-01", "Observation/pregnancy-march"),
    ("pregnant", "ecog", 0, 0, "", None, None, "2026-11-30", "Observation/ecog"),
    ("pregnant", "karnofsky", 0, 90, "", None, None, "2026-11-30", "Observation/karnofsky"),
    ("brain-mets-nsclc", "brain_metastases", 0, None, None, None, "present", "2026-10-19", "Condition/brain-mets-new"),
    ("brain-mets-nsclc", "brain_metastases", 1, None, None, None, "present", "2026-04-02", "Condition/brain-mets"),
    ("brain-mets-nsclc", "karnofsky", 0, 70, "", None, None, "2026-11-26", "Observation/karnofsky"),
    ("brain-mets-nsclc", "sbp", 0, 132, "mm[Hg]", None, None, "2026-11-26", "Observation/bp"),
    ("brain-mets-nsclc", "dbp", 0, 84, "mm[Hg]", None, None, "2026-11-26", "Observation/bp"),
    ("brain-mets-nsclc", "crcl", 0, 80, "mL/min", None, None, "2026-11-20", "Observation/crcl"),
    ("brain-mets-nsclc", "platelets", 0, 210, "10*3/uL", None, None, "2026-11-20", "Observation/platelets"),
    ("elderly-ecog3", "ecog", 0, 3, "", None, None, "2026-11-27", "Observation/ecog-november"),
    ("elderly-ecog3", "ecog", 1, 2, "", None, None, "2026-08-15", "Observation/ecog-august"),
    ("elderly-ecog3", "karnofsky", 0, 40, "", None, None, "2026-11-27", "Observation/karnofsky"),
    ("elderly-ecog3", "creatinine", 0, 1.4, "mg/dL", 1.1, None, "2026-11-27", "Observation/creatinine"),
    ("elderly-ecog3", "hba1c", 0, 7.8, "%", None, None, "2026-10-02", "Observation/hba1c"),
    ("elderly-ecog3", "bmi", 0, 19.5, "kg/m2", None, None, "2026-11-27", "Observation/bmi"),
]


@pytest.mark.parametrize("name,analyte,position,quantity,unit,uln,interpretation,when,reference", VALUES,
                         ids=[f"{v[0]}:{v[1]}[{v[2]}]" for v in VALUES])
def test_value(name, analyte, position, quantity, unit, uln, interpretation, when, reference):
    value = facts(name).values[analyte][position]
    assert value == Value(analyte, reference, None if quantity is None else float(quantity), unit,
                          None if uln is None else float(uln), interpretation, date.fromisoformat(when))


# Every value of each bundle, by analyte: nothing more is read than the table says.
COUNTS = {
    "her2-positive-metastatic-breast": {"her2": 1, "er": 1, "pr": 1, "ecog": 2, "anc": 1, "platelets": 1,
                                        "hemoglobin": 1, "bilirubin": 1, "alt": 1, "creatinine": 1, "lvef": 1},
    # the entered-in-error ANC and the platelet count with a dataAbsentReason are not values
    "poor-organ-function": {"anc": 1, "platelets": 1, "bilirubin": 1, "ast": 1, "alt": 1, "creatinine": 1,
                            "egfr": 1, "albumin": 1, "inr": 1, "ecog": 1},
    # pregnancy 'Unknown' gives no value; the hCG Observation has no code we read
    "pregnant": {"pregnancy": 3, "ecog": 1, "karnofsky": 1, "hemoglobin": 1},
    # the bone metastasis has a bodySite that is not brain
    "brain-mets-nsclc": {"brain_metastases": 2, "ecog": 1, "karnofsky": 1, "sbp": 1, "dbp": 1, "egfr": 1,
                         "crcl": 1, "platelets": 1},
    # the refuted brain metastasis is not a fact
    "elderly-ecog3": {"ecog": 2, "karnofsky": 1, "creatinine": 1, "crcl": 1, "albumin": 1, "hba1c": 1,
                      "bmi": 1, "hemoglobin": 1},
    "minimal": {},
}


@pytest.mark.parametrize("name", BUNDLES)
def test_values_read_and_nothing_else(name):
    read = facts(name)
    assert {k: len(v) for k, v in read.values.items()} == COUNTS[name]
    assert read.problems == []
    for values in read.values.values():
        dates = [v.when for v in values]
        assert dates == sorted(dates, reverse=True), "newest first"


# (bundle, reference, birth date, gender, age on 2026-12-03, conditions, medications, procedures)
PATIENTS = [
    ("her2-positive-metastatic-breast", "Patient/her2-breast-pt", "1972-04-18", "female", 54,
     ["HER2-positive metastatic breast cancer"], ["trastuzumab"], ["Core needle biopsy of left breast"]),
    ("poor-organ-function", "Patient/poor-organ-pt", "1961-09-30", "male", 65,
     ["Metastatic colorectal adenocarcinoma"], [], []),
    ("pregnant", "Patient/pregnant-pt", "1994-06-12", "female", 32,
     ["Classical Hodgkin lymphoma", "Pregnant"], [], []),  # the resolved anaemia is left out
    ("brain-mets-nsclc", "Patient/brain-mets-pt", "1958-01-23", "male", 68,
     ["Non-small cell lung cancer, EGFR exon 19 deletion", "Secondary malignant neoplasm of brain",
      "New cerebellar metastasis", "Metastasis to lumbar spine"],
     ["osimertinib 80 mg tablet"], ["Stereotactic radiosurgery of brain metastasis"]),
    ("elderly-ecog3", "Patient/elderly-pt", "1941-02-28", "female", 85,
     ["Metastatic pancreatic adenocarcinoma", "Type 2 diabetes mellitus"], ["metformin 500 mg twice daily"], []),
    ("minimal", "Patient/minimal-pt", "1980-07-01", "male", 46, ["Prostate adenocarcinoma"], [], []),
]


@pytest.mark.parametrize("name,reference,born,gender,age,conditions,medications,procedures", PATIENTS,
                         ids=[p[0] for p in PATIENTS])
def test_patient(name, reference, born, gender, age, conditions, medications, procedures):
    read = facts(name)
    assert (read.reference, read.birth_date, read.gender) == (reference, date.fromisoformat(born), gender)
    assert int(read.age(TODAY)) == age and age <= read.age(TODAY) < age + 1
    assert [c.text for c in read.conditions] == conditions
    assert [m.text for m in read.medications] == medications
    assert [p.text for p in read.procedures] == procedures


def test_condition_codings_and_dates():
    cancer = facts("her2-positive-metastatic-breast").conditions[0]
    assert cancer.reference == "Condition/breast-cancer" and cancer.when == date(2026, 2, 10)
    assert cancer.codings == (("http://snomed.info/sct", "254837009", "Malignant neoplasm of breast (disorder)"),)
    assert facts("elderly-ecog3").conditions[1].when == date(2009, 1, 1)  # a partial date: its first day


AGES = [("1980-07-01", "2026-07-01", 46.0), ("1980-07-01", "2026-06-30", 45 + 364 / 365),
        ("2000-02-29", "2026-03-01", 26.0), ("1972-04-18", "2026-10-18", 54.5), (None, "2026-12-03", None)]


@pytest.mark.parametrize("born,on,age", AGES)
def test_age(born, on, age):
    read = PatientFacts(birth_date=date.fromisoformat(born) if born else None)
    assert read.age(date.fromisoformat(on)) == pytest.approx(age, abs=0.002) if age is not None else \
        read.age(date.fromisoformat(on)) is None


CONVERSIONS = [
    ("hemoglobin", 11.8, "g/dL", "g/L", 118.0),
    ("hemoglobin", 118, "g/L", "g/dL", 11.8),
    ("hemoglobin", 10, "g/dL", "mmol/L", 6.206),
    ("hemoglobin", 124.12, "g/L", "mmol/L", 7.702892),
    ("platelets", 60000, "/mm3", "10*9/L", 60.0),
    ("anc", 1500, "/uL", "10*9/L", 1.5),
    ("platelets", 180, "10*9/L", "10*3/uL", 180.0),
    ("bilirubin", 51, "umol/L", "mg/dL", 51 / 17.1),
    ("bilirubin", 1.2, "mg/dL", "umol/L", 20.52),
    ("creatinine", 0.9, "mg/dL", "umol/L", 79.56),
    ("creatinine", 150, "umol/L", "mg/dL", 150 / 88.4),
    ("hba1c", 7.0, "%", "mmol/mol", 53.0),
    ("hba1c", 53, "mmol/mol", "%", 7.0),
    ("hba1c", 6.5, "%", "mmol/mol", 47.5),
    ("alt", 30, "U/L", "U/L", 30.0),
    ("crcl", 60, "mL/min", "mL/min/{1.73_m2}", None),
    ("egfr", 60, "mL/min/{1.73_m2}", "mL/min", None),
    ("bilirubin", 1.0, "mg/dL", "g/L", None),
    ("alt", 30, "U/L", "umol/L", None),
    ("hemoglobin", 11.8, "g/dL", "umol/L", None),  # bilirubin's factor is not hemoglobin's
    ("creatinine", 1, "mg/dL", "nonsense", None),
]


@pytest.mark.parametrize("analyte,value,unit,to,expected", CONVERSIONS,
                         ids=[f"{c[0]}:{c[2]}->{c[3]}" for c in CONVERSIONS])
def test_convert(analyte, value, unit, to, expected):
    result = convert(analyte, value, unit, to)
    assert result is None if expected is None else result == pytest.approx(expected, abs=0.05)


def test_uln_multiple():
    bilirubin = facts("poor-organ-function").values["bilirubin"][0]
    assert uln_multiple(bilirubin) == pytest.approx(51 / 21)
    assert uln_multiple(facts("poor-organ-function").values["alt"][0]) is None
    assert uln_multiple(facts("pregnant").values["pregnancy"][0]) is None


def _coded(node, path="match-patient.json"):
    if isinstance(node, dict):
        if "code" in node or "factor" in node:
            yield path, node
        for key, child in node.items():
            yield from _coded(child, f"{path}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _coded(child, f"{path}[{i}]")


CODED = list(_coded(load_mapping("match-patient.json")))


@pytest.mark.parametrize("path,entry", CODED, ids=[p for p, _ in CODED])
def test_every_code_and_factor_cites_its_source(path, entry):
    assert isinstance(entry.get("source"), str) and len(entry["source"]) > 20, f"{path} has no source"
    facts_analytes = {a["key"] for a in load_mapping("eligibility-facts.json")["analytes"]}
    assert entry.get("analyte", "anc") in facts_analytes


def test_the_mapping_reads_every_analyte_by_its_own_code():
    table = load_mapping("match-patient.json")
    own = {(a["coding"]["system"], a["coding"]["code"]): a["key"] for a in load_mapping("eligibility-facts.json")["analytes"]}
    mapped = {(c["system"], c["code"]): c["analyte"] for c in table["observationCodes"] + table["conditionCodes"]}
    assert own.items() <= mapped.items()
    assert len(CODED) > 60


def _patient(**extra):
    return {"resource": {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1970-01-01", **extra}}


def _anc(**value):
    return {"resource": {"resourceType": "Observation", "id": "x", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]}, **value}}


REFUSED = [
    ("a list", [], "Bundle"),
    ("a Patient", _patient()["resource"], "Bundle"),
    ("not JSON object", "Bundle", "Bundle"),
    ("entry not a list", {"resourceType": "Bundle", "entry": {"resource": {}}}, "Bundle.entry"),
    ("two Patients", {"resourceType": "Bundle", "entry": [_patient(), _anc(), _patient(id="q")]}, "Bundle.entry[2]"),
]


@pytest.mark.parametrize("label,body,expression", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_bodies(label, body, expression):
    with pytest.raises(InvalidRequest) as caught:
        read_patient(body)
    assert caught.value.expression == expression and caught.value.status == 400


NOTED = [
    ("entry not an object", [7], "entry[1]: not a resource"),
    ("resource without resourceType", [{"resource": {"id": "y"}}], "entry[1]: not a resource"),
    ("value a string", [_anc(valueQuantity={"value": "2.1", "unit": "10^9/L"})],
     "entry[1] Observation/x: valueQuantity.value is not a number"),
    ("value missing", [_anc(valueQuantity={"unit": "10^9/L"})], "entry[1] Observation/x: valueQuantity.value is missing"),
    ("quantity a list", [_anc(valueQuantity=[2.1])], "entry[1] Observation/x: valueQuantity is not an object"),
    ("no unit", [_anc(valueQuantity={"value": 2.1})], "entry[1] Observation/x: valueQuantity has no unit"),
    ("unknown unit", [_anc(valueQuantity={"value": 2.1, "unit": "K/cumm"})], "entry[1] Observation/x: valueQuantity has no unit"),
]


@pytest.mark.parametrize("label,entries,problem", NOTED, ids=[n[0] for n in NOTED])
def test_unreadable_entries_are_noted(label, entries, problem):
    read = read_patient({"resourceType": "Bundle", "entry": [_patient()] + entries})
    assert any(p.startswith(problem) for p in read.problems), read.problems
    assert read.reference == "Patient/p"


def test_a_value_without_unit_is_kept_with_no_unit():
    read = read_patient({"resourceType": "Bundle", "entry": [_anc(valueQuantity={"value": 2.1, "unit": "K/cumm"})]})
    assert read.values["anc"][0].unit is None and read.values["anc"][0].quantity == 2.1 and read.reference is None


JUNK = [None, True, 3, "x", [], {}, [None], {"coding": "x"}]


def _mutations():
    for name in BUNDLES:
        for index, entry in enumerate(bundle(name)["entry"]):
            for key in entry["resource"]:
                if key != "resourceType":
                    yield name, index, key


@pytest.mark.parametrize("name", BUNDLES)
def test_any_field_of_the_wrong_type_never_raises(name):
    """Each field of each resource (and each field one level down) replaced by junk of every JSON
    type: read_patient notes or skips it, and never raises."""
    original = bundle(name)
    for index, entry in enumerate(original["entry"]):
        for key, child in entry["resource"].items():
            if key in ("resourceType", "id"):
                continue
            paths = [(key,)] + [(key, sub) for sub in (child if isinstance(child, dict) else {})]
            paths += [(key, 0, sub) for sub in (child[0] if isinstance(child, list) and child and
                                                 isinstance(child[0], dict) else {})]
            for path in paths:
                for junk in JUNK:
                    mutated = copy.deepcopy(original)
                    target = mutated["entry"][index]["resource"]
                    for step in path[:-1]:
                        target = target[step]
                    target[path[-1]] = junk
                    assert isinstance(read_patient(mutated), PatientFacts)


def test_the_same_patient_twice_is_one_patient():
    assert read_patient({"resourceType": "Bundle", "entry": [_patient(), _patient()]}).reference == "Patient/p"
