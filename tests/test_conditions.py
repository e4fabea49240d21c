"""fhirstudy's condition groups (``mappings/conditions.json``): real condition strings -> the
groups they belong to (and must not), groups from MeSH ids and MeSH ancestors, the data's own
rules (every MeSH id cited, NLM's id form), and ``condition=lung-cancer`` end to end: read, mapped,
validated, stored, searched and served with the CodeSystem."""
from __future__ import annotations

import json
import re

import pytest

from _server_fixtures import fixed_clock
from fhirstudy.loader import reference_resources
from fhirstudy.pipeline import convert
from fhirstudy.search import load_registry, parse_search
from fhirstudy.store import open_store
from fhirstudy.terminology import (CONDITION_ANCESTOR_URL, MESH_SYSTEM, condition_code_system, condition_codings,
                                   load_mapping, mesh_descriptor_id)

GROUPS = "https://fhirstudy.org/fhir/CodeSystem/condition"


def _groups(text: str, mesh: frozenset[str] = frozenset(), ancestors: frozenset[str] = frozenset()) -> set[str]:
    return {c["code"] for c in condition_codings(text, mesh, ancestors) if c["system"] == GROUPS}


# Real condition strings (ClinicalTrials.gov conditionsModule / <condition> / the CSV's Conditions
# column, and MeSH terms as conditionBrowseModule names them) -> exactly the groups they belong to.
# Sources: ../shared/ctgov-samples (S), the seeds (seed), ClinicalTrials.gov records read while
# citing MeSH ids (ctti-clinicaltrials/aact spec/support/json_data/results_1.json: R1), MeSH terms
# of those records (MeSH), and texts written for a trap (trap).
TEXT_CASES = [
    # breast (seeds, samples)
    ("Breast Cancer", {"breast-cancer"}),  # S NCT02513394, seeds
    ("HER2 Negative Breast Cancer", {"breast-cancer"}),  # seed 002
    ("Breast Cancer Stage IV", {"breast-cancer"}),  # seed 003
    ("HR+/HER2- breast cancer", {"breast-cancer"}),  # S NCT02513394 keyword
    ("Breast Neoplasms", {"breast-cancer"}),  # MeSH
    # lung
    ("Metastatic Lung Non-Small Cell Carcinoma", {"lung-cancer", "non-small-cell-lung-cancer"}),  # R1 NCT04780568
    ("Stage IV Lung Cancer AJCC v8", {"lung-cancer"}),  # R1 NCT04780568
    ("Nsclc", {"lung-cancer", "non-small-cell-lung-cancer"}),  # R1 NCT04780217
    ("Carcinoma, Non-Small-Cell Lung", {"lung-cancer", "non-small-cell-lung-cancer"}),  # MeSH
    ("Lung Neoplasms", {"lung-cancer"}),  # MeSH
    ("Extensive-stage Small Cell Lung Cancer", {"lung-cancer", "small-cell-lung-cancer"}),  # trap: small vs non-small
    ("Small Cell Lung Carcinoma", {"lung-cancer", "small-cell-lung-cancer"}),  # MeSH
    ("SCLC", {"lung-cancer", "small-cell-lung-cancer"}),
    ("Non-small Cell Lung Cancer", {"lung-cancer", "non-small-cell-lung-cancer"}),  # not small cell
    ("Metastasis in Lung", set()),  # R1 NCT04780217: metastases to the lung are not lung cancer
    ("Breast Cancer With Lung Metastases", {"breast-cancer"}),  # trap
    # other solid tumours
    ("Colon Cancer", {"colorectal-cancer"}),  # R1 NCT04780477
    ("Colonic Neoplasms", {"colorectal-cancer"}),  # R1 NCT04780256 / MeSH
    ("Metastatic Colorectal Cancer (mCRC)", {"colorectal-cancer"}),
    ("Rectal Cancer", {"colorectal-cancer"}),
    ("Gastric Neoplasm", {"gastric-cancer"}),  # R1 NCT04780256
    ("Esophageal Neoplasms", {"esophageal-cancer"}),  # R1 NCT04780256
    ("Duodenal Neoplasms", set()),  # R1 NCT04780256: no duodenal group
    ("Bladder Cancer", {"bladder-cancer"}),  # R1 NCT04779489
    ("Hilar Cholangiocarcinoma", {"cholangiocarcinoma"}),  # R1 NCT04779788
    ("Advanced Soft-tissue Sarcoma", {"sarcoma"}),  # R1 NCT04780464
    ("Kaposi Sarcoma", set()),  # trap: not a soft-tissue/bone sarcoma group
    ("Carcinosarcoma of the Uterus", set()),  # trap
    ("Head and Neck Neoplasms", {"head-and-neck-cancer"}),  # S NCT01065844
    ("Squamous Cell Carcinoma of Head and Neck", {"head-and-neck-cancer"}),  # R1 NCT04780750
    ("Carcinoma, Adenoid Cystic", set()),  # S NCT01065844: a histology, no site
    ("Glioblastoma Multiforme", {"brain-cancer", "glioma"}),  # R1 NCT04780009
    ("Anaplastic Astrocytoma", {"glioma"}),  # R1 NCT04780009
    ("Anti-GBM Disease", set()),  # trap: glomerular basement membrane, not glioblastoma
    ("Brain Metastases", set()),  # trap: secondary, not a primary brain tumour
    ("Melanoma", {"melanoma"}),  # R1 NCT04780217
    ("Non-melanoma Skin Cancer", set()),  # trap
    ("Castration-Resistant Prostate Cancer", {"prostate-cancer"}),
    ("mCRPC", {"prostate-cancer"}),
    ("Benign Prostatic Hyperplasia", set()),  # trap
    ("Pancreatic Ductal Adenocarcinoma", {"pancreatic-cancer"}),
    ("Pancreatic Insufficiency", set()),  # S NCT00763412
    ("Ovarian Cancer", {"ovarian-cancer"}),
    ("Polycystic Ovary Syndrome", set()),  # trap
    ("Hepatocellular Carcinoma", {"liver-cancer"}),
    ("Endometrial Cancer", {"endometrial-cancer"}),
    ("Endometriosis", set()),  # trap
    ("Cervical Cancer", {"cervical-cancer"}),
    ("Cervical Spine Myelopathy", set()),  # trap: the neck, not the cervix
    ("Renal Cell Carcinoma", {"kidney-cancer"}),
    ("Papillary Thyroid Cancer", {"thyroid-cancer"}),
    ("Thyroid Nodule", set()),  # trap
    # haematological
    ("Leukemia", {"leukemia"}),  # NCT00072579 (pypi-data clinicaltrials_interact README)
    ("Acute Myeloid Leukemia", {"leukemia", "acute-myeloid-leukemia"}),
    ("Chronic Myelogenous Leukemia", {"leukemia", "chronic-myeloid-leukemia"}),
    ("Leukemia, Myelogenous, Chronic, BCR-ABL Positive", {"leukemia", "chronic-myeloid-leukemia"}),  # MeSH
    ("Chronic Lymphocytic Leukemia", {"leukemia", "chronic-lymphocytic-leukemia"}),
    ("Acute Lymphoblastic Leukemia", {"leukemia", "acute-lymphoblastic-leukemia"}),
    ("Diffuse Large B-Cell Lymphoma", {"lymphoma", "non-hodgkin-lymphoma"}),
    ("Hodgkin Lymphoma", {"lymphoma", "hodgkin-lymphoma"}),
    ("Lymphoma, Non-Hodgkin", {"lymphoma", "non-hodgkin-lymphoma"}),  # MeSH: not Hodgkin
    ("Multiple Myeloma", {"multiple-myeloma"}),
    ("Leukemia Inhibitory Factor Levels", set()),  # trap
    # metabolic
    ("Diabetes Mellitus, Type 2", {"diabetes", "type-2-diabetes"}),  # R1 NCT04780425
    ("Type 1 Diabetes", {"diabetes", "type-1-diabetes"}),  # R1 NCT04779645
    ("Cystic Fibrosis Related Diabetes", {"cystic-fibrosis", "diabetes"}),  # S NCT00763412
    ("Type 1 and Type 2 Diabetes", {"diabetes", "type-1-diabetes", "type-2-diabetes"}),
    ("T2DM", {"diabetes", "type-2-diabetes"}),
    ("Non-insulin-dependent Diabetes Mellitus", {"diabetes", "type-2-diabetes"}),  # not type 1
    ("Pre-diabetes", set()),  # S NCT00763412 keyword
    ("Diabetes Insipidus", set()),  # trap
    ("Obesity", {"obesity"}),  # R1 NCT04780477
    ("Non-obese Healthy Volunteers", set()),  # trap
    ("NASH - Nonalcoholic Steatohepatitis", {"nonalcoholic-fatty-liver-disease"}),  # S CSV NCT04328077
    ("Chronic Kidney Diseases", {"chronic-kidney-disease"}),  # R1 NCT04779905
    ("Cystic Fibrosis", {"cystic-fibrosis"}),  # MeSH
    # cardiovascular, respiratory
    ("Atrial Fibrillation Recurrent", {"atrial-fibrillation"}),  # R1 NCT04780438
    ("Stroke", {"stroke"}),  # S CSV NCT01613339
    ("Ischemic Stroke", {"stroke"}),  # R1 NCT04780022
    ("Acute Stroke", {"stroke"}),  # R1 NCT04779710
    ("Stroke Volume Variation", set()),  # trap: a haemodynamic measure
    ("Heat Stroke", set()),  # trap
    ("Acute Coronary Syndrome", set()),  # S CSV NCT01361386: acute, not coronary artery disease as a group
    ("Coronary Artery Disease", {"coronary-artery-disease"}),  # aact NCT03475563 / MeSH
    ("Heart Failure With Reduced Ejection Fraction", {"heart-failure"}),
    ("HFpEF", {"heart-failure"}),
    ("Essential Hypertension", {"hypertension"}),
    ("Pulmonary Arterial Hypertension", set()),  # trap: not high blood pressure
    ("Hypertension, Pulmonary", set()),  # MeSH trap
    ("Portal Hypertension", set()),  # trap
    ("Ocular Hypertension", set()),  # trap
    ("Asthma", {"asthma"}),
    ("Severe Eosinophilic Asthma", {"asthma"}),
    ("COPD", {"copd"}),
    ("Pulmonary Disease, Chronic Obstructive", {"copd"}),  # MeSH
    ("Bronchiolitis, Viral", set()),  # S CSV NCT04989114
    ("Pneumonia", set()),  # R1 NCT04779710
    # neurology, psychiatry
    ("Alzheimer Disease", {"alzheimers-disease", "dementia"}),  # R1 NCT04780399
    ("Alzheimer's Disease (Incl Subtypes)", {"alzheimers-disease", "dementia"}),  # R1 NCT04779866
    ("Advanced Dementia", {"dementia"}),  # R1 NCT04779684
    ("Parkinson Disease", {"parkinsons-disease"}),  # MeSH
    ("Parkinson's Disease", {"parkinsons-disease"}),
    ("Drug-induced Parkinsonism", set()),  # trap
    ("Epilepsy", {"epilepsy"}),  # R1 NCT04779814
    ("Psychogenic Non-epileptic Seizures", set()),  # trap
    ("Depression", {"depression"}),  # R1 NCT04780620
    ("Major Depressive Disorder", {"depression"}),  # R1 NCT04780542
    ("Generalized Anxiety Disorder", {"anxiety-disorders"}),  # R1 NCT04780542
    ("Anxiety", set()),  # R1 NCT04780178: a symptom, not an anxiety disorder
    ("Mental Health Issue (E.G., Depression, Psychosis, Personality Disorder, Substance Abuse)",
     {"depression"}),  # S NCT03630471: depression is named
    ("Mental Health", set()),  # S NCT00055081
    ("Respiratory Depression", set()),  # trap: opioid side effect
    ("ST Segment Depression", set()),  # trap: an ECG finding
    ("Bipolar Depression", {"bipolar-disorder"}),  # trap: bipolar, not the depression group
    ("Bipolar Androgen Therapy", set()),  # trap: prostate cancer treatment
    ("Schizophrenia", {"schizophrenia"}),
    ("Autism Spectrum Disorder", {"autism-spectrum-disorder"}),  # R1 NCT04779632
    ("Attention Deficit Hyperactivity Disorder", {"adhd"}),  # R1 NCT04779632
    ("Relapsing Multiple Sclerosis", {"multiple-sclerosis"}),
    # infection, immunology, skin
    ("Covid19", {"covid-19"}),  # R1 NCT04780698
    ("COVID-19", {"covid-19"}),  # R1 NCT04780672
    ("SARS-CoV-2", {"covid-19"}),  # R1 NCT04779944
    ("SARS-CoV Infection", set()),  # R1 NCT04780334: the 2003 virus
    ("Questionnaire on Changes in PMH Care Practices During the COVID-19 Pandemic", set()),  # R1 NCT04779775
    ("Long COVID", {"covid-19"}),
    ("HIV Infections", {"hiv"}),  # R1 NCT04779996
    ("Human Immunodeficiency Virus", {"hiv"}),  # R1 NCT04779736
    ("Hearing Aids", set()),  # trap: not AIDS
    ("Hepatitis B, Chronic", {"hepatitis-b"}),  # R1 NCT04780204
    ("Chronic Hepatitis b", {"hepatitis-b"}),  # R1 NCT04779970
    ("Hepatitis C", {"hepatitis-c"}),
    ("Rheumatoid Arthritis", {"rheumatoid-arthritis"}),  # R1 NCT04779983
    ("Arthritis, Rheumatoid", {"rheumatoid-arthritis"}),  # MeSH
    ("Psoriasis", {"psoriasis"}),  # R1 NCT04780516
    ("Atopic Dermatitis", {"atopic-dermatitis"}),  # S NCT02210780
    ("Dermatitis, Atopic", {"atopic-dermatitis"}),  # MeSH
    ("Eczema", set()),  # S NCT02210780 MeSH term: not atopic dermatitis
    ("Contact Dermatitis", set()),  # trap
    ("Crohn Disease", {"crohns-disease", "inflammatory-bowel-disease"}),  # R1 NCT04779762
    ("Ulcerative Colitis", {"ulcerative-colitis", "inflammatory-bowel-disease"}),
    ("Axial Spondyloarthritis", {"axial-spondyloarthritis"}),  # aact NCT02552212 MeSH
    # nothing to say
    ("Acne Rosacea", set()),  # S NCT03064438
    ("Dysphagia", set()),  # S NCT05594173
    ("Keratoconus and Ectasia", set()),  # S CSV NCT01398852
    ("Caudal Block for Postoperative Analgesia", set()),  # S CSV NCT06668220
    ("Urinary Tract Infections", set()),  # S CSV NCT00598403
    ("Breastfeeding", set()),
    ("Benign Breast Tumor", set()),
    ("Solid Tumor", set()),  # R1 NCT04780217: no site
    ("Caregiver Burden", set()),  # R1 NCT04780178
]


