"""Every code in mappings/ is right: FHIR codes exist in the official CodeSystems, with their
official display; external codes carry a source; the published CodeSystem is valid."""
from __future__ import annotations

import pytest

from fhirstudy.terminology import condition_code_system, load_mapping
from fhirstudy.validation import validate_resource

TABLE = load_mapping("ctgov-to-fhir.json")
OFFICIAL = load_mapping("fhir-r5-codesystems.json")["codeSystems"]
ENTRIES = [(section, key, entry) for section, body in TABLE.items() if not section.startswith("_")
           for key, entry in body["codes"].items()]


@pytest.mark.parametrize("section,key,entry", ENTRIES, ids=[f"{s}:{k}" for s, k, _ in ENTRIES])
def test_fhir_code_exists_with_official_display(section, key, entry):
    system = TABLE[section]["system"]
    assert system in OFFICIAL, f"{system} is not an official R5 CodeSystem we extracted"
    codes = OFFICIAL[system]["codes"]
    assert entry["code"] in codes, f"{section}.{key}: {entry['code']} is not a code of {system}"
    assert entry["display"] == codes[entry["code"]]


def test_every_ctgov_status_and_phase_is_considered():
    from fhirstudy.trial import OVERALL_STATUSES, PHASES

    mapped = set(TABLE["overallStatus"]["codes"])
    # UNKNOWN maps through lastKnownStatus; WITHHELD has no FHIR counterpart (text only).
    assert set(OVERALL_STATUSES) - mapped == {"UNKNOWN", "WITHHELD"}
    assert set(PHASES) <= set(TABLE["phase"]["codes"])


def test_external_condition_codes_cite_their_source():
    for concept in load_mapping("conditions.json")["concepts"]:
        for coding in concept["codings"]:
            assert coding.get("source"), f"{concept['code']}: {coding['system']}|{coding['code']} has no source"
            if coding["system"] == "https://www.nlm.nih.gov/mesh":
                assert "derivedsection" in coding["source"].lower() or "NLM MeSH tree line" in coding["source"], \
                    "MeSH codes come from ClinicalTrials.gov's derivedSection or NLM's MeSH tree file"


def test_condition_code_system_is_valid_fhir():
    cs = condition_code_system()
    validate_resource(cs)
    assert cs["url"] == "https://fhirstudy.org/fhir/CodeSystem/condition"
    assert {c["code"] for c in cs["concept"]} >= {"breast-cancer"}
    assert cs["count"] == len(cs["concept"])


BREAST = [
    "Breast Cancer", "HER2 Negative Breast Cancer", "Breast Cancer Stage IV", "HER2-positive Metastatic Breast Cancer",
    "Triple Negative Breast Neoplasms", "HR-positive, HER2-negative Breast Cancer", "Carcinoma of the Breast",
    "Metastatic Breast Carcinoma", "Cancer of the breast", "Inflammatory Breast Cancer", "TNBC",
]
NOT_BREAST = [
    "Breastfeeding", "Breast Feeding", "Lung Cancer", "Fibrocystic Breast Disease", "Benign Breast Tumor",
    "Mental Health", "Atopic Dermatitis", "Breast Pain", "Prostate Cancer",
]


@pytest.mark.parametrize("text", BREAST)
def test_breast_cancer_texts_get_the_group_code(text):
    from fhirstudy.terminology import condition_codings

    assert "breast-cancer" in {c["code"] for c in condition_codings(text)}


@pytest.mark.parametrize("text", NOT_BREAST)
def test_other_texts_do_not(text):
    from fhirstudy.terminology import condition_codings

    assert "breast-cancer" not in {c["code"] for c in condition_codings(text)}


def test_mesh_id_alone_is_enough():
    from fhirstudy.terminology import condition_codings

    assert "breast-cancer" in {c["code"] for c in condition_codings("PALLAS", frozenset({"D000001943"}))}
