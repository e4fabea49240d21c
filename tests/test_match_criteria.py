"""One eligibility characteristic against one patient (fhirstudy.matching.criteria): met, not met or
unknown, with units converted, windows kept and doubt turned into "unknown", never into a guess."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from fhirstudy.matching.criteria import MET, NOT_MET, UNKNOWN, fits, judge
from fhirstudy.matching.patient import Diagnosis, PatientFacts, Value

ON = date(2026, 12, 3)
RECENT = ON - timedelta(days=3)
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def _q(value, code, comparator=None):
    out = {"value": value, "system": UCUM, "code": code} if code else {"value": value}
    return {**out, "comparator": comparator} if comparator else out


def _fact(loinc: str, **value) -> dict:
    return {"definitionByTypeAndValue": {"type": {"coding": [{"system": LOINC, "code": loinc}]}, **value}}


ANC_15 = _fact("751-8", valueQuantity=_q(1.5, "10*9/L", ">="))
BILI_ULN = _fact("1975-2", valueQuantity=_q(1.5, "{ULN}", "<="))
BILI_MG = _fact("1975-2", valueQuantity=_q(1.5, "mg/dL", "<="))
HB_9 = _fact("718-7", valueQuantity=_q(9, "g/dL", ">="))
ECOG_01 = _fact("89247-1", valueRange={"low": {"value": 0}, "high": {"value": 1}})
ALT_COND = {**_fact("1742-6", valueQuantity=_q(2.5, "{ULN}", "<=")), "note": [{"text": "or <= 5 x ULN with liver metastases"}]}
HER2_NEG = _fact("48676-1", valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA6577-6"}]})
PREGNANT = {"definitionByTypeAndValue": {"type": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]},
                                         "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                                                              "code": "52101004"}]}}}
AGE_18_65 = {"linkId": "age", "definitionByTypeAndValue": {
    "type": {"coding": [{"system": "http://snomed.info/sct", "code": "397669002"}]},
    "valueRange": {"low": _q(18, "a"), "high": _q(65, "a")}}}
AGE_6MO = {"linkId": "age", "definitionByTypeAndValue": {
    "type": {"coding": [{"system": "http://snomed.info/sct", "code": "397669002"}]}, "valueRange": {"low": _q(6, "mo")}}}
FEMALE = {"linkId": "sex", "definitionByTypeAndValue": {"type": {"text": "Sex"}, "valueCodeableConcept": {
    "coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}]}}}


def _patient(*values: Value, gender="female", born=date(1972, 4, 18), conditions=()) -> PatientFacts:
    by: dict = {}
    for v in values:
        by.setdefault(v.analyte, []).append(v)
    return PatientFacts(reference="Patient/p", birth_date=born, gender=gender, values=by,
                        conditions=list(conditions), medications=[], procedures=[], problems=[])


def _v(analyte, quantity=None, unit=None, uln=None, interpretation=None, when=RECENT, ref="Observation/o"):
    return Value(analyte=analyte, reference=ref, quantity=quantity, unit=unit, uln=uln,
                 interpretation=interpretation, when=when)


CASES = [  # characteristic, patient, expected verdict
    ("anc in the criterion's unit", ANC_15, _patient(_v("anc", 2.1, "10*9/L")), MET),
    ("anc in /mm3, converted exactly", ANC_15, _patient(_v("anc", 1500, "/mm3")), MET),
    ("anc too low", ANC_15, _patient(_v("anc", 1.2, "10*9/L")), NOT_MET),
    ("anc 800 /uL too low", ANC_15, _patient(_v("anc", 800, "/uL")), NOT_MET),
    ("anc without a unit", ANC_15, _patient(_v("anc", 2.1, None)), UNKNOWN),
    ("anc in a unit that does not convert", ANC_15, _patient(_v("anc", 2.1, "mg/dL")), UNKNOWN),
    ("anc older than its window", ANC_15, _patient(_v("anc", 0.5, "10*9/L", when=ON - timedelta(days=400))), UNKNOWN),
    ("the newest anc decides", ANC_15, _patient(_v("anc", 2.0, "10*9/L", ref="Observation/new"),
                                                _v("anc", 0.9, "10*9/L", when=ON - timedelta(days=30))), MET),
    ("no anc", ANC_15, _patient(), UNKNOWN),
    ("bilirubin x ULN from the reference range", BILI_ULN, _patient(_v("bilirubin", 0.8, "mg/dL", uln=1.2)), MET),
    ("bilirubin above 1.5 x ULN", BILI_ULN, _patient(_v("bilirubin", 2.0, "mg/dL", uln=1.2)), NOT_MET),
    ("bilirubin without a reference range", BILI_ULN, _patient(_v("bilirubin", 0.8, "mg/dL")), UNKNOWN),
    ("bilirubin 51 umol/L is 3 mg/dL", BILI_MG, _patient(_v("bilirubin", 51, "umol/L")), NOT_MET),
    ("bilirubin 20 umol/L is 1.2 mg/dL", BILI_MG, _patient(_v("bilirubin", 20, "umol/L")), MET),
    ("bilirubin at the limit after converting is never a failure", BILI_MG,
     _patient(_v("bilirubin", 25.9, "umol/L")), UNKNOWN),
    ("hemoglobin 95 g/L is 9.5 g/dL", HB_9, _patient(_v("hemoglobin", 95, "g/L")), MET),
    ("hemoglobin 85 g/L is 8.5 g/dL", HB_9, _patient(_v("hemoglobin", 85, "g/L")), NOT_MET),
    ("ecog 1 in 0-1", ECOG_01, _patient(_v("ecog", 1, "")), MET),
    ("ecog 3 not in 0-1", ECOG_01, _patient(_v("ecog", 3, "")), NOT_MET),
    ("a conditional threshold failed is unknown", ALT_COND, _patient(_v("alt", 120, "U/L", uln=40)), UNKNOWN),
    ("a conditional threshold met", ALT_COND, _patient(_v("alt", 60, "U/L", uln=40)), MET),
    ("her2 negative wanted, negative", HER2_NEG, _patient(_v("her2", interpretation="negative")), MET),
    ("her2 negative wanted, positive", HER2_NEG, _patient(_v("her2", interpretation="positive")), NOT_MET),
    ("her2 unknown", HER2_NEG, _patient(), UNKNOWN),
    ("a man is not pregnant", PREGNANT, _patient(gender="male"), NOT_MET),
    ("pregnancy not recorded", PREGNANT, _patient(), UNKNOWN),
    ("pregnant", PREGNANT, _patient(_v("pregnancy", interpretation="present")), MET),
    ("not pregnant", PREGNANT, _patient(_v("pregnancy", interpretation="absent")), NOT_MET),
    ("an old pregnancy test says nothing", PREGNANT,
     _patient(_v("pregnancy", interpretation="absent", when=ON - timedelta(days=90))), UNKNOWN),
    ("age 54 in 18-65", AGE_18_65, _patient(), MET),
    ("65 until the 66th birthday", AGE_18_65, _patient(born=date(1960, 12, 4)), MET),
    ("66 is over 65", AGE_18_65, _patient(born=date(1960, 12, 3)), NOT_MET),
    ("17 is under 18", AGE_18_65, _patient(born=date(2009, 6, 1)), NOT_MET),
    ("no birth date", AGE_18_65, _patient(born=None), UNKNOWN),
    ("8 months is at least 6 months", AGE_6MO, _patient(born=date(2026, 4, 1)), MET),
    ("5 months is under 6 months", AGE_6MO, _patient(born=date(2026, 6, 20)), NOT_MET),
    ("female", FEMALE, _patient(), MET),
    ("male", FEMALE, _patient(gender="male"), NOT_MET),
    ("gender unknown", FEMALE, _patient(gender="unknown"), UNKNOWN),
    ("text only", {"definitionCodeableConcept": {"text": "Life expectancy of 12 weeks"}}, _patient(), UNKNOWN),
    ("all-of with one item failed", {"definitionByCombination": {"code": "all-of", "characteristic": [
        ANC_15, HB_9, {"definitionCodeableConcept": {"text": "adequate renal function"}}]}},
     _patient(_v("anc", 2.0, "10*9/L"), _v("hemoglobin", 8, "g/dL")), NOT_MET),
    ("all-of with every item met but a text one", {"definitionByCombination": {"code": "all-of", "characteristic": [
        ANC_15, HB_9, {"definitionCodeableConcept": {"text": "adequate renal function"}}]}},
     _patient(_v("anc", 2.0, "10*9/L"), _v("hemoglobin", 10, "g/dL")), UNKNOWN),
    ("all-of with every item met", {"definitionByCombination": {"code": "all-of", "characteristic": [ANC_15, HB_9]}},
     _patient(_v("anc", 2.0, "10*9/L"), _v("hemoglobin", 10, "g/dL")), MET),
    ("any-of with one item met", {"definitionByCombination": {"code": "any-of", "characteristic": [
        {"definitionCodeableConcept": {"text": "HIV"}}, PREGNANT]}},
     _patient(_v("pregnancy", interpretation="present")), MET),
    ("any-of with every item not met", {"definitionByCombination": {"code": "any-of", "characteristic": [
        ANC_15, PREGNANT]}}, _patient(_v("anc", 1.0, "10*9/L"), gender="male"), NOT_MET),
]


@pytest.mark.parametrize(("characteristic", "patient", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_judge(characteristic, patient, expected):
    verdict = judge(characteristic, patient, ON)
    assert verdict.state == expected, verdict.reason
    if expected != UNKNOWN and characteristic.get("definitionByTypeAndValue", {}).get("type", {}).get("coding"):
        assert verdict.evidence, "a decided verdict names the patient resource that decided it"


def test_unknown_says_what_is_missing():
    verdict = judge(ANC_15, _patient(_v("anc", 0.5, "10*9/L", when=ON - timedelta(days=400), ref="Observation/old")), ON)
    assert verdict.state == UNKNOWN
    assert any("751-8" in m and "Observation/old" in m for m in verdict.missing), verdict.missing
    assert judge(ANC_15, _patient(), ON).missing == ("Neutrophils [#/volume] in Blood by Automated count "
                                                     "(http://loinc.org|751-8)",)


@pytest.mark.parametrize(("state", "exclude", "fit"), [
    (MET, False, "pass"), (NOT_MET, False, "fail"), (MET, True, "fail"), (NOT_MET, True, "pass"),
    (UNKNOWN, False, "unknown"), (UNKNOWN, True, "unknown")])
def test_exclusion_criteria_work_the_other_way_round(state, exclude, fit):
    from fhirstudy.matching.criteria import Verdict
    assert fits(Verdict(state), exclude) == fit


def test_healthy_volunteers_refused_is_met_by_a_patient_with_a_condition():
    refused = {"linkId": "healthy-volunteers", "definitionByTypeAndValue": {"type": {"text": "Accepts healthy volunteers"},
                                                                           "valueBoolean": False}}
    ill = _patient(conditions=[Diagnosis("Condition/c", (), "Breast cancer", None)])
    assert judge(refused, ill, ON).state == MET
    assert judge(refused, _patient(), ON).state == UNKNOWN


WINDOWED = {"description": "Adequate organ function within 14 days prior to registration:",
            "definitionByCombination": {"code": "all-of", "characteristic": [
                {"description": "ANC >= 1.5 x 10^9/L", **ANC_15}]}}


@pytest.mark.parametrize(("days_old", "quantity", "expected"), [
    (10, 2.0, MET), (10, 1.0, NOT_MET), (20, 1.0, UNKNOWN), (20, 2.0, UNKNOWN)])
def test_a_criterions_own_window_makes_older_results_decide_nothing(days_old, quantity, expected):
    patient = _patient(_v("anc", quantity, "10*9/L", when=ON - timedelta(days=days_old), ref="Observation/anc"))
    verdict = judge(WINDOWED, patient, ON)
    assert verdict.state == expected
    if expected == UNKNOWN:
        assert any("too old" in m for m in verdict.missing), verdict.missing


@pytest.mark.parametrize(("text", "days"), [
    ("Laboratory values within 14 days prior to registration", 14),
    ("within 4 weeks before randomization", 28),
    ("obtained <= 7 days prior to registration", 7),
    ("ECOG 0-1", None),
    ("no chemotherapy within 14 days", None),   # a washout, not a window for results
])
def test_windows_are_read_from_the_criterion_text(text, days):
    from fhirstudy.matching.criteria import window_days
    assert window_days({"description": text}) == days
