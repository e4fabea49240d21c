"""Disease subtypes (HER2-positive, triple-negative, metastatic, EGFR-mutant ...): the text patterns
and eligibility facts that state them, the rules that combine them, the codes on the ResearchStudy,
the served CodeSystem and the ``biomarker`` search parameter."""
from __future__ import annotations

import re

import pytest

from conftest import SAMPLES, SEEDS
from fhirstudy import trial as model
from fhirstudy.mappers import research_study, subtypes
from fhirstudy.mappers.r4 import to_r4
from fhirstudy.terminology import load_mapping, subtype_code_system
from fhirstudy.validation import validate_resource

SYSTEM = "https://fhirstudy.org/fhir/CodeSystem/subtype"
TABLE = load_mapping("subtypes.json")
CODES = [c["code"] for c in TABLE["concepts"]]
TNBC = {"triple-negative", "hr-negative", "her2-negative", "er-negative", "pr-negative"}

# text (one condition, title or keyword) -> the codes a study with only that text gets
TEXTS = [
    # real titles, conditions and keywords: the seeds (/work/main/seeds) and ../shared/ctgov-samples
    ("Inetetamab Plus Cyclophosphamide Metronomic Chemotherapy Plus Aromatase Inhibitor in Metastatic HER2+/HR+ "
     "Breast Cancer", {"her2-positive", "hr-positive", "metastatic"}),
    ("Inetetamab Combined With Pyrotinib and Chemotherapy in the Treatment of HER2 Positive Metastatic Breast Cancer",
     {"her2-positive", "metastatic"}),
    ("Reverse HER2-negative Immune Resistant Breast Cancer", {"her2-negative"}),
    ("HER2 Negative Breast Cancer", {"her2-negative"}),
    ("Inetetamab Combined With Paclitaxel With/Without Pertuzumab for Previously Treated HER2-positive Advanced "
     "Breast Cancer", {"her2-positive", "advanced"}),
    ("A Prospective Study on Efficacy and Safety of Anlotinib Combined With Fulvestrant in Patients With HR-positive "
     "and HER2-negative, Secondary Endocrine-resistant, Locally Advanced or Metastatic Breast Cancer",
     {"hr-positive", "her2-negative", "advanced", "metastatic"}),
    ("PALbociclib CoLlaborative Adjuvant Study: A Randomized Phase III Trial of Palbociclib With Standard Adjuvant "
     "Endocrine Therapy Versus Standard Adjuvant Endocrine Therapy Alone for Hormone Receptor Positive (HR+) / Human "
     "Epidermal Growth Factor Receptor 2 (HER2)-Negative Early Breast Cancer", {"hr-positive", "her2-negative"}),
    ("HR+/HER2- breast cancer", {"hr-positive", "her2-negative"}),
    ("PALbociclib CoLlaborative Adjuvant Study", set()),
    ("Breast Cancer", set()),
    ("Carcinoma, Adenoid Cystic", set()),
    ("Nelfinavir in Recurrent Adenoid Cystic Cancer of the Head and Neck", set()),
    ("Pilot and Feasibility Study for the Treatment of Pre-diabetes in Patients With Cystic Fibrosis", set()),
    ("Study of Dupilumab and Immune Responses in Adults With Atopic Dermatitis (AD)", set()),
    # how receptor status is written
    ("HER2+", {"her2-positive"}),
    ("HER2-positive", {"her2-positive"}),
    ("HER2 positive", {"her2-positive"}),
    ("HER2/neu-positive breast cancer", {"her2-positive"}),
    ("HER2-overexpressing gastric cancer", {"her2-positive"}),
    ("ERBB2 amplified", {"her2-positive"}),
    ("HER2-negative", {"her2-negative"}),
    ("HER2\u2212 breast cancer", {"her2-negative"}),  # Unicode minus sign
    ("HER2\u2013negative breast cancer", {"her2-negative"}),  # en dash
    ("HR\u207a/HER2\u207b", {"hr-positive", "her2-negative"}),  # superscript plus and minus
    ("HR+/HER2-", {"hr-positive", "her2-negative"}),
    ("ER+/HER2- advanced breast cancer", {"er-positive", "hr-positive", "her2-negative", "advanced"}),
    ("ER+ and/or PR+", {"hr-positive"}),  # either may be the positive one: only HR-positive is certain
    ("ER-positive or PR-positive breast cancer", {"hr-positive"}),
    ("estrogen and/or progesterone receptor positive", {"hr-positive"}),
    ("Hormone receptor-positive breast cancer", {"hr-positive"}),
    ("ER-positive breast cancer", {"er-positive", "hr-positive"}),
    ("ER-negative, PR-negative, HER2-negative", TNBC),  # the three together are triple-negative
    ("ER-negative and PR-negative", {"er-negative", "pr-negative", "hr-negative"}),
    ("ER-negative or PR-negative", set()),  # either may be the negative one
    ("triple negative", TNBC),
    ("Triple-Negative Breast Neoplasms", TNBC),
    ("TNBC", TNBC),
    ("mTNBC", TNBC | {"metastatic"}),
    ("HER2-low breast cancer", {"her2-low"}),  # a part of HER2-negative: not coded HER2-negative
    ("HER2-low or HER2-ultralow", {"her2-low"}),
    ("triple-positive breast cancer", {"her2-positive", "er-positive", "pr-positive", "hr-positive"}),
    # both polarities: the study does not select by the marker
    ("HER2-positive or negative", set()),
    ("HER2-positive or HER2-negative breast cancer", set()),
    ("HER2+/- breast cancer", set()),
    ("HR+/- breast cancer", set()),
    ("HR-positive or triple-negative breast cancer", set()),  # an HR-positive patient may be HER2-positive
    ("HER2-negative (HR-positive or triple-negative) breast cancer", {"her2-negative"}),
    # negations and near misses
    ("non-HER2-positive", set()),
    ("HER2-targeted therapy", set()),
    ("anti-HER2 antibody", set()),
    ("HER2 status", set()),
    ("HER2 2+ by IHC", set()),
    ("non-triple-negative breast cancer", set()),
    ("Hazard ratio (HR) of death", set()),
    ("HRD-positive ovarian cancer", set()),
    ("PR 2 weeks", set()),
    # spread and stage
    ("Metastatic Breast Cancer", {"metastatic"}),
    ("Non-metastatic Breast Cancer", set()),
    ("non metastatic castration-resistant prostate cancer", set()),
    ("nmCRPC", set()),
    ("mCRPC", {"metastatic"}),
    ("Metastatic or Non-metastatic Disease", set()),
    ("Breast Cancer With Brain Metastases", {"metastatic"}),
    ("Oligometastatic Prostate Cancer", {"metastatic"}),
    ("Metastasis-free Survival in High-risk Prostate Cancer", set()),
    ("Prevention of Brain Metastases", set()),
    ("Patients Without Distant Metastases", set()),
    ("Micrometastases in sentinel nodes", set()),
    ("Locally Advanced Rectal Cancer", {"advanced"}),
    ("Unresectable Hepatocellular Carcinoma", {"advanced"}),
    ("Advanced Solid Tumors", {"advanced"}),
    ("Advanced or Metastatic Urothelial Carcinoma", {"advanced", "metastatic"}),
    ("Advanced Heart Failure", set()),
    ("Advanced Parkinson's Disease", set()),
    ("Advanced Age Breast Cancer Patients", set()),
    ("Advanced Practice Nurse-led Care for Cancer Survivors", set()),
    ("Advanced Colorectal Adenoma", set()),
    # driver mutations and other markers
    ("EGFR-mutant NSCLC", {"egfr-mutant"}),
    ("Non-small Cell Lung Cancer With EGFR Mutation", {"egfr-mutant"}),
    ("EGFR Exon 20 Insertion", {"egfr-mutant"}),
    ("EGFR T790M", {"egfr-mutant"}),
    ("activating EGFR mutations", {"egfr-mutant"}),
    ("EGFR wild-type NSCLC", set()),
    ("EGFR mutation-negative", set()),
    ("EGFR mutation status", set()),
    ("NSCLC without EGFR or ALK alterations", set()),
    ("EGFR/ALK wild-type", set()),
    ("eGFR decline in chronic kidney disease", set()),  # the kidney's filtration rate, not the gene
    ("EGFR TKI resistance", set()),
    ("ALK-positive NSCLC", {"alk-positive"}),
    ("ALK-rearranged lung cancer", {"alk-positive"}),
    ("EML4-ALK fusion", {"alk-positive"}),
    ("ALK-negative anaplastic large cell lymphoma", set()),
    ("ALK inhibitor", set()),
    ("ROS1-positive NSCLC", {"ros1-positive"}),
    ("gBRCA-mutated breast cancer", {"brca-mutated"}),
    ("BRCA1/2 mutation carriers", {"brca-mutated"}),
    ("Germline BRCA Mutation", {"brca-mutated"}),
    ("BRCA wild-type", set()),
    ("BRCA mutation status", set()),
    ("non-BRCA-mutated", set()),
    ("PD-L1 positive", {"pd-l1-positive"}),
    ("PD-L1-positive triple-negative breast cancer", {"pd-l1-positive"} | TNBC),
    ("PD-L1 TPS \u2265 50%", {"pd-l1-positive"}),
    ("PD-L1 CPS >= 10", {"pd-l1-positive"}),
    ("PD-L1 negative", set()),
    ("PD-L1 TPS < 1%", set()),
    ("PD-L1 positive or negative", set()),
    ("anti-PD-L1 antibody", set()),
    ("KRAS G12C-mutant NSCLC", {"kras-g12c"}),
    ("KRAS p.G12C", {"kras-g12c"}),
    ("KRAS wild-type", set()),
    ("BRAF V600E melanoma", {"braf-v600-mutant"}),
    ("BRAF V600E/K", {"braf-v600-mutant"}),
    ("BRAF wild-type melanoma", set()),
    ("MSI-H/dMMR colorectal cancer", {"msi-high", "dmmr"}),
    ("Microsatellite Instability-high Solid Tumors", {"msi-high"}),
    ("PD-L1 TPS >= 1% or PD-L1 TPS < 1%", set()),
    ("PD-L1-low", set()),
    ("MSI-H or MSS", set()),
    ("pMMR/MSS colorectal cancer", set()),
]