@pytest.mark.parametrize("text,expected", TEXT_CASES, ids=[t for t, _ in TEXT_CASES])
def test_condition_text_gives_exactly_its_groups(text, expected):
    assert _groups(text) == expected


# (MeSH ids of the condition, MeSH ancestors, expected groups): ids as ClinicalTrials.gov gives them.
MESH_CASES = [
    (("D000001943",), (), {"breast-cancer"}),  # padded form
    (("D001943",), (), {"breast-cancer"}),
    # NCT04780009: Glioblastoma, with Glioma among the ancestors
    (("D000005909", "D000001254"), ("D000005910", "D000018302", "D000009369"), {"glioma"}),
    # a lung subtype known only by its ancestors (NCT00023673: Carcinoma, Bronchogenic is one)
    (("D000002283",), ("D000008175", "D000009369"), {"lung-cancer"}),
    # NCT04780256: Esophageal Neoplasms has Head and Neck Neoplasms among its ancestors; not head and neck cancer
    (("D000004938",), ("D000006258", "D000004067"), {"esophageal-cancer"}),
    (("D000006258",), (), {"head-and-neck-cancer"}),  # as the condition's own term it counts
    # NCT04780425: type 2 diabetes is diabetes (its ancestor)
    (("D000003924",), ("D000003920", "D000044882"), {"diabetes", "type-2-diabetes"}),
    (("D000086382",), (), {"covid-19"}),  # a real nine-digit id
    (("D000018352",), ("D000003333",), set()),  # Coronavirus Infections: not COVID-19 itself
    (("D000065626",), (), {"nonalcoholic-fatty-liver-disease"}),  # padded in results_1.json; NLM's D065626
    (("D006976",), (), set()),  # Hypertension, Pulmonary on its own: not the hypertension group
    ((), ("D000009369",), set()),  # Neoplasms: no group of its own (condition:below finds them)
]


