"""Eligibility facts on the mapped EvidenceVariable (R5) and the R4 enrollment Group: real criteria
from the seeds and samples, qualified blocks kept as text, conditional thresholds kept safe in R4."""
from __future__ import annotations

import pytest

from conftest import SAMPLES
from fhirstudy.mappers.evidence_variable import map_trial
from fhirstudy.mappers.r4 import to_r4
from fhirstudy.pipeline import convert
from fhirstudy.trial import Criterion, Provenance, Trial

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def _eligibility(resources: list[dict]) -> dict:
    return next(r for r in resources if r["resourceType"] == "EvidenceVariable" and r["id"].endswith("-eligibility"))


def _by_link(characteristics: list[dict]) -> dict[str, dict]:
    out = {}
    for c in characteristics:
        out[c["linkId"]] = c
        out.update(_by_link((c.get("definitionByCombination") or {}).get("characteristic", [])))
    return out


def _fact(c: dict) -> tuple:
    d = c["definitionByTypeAndValue"]
    kind = next(k for k in d if k.startswith("value"))
    v = d[kind]
    value = ((v["low"]["value"], v["high"]["value"]) if kind == "valueRange" else
             (v.get("comparator"), v["value"], v.get("code")) if kind == "valueQuantity" else v["coding"][0]["code"])
    return d["type"]["coding"][0]["system"], d["type"]["coding"][0]["code"], kind, value


def _trial(*criteria: Criterion) -> Trial:
    return Trial(provenance=Provenance(file="t.txt", record=1, format="text-bulleted"), brief_title="T",
                 identifiers=(), criteria=criteria)


def _resources(conversion) -> list[dict]:
    return [e["resource"] for e in conversion.bundle["entry"]]


def test_seed_organ_function_list_becomes_nested_facts(seed_conversions):
    chars = _by_link(_eligibility(_resources(seed_conversions["004_0908de8918da363a.txt"]))["characteristic"])
    assert _fact(chars["inclusion-2"]) == (LOINC, "89247-1", "valueRange", (0, 1))  # "ECOG score 0-1;"
    assert chars["inclusion-9"]["definitionByCombination"]["code"] == "all-of"
    assert _fact(chars["inclusion-9.1"]) == (LOINC, "718-7", "valueQuantity", (">=", 90, "g/L"))
    assert _fact(chars["inclusion-9.2"]) == (LOINC, "751-8", "valueQuantity", (">=", 1.5, "10*9/L"))
    assert _fact(chars["inclusion-9.4"]) == (LOINC, "1975-2", "valueQuantity", ("<=", 1.5, "{ULN}"))
    # one criterion written as a ';' list: "...; ALT and AST <= 2.5xULN (<=5xULN if has liver
    # metastasis); Serum creatinine <=1.5xULN or creatinine clearance >=60mL/min"
    assert [_fact(chars[f"inclusion-9.{n}"])[1] for n in (5, 6)] == ["1742-6", "1920-8"]
    assert all("liver metastasis" in chars[f"inclusion-9.{n}"]["note"][0]["text"] for n in (5, 6))
    assert chars["inclusion-9.5"]["definitionByTypeAndValue"]["valueQuantity"]["value"] == 2.5
    either = chars["inclusion-9.7"]  # one of two tests: not a fact of either
    assert "definitionByTypeAndValue" not in either and "or creatinine clearance" in either["definitionCodeableConcept"]["text"]


def test_legacy_xml_sample_items_become_facts():
    [conversion] = convert([SAMPLES / "NCT01065844.xml"])
    chars = _by_link(_eligibility(_resources(conversion))["characteristic"])
    assert _fact(chars["inclusion-5.2"]) == (LOINC, "751-8", "valueQuantity", (">=", 1500, "/mm3"))
    assert _fact(chars["inclusion-5.3"]) == (LOINC, "777-3", "valueQuantity", (">=", 100000, "/mm3"))
    assert _fact(chars["inclusion-5.5"]) == (LOINC, "1920-8", "valueQuantity", ("<=", 2.5, "{ULN}"))


def test_text_that_states_nothing_checkable_stays_text():
    [ev] = map_trial(_trial(Criterion(text="Signed informed consent"),
                            Criterion(text="Pregnant or breastfeeding", exclude=True)))
    for c in ev["characteristic"]:
        assert c["definitionCodeableConcept"] == {"text": c["description"]} and "definitionByTypeAndValue" not in c


def test_a_qualified_block_stays_text_because_it_holds_for_part_of_the_study():
    [ev] = map_trial(_trial(Criterion(text="ECOG performance status 0-1", qualifier="Cohort A"),
                            Criterion(text="ECOG performance status 0-1")))
    qualified, plain = ev["characteristic"]
    assert qualified["description"] == "Cohort A: ECOG performance status 0-1"
    assert "definitionByTypeAndValue" not in qualified and qualified["definitionCodeableConcept"]
    assert _fact(plain) == (LOINC, "89247-1", "valueRange", (0, 1))


def test_an_exclusion_list_is_any_of_with_stable_link_ids():
    [ev] = map_trial(_trial(Criterion(text="ALT > 3 x ULN, total bilirubin > 2 x ULN", exclude=True)))
    [c] = ev["characteristic"]
    assert c["linkId"] == "exclusion-1" and c["exclude"] is True
    assert c["definitionByCombination"]["code"] == "any-of"
    assert [(p["linkId"], _fact(p)[1]) for p in c["definitionByCombination"]["characteristic"]] == [
        ("exclusion-1.1", "1742-6"), ("exclusion-1.2", "1975-2")]


def _group(resources: list[dict]) -> dict:
    study = dict(next(r for r in resources if r["resourceType"] == "ResearchStudy"))
    resources = [study, *(r for r in resources if r["resourceType"] != "ResearchStudy")]
    study["recruitment"] = {"eligibility": {"reference": f"EvidenceVariable/{_eligibility(resources)['id']}"}}
    return next(r for r in to_r4(resources) if r["resourceType"] == "Group")


@pytest.mark.parametrize("exclude", [False, True])
def test_r4_group_carries_facts_as_typed_values(exclude):
    [ev] = map_trial(_trial(Criterion(text="ANC >= 1.5 x 10^9/L; platelets >= 100 x 10^9/L"
                                      if not exclude else "ANC < 1.5 x 10^9/L, platelets < 100 x 10^9/L",
                                      exclude=exclude)))
    study = {"resourceType": "ResearchStudy", "id": "x", "status": "active"}
    got = [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"], c["exclude"])
           for c in _group([study, ev])["characteristic"]]
    assert got == [("751-8", 1.5, "10*9/L", exclude), ("777-3", 100, "10*9/L", exclude)]


def test_r4_group_keeps_a_conditional_threshold_in_words(seed_conversions):
    group = _group(_resources(seed_conversions["004_0908de8918da363a.txt"]))
    typed = {c["code"]["coding"][0]["code"] for c in group["characteristic"] if "valueQuantity" in c}
    assert {"718-7", "751-8", "777-3", "1975-2"} <= typed
    assert not typed & {"1742-6", "1920-8"}  # ALT/AST admit more with liver metastases: not a plain threshold
    words = [c["valueCodeableConcept"]["text"] for c in group["characteristic"] if "valueCodeableConcept" in c]
    assert any("liver metastasis" in w and "2.5" in w for w in words)