@pytest.mark.parametrize("text,expected", TEXTS, ids=[t for t, _ in TEXTS])
def test_text_gives_subtypes(text, expected):
    assert set(subtypes.resolve(subtypes.text_subtypes(text))) == expected


# --- the table ----------------------------------------------------------------------------------

def test_every_rule_names_a_concept_and_every_pattern_compiles():
    known = set(CODES)
    assert len(known) == len(CODES), "codes are unique"
    for concept in TABLE["concepts"]:
        assert concept["display"] and len(concept["definition"]) > 20, concept["code"]
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", concept["code"])
        assert concept["text"], f"{concept['code']}: no pattern"
    assert {r["subtype"] for r in TABLE["facts"]["rows"]} <= known
    assert set(TABLE["implies"]) | {c for v in TABLE["implies"].values() for c in v} <= known
    assert {c for r in TABLE["combinations"] for c in [*r["allOf"], r["gives"]]} <= known
    assert {c for pair in TABLE["conflicts"] for c in pair} <= known
    assert len(subtypes._rules()) == len(CODES)  # every @term@ expands and every pattern compiles


def test_the_required_concepts_are_there():
    assert {"her2-positive", "her2-negative", "hr-positive", "hr-negative", "er-positive", "pr-positive",
            "triple-negative", "metastatic", "advanced", "egfr-mutant", "alk-positive", "brca-mutated",
            "pd-l1-positive"} <= set(CODES)


