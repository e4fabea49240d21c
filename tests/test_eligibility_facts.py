"""Eligibility criterion text -> computable facts (fhirstudy.eligibility, issue #11 part 1).

Measured on a hand-labelled table of real criteria (tests/data/eligibility-facts-labelled.jsonl,
labelled from the text: what a careful reader can check without doubt; an exclusion list is a
disjunction, so each of its items is a fact of its own; [] = the text must stay text), then one
table of cases per fact kind, the traps that must stay text, the citation of every code, and the
validity of every fact kind inside an R5 EvidenceVariable.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from fhirstudy.eligibility import facts
from fhirstudy.eligibility.facts import flat
from fhirstudy.eligibility.measure import load, measure, report
from fhirstudy.terminology import load_mapping
from tests.conftest import ROOT

TABLE = ROOT / "tests" / "data" / "eligibility-facts-labelled.jsonl"
UCUM = "http://unitsofmeasure.org"


def one(text: str, **kw) -> dict:
    """The single fact of ``text`` as a flat row (fails if there is not exactly one)."""
    rows = flat(facts(text, **kw))
    assert len(rows) == 1, (text, rows)
    return rows[0]


def test_precision_and_recall_on_the_hand_labelled_table():
    rows = load(TABLE)
    assert len(rows) >= 200
    assert sum(1 for r in rows if not r["expected"]) >= 0.35 * len(rows), "about 40% of the table are traps"
    assert all(r["text"] and r["source"] and "exclude" in r for r in rows)
    m = measure(rows)
    assert m.precision >= 0.95 and m.recall >= 0.80, report(m)


COMPARATORS = [
    ("ANC ≥ 1.5 x 10^9/L", ">=", 1.5), ("ANC >= 1.5 x 10^9/L", ">=", 1.5), ("ANC => 1.5 x 10^9/L", ">=", 1.5),
    ("ANC > 1.5 x 10^9/L", ">", 1.5), ("Platelets < 100 x 10^9/L", "<", 100), ("Platelets ≤ 100 x 10^9/L", "<=", 100),
    ("Platelets <= 100 x 10^9/L", "<=", 100), ("Hemoglobin at least 9 g/dL", ">=", 9), ("Hemoglobin no less than 9 g/dL", ">=", 9),
    ("Hemoglobin greater than 9 g/dL", ">", 9), ("Hemoglobin more than 9 g/dL", ">", 9), ("Hemoglobin less than 9 g/dL", "<", 9),
    ("Total bilirubin no more than 1.5 x ULN", "<=", 1.5), ("Total bilirubin up to 1.5 x ULN", "<=", 1.5),
    ("Hemoglobin greater than or equal to 9 g/dL", ">=", 9), ("Hemoglobin 9 g/dL or more", ">=", 9),
    ("Creatinine clearance 60 mL/min or higher", ">=", 60), ("HbA1c ≥5.7% or higher", ">=", 5.7), ("ECOG PS ≤ 1", "<=", 1),
    ("Karnofsky performance score >/= 30", ">=", 30), ("Total bilirubin </= 1.5 x ULN", "<=", 1.5),
]


@pytest.mark.parametrize(("text", "comparator", "value"), COMPARATORS)
def test_each_comparator_form(text, comparator, value):
    row = one(text)
    assert (row["comparator"], row["value"]) == (comparator, value)


UNITS = [
    ("ANC ≥1.5 × 10⁹/L", "anc", 1.5, "10*9/L"), ("ANC ≥ 1.5 x10^9/l", "anc", 1.5, "10*9/L"),
    ("Neutrophil count (ANC)≥1.5×109/L", "anc", 1.5, "10*9/L"), ("Absolute neutrophil count ≥ 1,500/mm³", "anc", 1500, "/mm3"),
    ("Absolute neutrophil count (ANC) ≥ 1,500/μL", "anc", 1500, "/uL"), ("ANC ≥ 1500 cells/µL", "anc", 1500, "/uL"),
    ("Platelets ≥ 100,000/ mm3", "platelets", 100000, "/mm3"), ("Platelets ≥ 100 x 10^3/uL", "platelets", 100, "10*3/uL"),
    ("Hemoglobin ≥ 90 g/L", "hemoglobin", 90, "g/L"), ("Total bilirubin ≤ 1.5 mg/dl", "bilirubin", 1.5, "mg/dL"),
    ("Serum creatinine ≤ 133 µmol/L", "creatinine", 133, "umol/L"), ("Serum creatinine ≤ 133 umol/L", "creatinine", 133, "umol/L"),
    ("Creatinine clearance ≥ 60 mL/min", "crcl", 60, "mL/min"), ("eGFR ≥ 60 mL/min/1.73 m2", "egfr", 60, "mL/min/{1.73_m2}"),
    ("LVEF ≥ 50%", "lvef", 50, "%"), ("HbA1c ≤ 10%", "hba1c", 10, "%"), ("HbA1c > 48 mmol/mol", "hba1c", 48, "mmol/mol"),
    ("BMI ≥ 30 kg/m2", "bmi", 30, "kg/m2"), ("BMI > 30", "bmi", 30, "kg/m2"), ("Systolic blood pressure > 160 mmHg", "sbp", 160, "mm[Hg]"),
    ("Diastolic blood pressure > 100 mmHg", "dbp", 100, "mm[Hg]"), ("Serum albumin ≥ 3.0 g/dL", "albumin", 3, "g/dL"),
    ("INR ≤ 1.5", "inr", 1.5, ""), ("Karnofsky performance status ≥ 70%", "karnofsky", 70, ""),
    ("Hemoglobin ≥ 9.0 g/dL (5.6 mmol/L)", "hemoglobin", 9, "g/dL"),      # the value again in other units
    ("ANC ≥ 1500/mm3 (1.5 x 10^9/L)", "anc", 1500, "/mm3"), ("Platelet count < 100 x 109 /L (100 000 per mm3)", "platelets", 100, "10*9/L"),
    ("LVEF ≥ 50% as assessed by echocardiogram (ECHO) or multigated acquisition (MUGA) scan", "lvef", 50, "%"), ("HbA1c above 48mmol/mol (or 6.5%)", "hba1c", 48, "mmol/mol"),
]


@pytest.mark.parametrize(("text", "analyte", "value", "unit"), UNITS)
def test_units_as_written_become_ucum(text, analyte, value, unit):
    row = one(text)
    assert (row["analyte"], row["value"], row["unit"]) == (analyte, value, unit)


def test_a_quantity_carries_ucum_system_code_and_unit():
    q = facts("ANC ≥ 1.5 × 10⁹/L")["definitionByTypeAndValue"]["valueQuantity"]
    assert q == {"value": 1.5, "comparator": ">=", "unit": "10^9/L", "system": UCUM, "code": "10*9/L"}
    assert "comparator" not in facts("ECOG performance status of 1")["definitionByTypeAndValue"]["valueQuantity"]


@pytest.mark.parametrize(("text", "value"), [
    ("ANC ≥ 1,5 x 10^9/L", 1.5), ("Hemoglobin ≥ 9,5 g/dL", 9.5), ("Body Mass Index > 39,99", 39.99),
    ("ANC ≥ 1,500/mm3", 1500), ("Platelets ≥ 100,000/mm3", 100000), ("Platelets ≥ 100 000 per mm3", 100000),
    ("Neutrophils ≥ 1,0 x 10^9/l", 1), ("Hb ≥ 5,6 mmol/L", 5.6),
])
def test_decimal_comma_and_thousands_separator(text, value):
    assert one(text)["value"] == value


ULN = [
    "AST ≤ 2.5 x ULN", "AST ≤ 2.5 × upper limit of normal", "AST ≤ 2.5 times the ULN", "AST ≤ 2.5 x institutional ULN",
    "AST(SGOT) ≤ 2.5 X institutional upper limit of normal", "AST ≤ 2.5 × ULN (upper limit of normal)", "AST ≤ 2.5 ULN",
]


@pytest.mark.parametrize("text", ULN)
def test_multiples_of_the_upper_limit_of_normal(text):
    q = facts(text)["definitionByTypeAndValue"]["valueQuantity"]
    assert q == {"value": 2.5, "comparator": "<=", "unit": "x ULN", "system": UCUM, "code": "{ULN}"}


def test_the_upper_limit_itself_is_one_times_uln():
    assert one("Total serum bilirubin ≤ ULN") == {"analyte": "bilirubin", "comparator": "<=", "value": 1, "unit": "{ULN}"}


RANGES = [
    ("ECOG 0-1", "ecog", 0, 1, ""), ("ECOG performance status of 0 or 1", "ecog", 0, 1, ""), ("ECOG 0, 1, or 2", "ecog", 0, 2, ""),
    ("ECOG performance status score of 0~2", "ecog", 0, 2, ""), ("Karnofsky Performance Status 70-100", "karnofsky", 70, 100, ""),
    ("BMI 18.5-30 kg/m2", "bmi", 18.5, 30, "kg/m2"), ("Body mass index between 18 and 27", "bmi", 18, 27, "kg/m2"),
    ("HbA1c between 7% and 10%", "hba1c", 7, 10, "%"), ("A1c result ≥8.0% and ≤12.0%", "hba1c", 8, 12, "%"),
    ("BMI ≥18,5 and ≤27,5", "bmi", 18.5, 27.5, "kg/m2"), ("HbA1c 7.0% to 10.5% (53 to 91 mmol/mol)", "hba1c", 7, 10.5, "%"), ("Body mass index (BMI) of 18 to 40 kg/m2", "bmi", 18, 40, "kg/m2"),
]


@pytest.mark.parametrize(("text", "analyte", "low", "high", "unit"), RANGES)
def test_ranges_are_inclusive_value_ranges(text, analyte, low, high, unit):
    assert one(text) == {"analyte": analyte, "low": low, "high": high, "unit": unit}
    assert "valueRange" in facts(text)["definitionByTypeAndValue"]


def test_an_open_bound_pair_is_two_facts_all_of_them():
    out = facts("Body mass index (BMI) >18 <28", exclude=True)
    assert out["definitionByCombination"]["code"] == "all-of"
    assert [(r["comparator"], r["value"]) for r in flat(out)] == [(">", 18), ("<", 28)]


CODED = [
    ("HER2-negative", "her2", "negative", "LA6577-6"), ("HER2 positive recurrent or metastasis breast cancer.", "her2", "positive", "LA6576-8"),
    ("HER2+ metastatic breast cancer", "her2", "positive", "LA6576-8"), ("ER-positive", "er", "positive", "LA6576-8"),
    ("Progesterone receptor negative", "pr", "negative", "LA6577-6"), ("Pregnant women", "pregnancy", "present", "52101004"),
    ("Pregnancy", "pregnancy", "present", "52101004"), ("Known brain metastases", "brain_metastases", "present", "52101004"),
]


@pytest.mark.parametrize(("text", "analyte", "value", "code"), CODED)
def test_statuses_and_findings_are_coded_values(text, analyte, value, code):
    assert one(text) == {"analyte": analyte, "interpretation": value}
    assert facts(text)["definitionByTypeAndValue"]["valueCodeableConcept"]["coding"][0]["code"] == code


def test_several_facts_are_all_of_one_characteristic_each():
    out = facts("ANC >= 1.5 x 10^9/L; platelets >= 100 x 10^9/L")["definitionByCombination"]
    assert out["code"] == "all-of"
    assert [c["description"] for c in out["characteristic"]] == ["ANC >= 1.5 x 10^9/L", "platelets >= 100 x 10^9/L"]
    assert [r["analyte"] for r in flat(facts("AST and ALT <= 2.5 x ULN"))] == ["ast", "alt"]


def test_unreadable_parts_stay_text_beside_the_facts():
    text = ("Hemoglobin≥90g/L; Platelet count (PLT)≥80×109/L; Serum creatinine (Cr) ≤1.5×ULN or creatinine clearance "
            "≥60mL/min (Cockcroft-Gault formula)")
    items = facts(text)["definitionByCombination"]["characteristic"]
    assert items[-1] == {"description": items[-1]["description"], "definitionCodeableConcept": {"text": items[-1]["description"]}}
    assert [r["analyte"] for r in flat(facts(text))] == ["hemoglobin", "platelets"]


def test_a_single_fact_is_never_wrapped_in_a_combination():
    assert set(facts("Adequate hematologic function: ANC ≥ 1.5 × 10^9/L")) == {"definitionByTypeAndValue"}


def test_an_exclusion_list_is_any_of_and_its_multi_fact_items_all_of():
    out = facts("eGFR ≤ 30 mL/min/1.73 m2; AST and ALT ≥ 3 x ULN", exclude=True)["definitionByCombination"]
    assert out["code"] == "any-of"
    assert out["characteristic"][1]["definitionByCombination"]["code"] == "all-of"
    assert facts("eGFR ≤ 30 mL/min/1.73 m2; AST ≥ 3 x ULN")["definitionByCombination"]["code"] == "all-of"


@pytest.mark.parametrize("text", [
    "AST ≤ 2.5 x ULN, or ≤ 5 x ULN with liver metastases",
    "AST ≤ 2.5 x ULN (≤ 5 x ULN if liver metastases)",
    "AST ≤ 2.5 x ULN or ≤ 5 x ULN in patients with liver metastases",
])
def test_a_conditional_threshold_keeps_the_main_one_and_says_the_condition_in_a_note(text):
    out = facts(text)
    assert flat(out) == [{"analyte": "ast", "comparator": "<=", "value": 2.5, "unit": "{ULN}"}]
    assert "liver metastases" in out["note"][0]["text"] and "5 x ULN" in out["note"][0]["text"]


TRAPS = [
    "Pregnant or breastfeeding women",                                  # or between findings
    "AST or ALT > 3 x ULN",                                            # or between analytes
    "creatinine < 1.5 X ULN OR creatinine clearance ≥ 60 mL/min",
    "Total bilirubin within normal limits",                            # not a number
    "Hemoglobin ≥ 9 g/dL without transfusion within 2 weeks",          # time window, transfusion
    "ANC ≥ 1.5 x 10^9/L unless due to benign ethnic neutropenia",       # exception
    "Neutrophil count on or just before chemotherapy due date of >1.5",  # about something else
    "ANC ≥ 1500",                                                      # unknown unit
    "Creatinine < 2.0 ng/dL",                                          # wrong unit
    "Haemoglobin (Hb) ≥10mg/dL (Hct 32%),",                            # wrong unit
    "Life expectancy is not less than 12 weeks;",                      # comparator about something else
    "No more than one systemic chemotherapy for metastatic disease;",
    "Age ≥ 18 years",
    "Healthy adults under age 60",
    "EGFR mutation positive (exon 19 deletion)",                       # the gene, not eGFR
    "HIV-positive patients on combination antiretroviral therapy are ineligible",
    "Eczema Area and Severity Index (EASI) score ≥16 at the screening visit",
    "creatinine phosphokinase levels ≥3 times the upper limit of normal",
    "Adolescent participants: BMI ≥ 16.0",                             # a subgroup's threshold
    "LVEF <50% for mitral insufficiency",                              # for a subgroup
    "Heart failure with left ventricular ejection fraction <50%",      # a conjunction with a disease
    "History of anemia (hemoglobin < 10 g/dL)",
    "HER2 3+ by IHC",
    "ER+ and/or PR+, HER2-",
    "HER2-low breast cancer",
    "Not pregnant",
    "Planning to become pregnant during the study",
    "negative pregnancy test",
    "BMI 18-25 kg/m2; those with BMI up to 28kg/m2 will be included if waist circumference is <96cm.",
    "Estimated glomerular filtration rate 20-60mL/min/1.73m2 based on CKD-EPI(Cr) equation",  # another formula than the code
    "ECOG 0 or 2",                                                     # not a range
    "Platelet count ≥ 1.500/mm3",                                      # thousands dot or decimal point?
    "Blood routine examination standards should be met: (no blood transfusion within 14 days) A. HB > 90 g/L; B. ANC > 1.5 * 109/L",
    "Symptomatic, untreated, or actively progressing CNS metastases",
    "Untreated brain metastases",                                      # 'present' would exclude treated ones too
    "Treated and stable brain metastases are allowed",
    "Known CNS metastases",                                            # CNS is more than the brain of the code
    "Systolic blood pressure ≥130 mmHg OR diastolic blood pressure ≥80 mmHg",
    "Renal: creatinine clearance/GFR ≥ 60 ml/minute/1.73m2",           # a slash between two measures: either
    "Hemoglobin > / = 9 g/dL",                                         # a comparator left over beside the value
]


@pytest.mark.parametrize("text", TRAPS)
def test_doubtful_text_states_no_fact(text):
    assert facts(text) is None, flat(facts(text))


def test_nothing_is_no_fact():
    assert facts("") is None and facts("Signed informed consent") is None


def test_every_code_in_the_table_has_a_source():
    table = load_mapping("eligibility-facts.json")
    assert table["_comment"]
    for analyte in table["analytes"]:
        assert analyte["source"].strip() and analyte["coding"]["code"] and analyte["coding"]["display"], analyte["key"]
    for key, value in table["interpretations"].items():
        assert value["source"].strip() and value["code"], key


# --- validity: every fact kind inside one R5 EvidenceVariable ----------------------------------

KINDS = [
    ("inclusion-1", False, "ECOG performance status 0-1"),                           # valueRange, no unit
    ("inclusion-2", False, "ANC ≥ 1.5 × 10⁹/L"),                                      # valueQuantity with UCUM
    ("inclusion-3", False, "AST ≤ 2.5 x ULN, or ≤ 5 x ULN with liver metastases"),   # {ULN} and a note
    ("inclusion-4", False, "HER2-negative"),                                          # valueCodeableConcept
    ("inclusion-5", False, "ANC >= 1.5 x 10^9/L; platelets >= 100 x 10^9/L; ability to swallow"),  # all-of with text
    ("inclusion-6", False, "BMI ≥ 18.5 and ≤ 35 kg/m2"),                              # range with unit
    ("inclusion-7", False, "ECOG performance status of 1"),                           # equality
    ("exclusion-1", True, "Pregnant women"),                                          # SNOMED finding
    ("exclusion-2", True, "eGFR ≤ 30 mL/min/1.73 m2; AST and ALT ≥ 3 x ULN"),         # any-of with a nested all-of
]


def _evidence_variable() -> dict:
    characteristics = []
    for link_id, exclude, text in KINDS:
        fragment = facts(text, exclude=exclude)
        assert fragment, text
        characteristics.append({"linkId": link_id, "description": text, "exclude": exclude, **fragment})
    return {"resourceType": "EvidenceVariable", "id": "facts-every-kind", "status": "draft",
            "name": "EligibilityFacts", "characteristic": characteristics}


def test_every_fact_kind_is_a_valid_r5_evidence_variable():
    from fhir.resources.evidencevariable import EvidenceVariable

    resource = _evidence_variable()
    parsed = EvidenceVariable.model_validate(resource)
    assert len(parsed.characteristic) == len(KINDS)
    again = json.loads(parsed.model_dump_json(exclude_none=True))
    assert again["characteristic"][2]["note"][0]["text"].startswith("or <= 5 x ULN")


@pytest.mark.peer
def test_every_fact_kind_passes_the_peer_validator(peer_validate, tmp_path):
    path = tmp_path / "EvidenceVariable-facts.json"
    path.write_text(json.dumps(_evidence_variable()))
    result = subprocess.run([str(peer_validate), "r5", str(path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INVALID" not in result.stdout


def test_every_fragment_read_from_the_table_is_valid_r5():
    """Whatever facts() says about a real criterion fits an R5 EvidenceVariable characteristic."""
    from fhir.resources.evidencevariable import EvidenceVariable

    characteristics = []
    for i, row in enumerate(load(TABLE)):
        fragment = facts(row["text"], exclude=row["exclude"])
        if fragment:
            characteristics.append({"linkId": f"c-{i}", "description": row["text"], "exclude": row["exclude"], **fragment})
    assert len(characteristics) > 150
    EvidenceVariable.model_validate({"resourceType": "EvidenceVariable", "status": "draft", "characteristic": characteristics})