@pytest.mark.parametrize("mesh,ancestors,expected", MESH_CASES)
def test_mesh_ids_and_ancestors_give_groups(mesh, ancestors, expected):
    assert _groups("", frozenset(mesh), frozenset(ancestors)) == expected


# --- the data -------------------------------------------------------------------------------

CONCEPTS = load_mapping("conditions.json")["concepts"]
# a ClinicalTrials.gov record (its NCT number) or NLM's MeSH tree file, at a repository, path and commit
CITED = re.compile(r"(record NCT\d{8}|NLM MeSH tree line)\b.*, stored at [\w.-]+/[\w.-]+ \S+ commit [0-9a-f]{40}$")


def test_at_least_40_groups_people_search_by():
    codes = [c["code"] for c in CONCEPTS]
    assert len(codes) == len(set(codes)) >= 40
    assert {"breast-cancer", "lung-cancer", "colorectal-cancer", "prostate-cancer", "pancreatic-cancer",
            "ovarian-cancer", "melanoma", "leukemia", "lymphoma", "type-1-diabetes", "type-2-diabetes", "asthma",
            "copd", "heart-failure", "hypertension", "stroke", "alzheimers-disease", "parkinsons-disease",
            "depression", "schizophrenia", "hiv", "hepatitis-b", "hepatitis-c", "covid-19", "rheumatoid-arthritis",
            "psoriasis", "atopic-dermatitis"} <= set(codes)