def test_fact_rows_use_the_codes_the_eligibility_facts_write():
    from fhirstudy.eligibility import facts

    for text, code in [("HER2-negative", "her2-negative"), ("HER2-positive", "her2-positive"),
                       ("ER-positive", "er-positive"), ("PR-positive", "pr-positive"),
                       ("ER-negative", "er-negative"), ("PR-negative", "pr-negative")]:
        characteristic = {"exclude": False, **facts(text)}
        assert subtypes.fact_subtypes(characteristic) == subtypes.closure({code}), text


def test_code_system_is_valid_fhir_with_every_concept():
    cs = subtype_code_system()
    validate_resource(cs)
    assert (cs["id"], cs["url"], cs["content"]) == ("fhirstudy-subtype", SYSTEM, "complete")
    assert [c["code"] for c in cs["concept"]] == CODES and cs["count"] == len(CODES)
    assert all(set(c) == {"code", "display", "definition"} for c in cs["concept"])  # no patterns leak


# --- a trial's sources ----------------------------------------------------------------------------

def _trial(**fields) -> model.Trial:
    data = {"provenance": {"file": "x.json", "record": 1, "format": "ctgov-json"}, "brief_title": "A study",
            "identifiers": [{"value": "NCT00000001", "kind": "nct"}], **fields}
    return model.load_trial(data)


def _inclusion(*texts: str) -> list[dict]:
    return [{"text": t, "exclude": False} for t in texts]


TRIALS = [
    # inclusion criteria are read through their facts
    ("inclusion fact", dict(criteria=_inclusion("HER2-negative")), {"her2-negative"}),
    ("inclusion facts all hold", dict(criteria=_inclusion("ER-negative", "PR-negative", "HER2-negative")), TNBC),
    ("any-of: what every alternative gives", dict(criteria=[
        {"text": "Any of the following:", "items": ["ER-positive", "PR-positive"]}]), {"hr-positive"}),
    ("all-of sub-items", dict(criteria=[
        {"text": "Tumour status:", "items": ["ER-negative", "PR-negative"]}]),
     {"er-negative", "pr-negative", "hr-negative"}),
    # exclusion criteria are never read
    ("exclusion fact", dict(criteria=[{"text": "HER2-positive", "exclude": True}]), set()),
    ("exclusion in words", dict(criteria=[{"text": "HER2-positive patients are excluded", "exclude": True}]), set()),
    ("exclusion with inclusion", dict(criteria=[{"text": "HER2-negative", "exclude": False},
                                                {"text": "HER2-positive", "exclude": True}]), {"her2-negative"}),
    # a criterion of one cohort holds for part of the study only
    ("qualified block", dict(criteria=[{"text": "HER2-positive", "qualifier": "Cohort A"}]), set()),
    # criterion text is not pattern-matched (only its facts count)
    ("criterion words", dict(criteria=_inclusion("Metastatic or locally advanced luminal breast cancer or triple "
                                                  "negative breast cancer")), set()),
    # every source together; a conflict between sources drops both sides
    ("conditions, titles, keywords", dict(conditions=["Metastatic Breast Cancer"],
                                          official_title="A trial in HR+ disease", keywords=["HER2-negative"]),
     {"metastatic", "hr-positive", "her2-negative"}),
    ("title and facts disagree", dict(brief_title="HER2-positive Breast Cancer", criteria=_inclusion("HER2-negative")),
     set()),
    ("two cohorts of opposite status", dict(conditions=["HER2-positive Breast Cancer", "HER2-negative Breast Cancer",
                                                        "Metastatic Breast Cancer"]), {"metastatic"}),
    ("facts complete the title", dict(brief_title="HER2-negative Breast Cancer",
                                      criteria=_inclusion("ER-negative", "PR-negative")), TNBC),
    ("nothing stated", dict(conditions=["Breast Cancer"], keywords=["Palbociclib"]), set()),
]


@pytest.mark.parametrize("name,fields,expected", TRIALS, ids=[t[0] for t in TRIALS])
def test_trial_subtypes(name, fields, expected):
    assert set(subtypes.study_subtypes(_trial(**fields))) == expected


def test_keywords_on_the_research_study_are_valid_and_follow_the_text_keywords():
    study = research_study.map_trial(_trial(keywords=["Palbociclib", "HR+/HER2- breast cancer"]))
    validate_resource(study)
    assert study["keyword"] == [
        {"text": "Palbociclib"}, {"text": "HR+/HER2- breast cancer"},
        {"coding": [{"system": SYSTEM, "code": "her2-negative", "display": "HER2-negative"}], "text": "HER2-negative"},
        {"coding": [{"system": SYSTEM, "code": "hr-positive", "display": "Hormone receptor-positive"}],
         "text": "Hormone receptor-positive"}]


def test_r4_keeps_the_subtype_keywords():
    study = research_study.map_trial(_trial(brief_title="Metastatic TNBC"))
    assert {c["code"] for k in study["keyword"] for c in k["coding"]} == TNBC | {"metastatic"}
    assert to_r4([study])[0]["keyword"] == study["keyword"]


# --- real records -----------------------------------------------------------------------------------

def _converted_codes(path) -> dict[str, list[str]]:
    from fhirstudy.pipeline import convert

    out = {}
    for c in convert([path]):
        assert c.ok, c.problems
        rs = c.bundle["entry"][0]["resource"]
        out[c.study_id] = [cd["code"] for k in rs.get("keyword", []) for cd in k.get("coding", [])
                           if cd["system"] == SYSTEM]
    return out


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the samples folder {SAMPLES} is missing")
def test_pallas_sample_is_hr_positive_her2_negative():
    assert _converted_codes(SAMPLES / "NCT02513394.xml") == {"nct02513394": ["her2-negative", "hr-positive"]}


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"the seeds folder {SEEDS} is missing")
def test_seeds_get_their_subtypes():
    assert sorted(_converted_codes(SEEDS).values()) == sorted([
        ["her2-positive", "hr-positive", "metastatic"],  # 000: Metastatic HER2+/HR+ Breast Cancer
        ["her2-positive", "metastatic"],  # 001: HER2 Positive Metastatic Breast Cancer
        ["her2-negative"],  # 002: HER2-negative (luminal or triple-negative: neither is coded)
        ["her2-positive", "advanced"],  # 003: HER2-positive Advanced Breast Cancer
        ["her2-negative", "hr-positive", "metastatic", "advanced"],  # 004: Locally Advanced or Metastatic
    ])