@pytest.mark.parametrize("concept", CONCEPTS, ids=[c["code"] for c in CONCEPTS])
def test_every_group_is_defined_and_every_mesh_id_cited(concept):
    assert concept["display"] and concept["definition"] and concept["text"]
    for pattern in concept["text"] + concept.get("exclude_text", []):
        re.compile(pattern)
    covered = {m["id"] for m in concept["mesh"]}
    for entry in concept["mesh"]:
        assert mesh_descriptor_id(entry["id"]) == entry["id"], "ids in NLM's form"
        assert entry["term"] and CITED.search(entry["source"]), entry
        assert entry["id"] in entry["source"] or f"D000{entry['id'][1:]}" in entry["source"]
        assert "onditionBrowseModule" in entry["source"] or "NLM MeSH tree line" in entry["source"]
    for coding in concept["codings"]:
        assert CITED.search(coding["source"]), coding
        if coding["system"] == MESH_SYSTEM:
            assert coding["code"] in covered, "a group's MeSH coding is one of the descriptors it covers"


def test_the_code_system_lists_every_concept():
    cs = condition_code_system()
    assert [c["code"] for c in cs["concept"]] == [c["code"] for c in CONCEPTS]
    assert cs["count"] == len(CONCEPTS)
    assert all(c["display"] and c["definition"] for c in cs["concept"])