# --- search: biomarker=, the served CodeSystem, the CapabilityStatement ----------------------------

BIOMARKER_URL = "https://fhirstudy.org/fhir/SearchParameter/ResearchStudy-biomarker"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The FHIR server on a SQLite store loaded as ``fhirstudy load`` does: the seeds, PALLAS and a
    study without subtypes, plus the reference resources."""
    if not (SEEDS.is_dir() and SAMPLES.is_dir()):
        pytest.skip("the seeds or samples folder is missing")
    from fhirstudy.loader import load_reference_resources, store_bundle
    from fhirstudy.pipeline import convert
    from fhirstudy.server import STORE_EXTENSION, close_store, create_app

    db = tmp_path_factory.mktemp("subtypes") / "server.db"
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{db}", "BASE_URL": "https://fhir.example.org/r5"})
    store = app.extensions[STORE_EXTENSION]
    load_reference_resources(store)
    for c in convert([SEEDS, SAMPLES / "NCT02513394.xml", SAMPLES / "NCT05594173.json"]):
        store_bundle(store, c.bundle)
    yield app.test_client()
    close_store(app)


SEED_000, SEED_001, SEED_003, SEED_004 = ("fs-4853c9b87ff2f7c7", "fs-f47a11d1330d2b15", "fs-fcfad87e0c6488bd",
                                          "fs-73c0b5f8e9f8767a")
SEARCHES = [
    ("biomarker=her2-positive", {SEED_000, SEED_001, SEED_003}),
    (f"biomarker={SYSTEM}|her2-negative", {"nct06731140", SEED_004, "nct02513394"}),
    ("biomarker=her2-negative&biomarker=hr-positive", {SEED_004, "nct02513394"}),
    ("biomarker=advanced,metastatic", {SEED_000, SEED_001, SEED_003, SEED_004}),
    ("biomarker=her2-positive&biomarker=metastatic", {SEED_000, SEED_001}),
    ("condition=breast-cancer&biomarker=hr-positive&recruitment-status=active-but-not-recruiting", {"nct02513394"}),
    ("biomarker=http://loinc.org|her2-positive", set()),  # the code belongs to fhirstudy's subtype system
    ("biomarker=HER2-positive", set()),  # codes are case-sensitive
    ("biomarker=triple-negative", set()),
    ("biomarker:missing=true", {"nct05594173"}),
    ("biomarker:text=hormone receptor", {SEED_000, SEED_004, "nct02513394"}),
    ("biomarker:not=her2-positive", {"nct06731140", SEED_004, "nct02513394", "nct05594173"}),
]


@pytest.mark.parametrize("query,expected", SEARCHES, ids=[q for q, _ in SEARCHES])
def test_biomarker_search(client, query, expected):
    response = client.get(f"/ResearchStudy?{query}&_count=50")
    assert response.status_code == 200, response.get_json()
    assert {e["resource"]["id"] for e in response.get_json().get("entry", [])} == expected


def test_subtype_code_system_is_served_with_every_concept(client):
    response = client.get("/CodeSystem/fhirstudy-subtype")
    assert response.status_code == 200
    cs = response.get_json()
    assert cs["url"] == SYSTEM and [c["code"] for c in cs["concept"]] == CODES
    found = client.get(f"/CodeSystem?url={SYSTEM}").get_json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["fhirstudy-subtype"]


def test_capability_statement_lists_biomarker(client):
    statement = client.get("/metadata").get_json()
    [study] = [r for r in statement["rest"][0]["resource"] if r["type"] == "ResearchStudy"]
    assert {"name": "biomarker", "type": "token", "definition": BIOMARKER_URL} in study["searchParam"]
    definition = client.get("/SearchParameter/ResearchStudy-biomarker")
    assert definition.status_code == 200 and definition.get_json()["code"] == "biomarker"