# --- end to end -----------------------------------------------------------------------------

def _study(nct: str, conditions: list[str], meshes: list[tuple[str, str]], ancestors: list[tuple[str, str]]) -> dict:
    """A small API v2 study (its condition and MeSH names as ClinicalTrials.gov writes them)."""
    return {
        "protocolSection": {
            "identificationModule": {"nctId": nct, "briefTitle": f"Study {nct}"},
            "statusModule": {"overallStatus": "RECRUITING"},
            "conditionsModule": {"conditions": conditions},
            "designModule": {"studyType": "INTERVENTIONAL", "phases": ["PHASE2"]},
        },
        "derivedSection": {"conditionBrowseModule": {
            "meshes": [{"id": i, "term": t} for i, t in meshes],
            "ancestors": [{"id": i, "term": t} for i, t in ancestors]}},
    }


LUNG = [("D000012142", "Respiratory Tract Neoplasms"), ("D000013899", "Thoracic Neoplasms"),
        ("D000009371", "Neoplasms by Site"), ("D000009369", "Neoplasms"), ("D000008171", "Lung Diseases")]
STUDIES = [
    _study("NCT90000001", ["Non-small Cell Lung Cancer"], [("D000002289", "Carcinoma, Non-Small-Cell Lung")],
           [("D000008175", "Lung Neoplasms"), *LUNG]),
    _study("NCT90000002", ["Lung Adenocarcinoma", "Brain Metastases"], [("D000008175", "Lung Neoplasms")], LUNG),
    _study("NCT90000003", ["HER2-positive Breast Cancer"], [("D000001943", "Breast Neoplasms")],
           [("D000009371", "Neoplasms by Site"), ("D000009369", "Neoplasms"), ("D000001941", "Breast Diseases")]),
    _study("NCT90000004", ["Asthma"], [], [("D000012140", "Respiratory Tract Diseases")]),
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conditions")
    (folder / "studies.json").write_text(json.dumps(STUDIES))
    converted = list(convert([folder / "studies.json"]))
    assert all(c.ok for c in converted), [c.problems for c in converted]
    store = open_store(f"sqlite:///{folder / 'store.db'}", clock=fixed_clock)
    store.put_many(reference_resources())
    for c in converted:
        store.put_many([e["resource"] for e in c.bundle["entry"]])
    yield store, {c.bundle["entry"][0]["resource"]["id"]: c.bundle["entry"][0]["resource"] for c in converted}
    store.close()


def _found(store, query: str) -> set[str]:
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
    return {e.id for e in store.search(parse_search("ResearchStudy", pairs, load_registry())).entries}


@pytest.mark.parametrize("query,expected", [
    ("condition=lung-cancer", {"nct90000001", "nct90000002"}),
    (f"condition={GROUPS}|lung-cancer", {"nct90000001", "nct90000002"}),
    ("condition=non-small-cell-lung-cancer", {"nct90000001", "nct90000002"}),  # adenocarcinoma of the lung
    ("condition=breast-cancer", {"nct90000003"}),
    ("condition=asthma", {"nct90000004"}),
    ("condition=brain-cancer", set()),  # brain metastases of a lung cancer
    ("condition=D001943", {"nct90000003"}),
    (f"condition={MESH_SYSTEM}|D000001943", {"nct90000003"}),
    (f"condition={MESH_SYSTEM}|D008175", {"nct90000001", "nct90000002"}),
    (f"condition:below={MESH_SYSTEM}|D009369", {"nct90000001", "nct90000002", "nct90000003"}),
    ("condition:below=D012140", {"nct90000004"}),
    (f"condition={MESH_SYSTEM}|D009369", set()),
])
def test_searching_the_groups(loaded, query, expected):
    store, _ = loaded
    assert _found(store, query) == expected


def test_a_group_is_coded_once(loaded):
    """NCT90000002 names two conditions, so its MeSH terms are not put on either: the lung group
    (and its Lung Neoplasms coding) comes from the text "Lung Adenocarcinoma", and the MeSH term,
    already coded there, adds no second condition. The ancestors stay extensions."""
    _, studies = loaded
    study = studies["nct90000002"]
    lung = [cc for cc in study["condition"] if any(c["code"] == "lung-cancer" for c in cc.get("coding", []))]
    assert [cc["text"] for cc in lung] == ["Lung Adenocarcinoma"]
    assert {"system": MESH_SYSTEM, "code": "D008175", "display": "Lung Neoplasms"} in lung[0]["coding"]
    ancestors = [e["valueCoding"]["code"] for e in study["extension"] if e["url"] == CONDITION_ANCESTOR_URL]
    assert ancestors == ["D012142", "D013899", "D009371", "D009369", "D008171"]


def test_the_served_code_system_lists_every_concept(tmp_path):
    from fhirstudy.server import STORE_EXTENSION, close_store, create_app

    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
                      "BASE_URL": "http://fhirstudy.test/fhir"})
    try:
        app.extensions[STORE_EXTENSION].put_many(reference_resources())
        cs = app.test_client().get("/CodeSystem/fhirstudy-condition").get_json()
    finally:
        close_store(app)
    assert [c["code"] for c in cs["concept"]] == [c["code"] for c in CONCEPTS]
    assert cs["count"] == len(CONCEPTS) >= 40
