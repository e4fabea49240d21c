"""The real ClinicalTrials.gov samples (API v2 JSON, legacy XML, CSV export), converted as a user
would, checked on the FHIR a user gets: the facts per sample, the peer's validation, and the
report of source fields that did not reach FHIR."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from conftest import SAMPLES

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the samples folder {SAMPLES} is missing")
SAMPLE_FILES = ["NCT00055081.xml", "NCT00763412.json", "NCT01065844.xml", "NCT02210780.json", "NCT02513394.xml",
                "NCT03064438.json", "NCT03630471.json", "NCT05594173.json", "ctgov-export-mixed.csv"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """All samples through `fhirstudy convert --report`: {study id: bundle}, the report, stderr."""
    out = tmp_path_factory.mktemp("samples")
    report = out / "report.json"
    result = subprocess.run([sys.executable, "-m", "fhirstudy.cli", "convert",
                             *[str(SAMPLES / f) for f in SAMPLE_FILES], "-o", str(out / "bundles"),
                             "--report", str(report), "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    bundles = {p.stem: json.loads(p.read_text()) for p in (out / "bundles").glob("*.json")}
    return bundles, json.loads(report.read_text()), out / "bundles"


def _codes(cc: dict | None) -> list[str]:
    return [c["code"] for c in (cc or {}).get("coding", [])]


def _facts(bundle: dict) -> dict:
    res: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        res.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    rs = res["ResearchStudy"][0]
    eligibility = [ev for ev in res.get("EvidenceVariable", []) if ev["id"].endswith("-eligibility")]
    criteria = [c for c in eligibility[0]["characteristic"] if c["linkId"].startswith(("inclusion-", "exclusion-"))] \
        if eligibility else []
    computable = {c["description"] for c in eligibility[0]["characteristic"]
                  if "definitionByTypeAndValue" in c} if eligibility else set()

    def actions(items):
        for a in items:
            yield from actions(a["action"]) if "action" in a else [(a["code"]["text"], a["title"])]

    plans = res.get("PlanDefinition", [])
    return {
        "nct": [i["value"] for i in rs["identifier"] if i.get("system") == "https://clinicaltrials.gov"],
        "title": rs["title"],
        "state": _codes(rs["progressStatus"][0]["state"]),
        "phase": _codes(rs.get("phase")),
        "enrollment": (rs.get("recruitment", {}).get("targetNumber"), rs.get("recruitment", {}).get("actualNumber")),
        "sponsor": [p["name"] for p in rs["associatedParty"] if _codes(p["role"]) == ["lead-sponsor"]],
        "mesh": sorted(c["code"] for cond in rs.get("condition", []) for c in cond.get("coding", [])
                       if c["system"] == "https://www.nlm.nih.gov/mesh"),
        "breast": any("breast-cancer" in _codes(c) for c in rs.get("condition", [])),
        "subtypes": [c["code"] for k in rs.get("keyword", []) for c in k.get("coding", [])
                     if c["system"] == "https://fhirstudy.org/fhir/CodeSystem/subtype"],
        "outcomes": dict(Counter(_codes(om["type"][0])[0] for om in rs.get("outcomeMeasure", []))),
        "sites": len(rs.get("site", [])),
        "locations": len(res.get("Location", [])),
        "criteria": (sum(not c["exclude"] for c in criteria), sum(c["exclude"] for c in criteria)),
        "computable": computable,
        "interventions": sorted(set(actions(plans[0]["action"]))) if plans else [],
    }


# The facts, read by hand from the source files.
FACTS = {
    "nct02513394": dict(  # PALLAS, legacy XML: breast cancer, 233 locations
        nct=["NCT02513394"], title="PALbociclib CoLlaborative Adjuvant Study", state=["active-but-not-recruiting"],
        phase=["phase-3"], enrollment=(None, 5796), sponsor=["Alliance Foundation Trials, LLC."], breast=True,
        subtypes=["her2-negative", "hr-positive"],  # HR+/HER2- (official title, keyword)
        outcomes={"primary": 1, "secondary": 1}, sites=233, locations=233, criteria=(21, 13),
        interventions=[("Drug", "Palbociclib"), ("Drug", "Standard Adjuvant Endocrine Therapy")]),
    "nct00763412": dict(subtypes=[],
        nct=["NCT00763412"], state=["completed"], phase=["n-a"], enrollment=(None, 31),
        sponsor=["Arbelaez, Ana Maria"], breast=False, outcomes={"primary": 3, "secondary": 6}, sites=1,
        criteria=(5, 6), interventions=[("Drug", "placebo"), ("Drug", "repaglinide")],
        mesh=["D003550", "D005355", "D010188", "D011236", "D018149", "D003920"]),
    "nct02210780": dict(subtypes=[],
        nct=["NCT02210780"], state=["completed"], phase=["phase-2"], enrollment=(None, 194),
        sponsor=["Regeneron Pharmaceuticals"], outcomes={"primary": 1, "secondary": 10}, sites=42, locations=42,
        criteria=(5, 7), interventions=[("Drug", "Dupilumab"), ("Drug", "Placebo")],
        mesh=["D003872", "D003876", "D004485"]),
    "nct03064438": dict(subtypes=[],
        state=["completed"], phase=["phase-2"], enrollment=(None, 40), sponsor=["Accuitis, Inc."],
        outcomes={"primary": 1, "secondary": 7, "exploratory": 2}, sites=2, criteria=(9, 11),
        interventions=[("Drug", "ACCU-D1"), ("Drug", "Vehicle")], mesh=["D012393"]),
    "nct03630471": dict(subtypes=[],
        state=["completed"], phase=["n-a"], enrollment=(None, 250), sponsor=["Sangath"],
        # D003866 (Depressive Disorder): the depression group's coding, for the condition text
        # "Mental Health Issue (E.G., Depression, ...)"; the other two are the record's MeSH terms
        outcomes={"primary": 2, "secondary": 9}, sites=1, criteria=(9, 8), mesh=["D003866", "D010554", "D019966"],
        interventions=[("Behavioral", "Enhanced usual care"), ("Behavioral", "PRIDE 'Step 1' problem-solving intervention")]),
    "nct05594173": dict(subtypes=[],  # observational: no phase
        state=["completed"], phase=[], enrollment=(None, 20), sponsor=["University Health Network, Toronto"],
        outcomes={"primary": 2}, sites=1, criteria=(1, 7), mesh=["D003680"],
        interventions=[("Other", "Food texture modification")], computable={"Accepts healthy volunteers", "Age 18 Years to 60 Years"}),
    "nct01065844": dict(subtypes=[],
        state=["active-but-not-recruiting"], phase=["phase-2"], enrollment=(None, 15), sponsor=["University of Iowa"],
        outcomes={"primary": 1, "secondary": 1}, sites=1, criteria=(8, 6), interventions=[("Drug", "Nelfinavir")]),
    "nct00055081": dict(subtypes=[],
        state=["completed"], phase=["n-a"], enrollment=(None, 320), outcomes={"primary": 1}, sites=1,
        interventions=[("Behavioral", "Critical Time Intervention")]),
    # CSV export rows (the export gives enrollment without ACTUAL/ESTIMATED: read as a target)
    "nct06702449": dict(subtypes=[], state=["recruiting"], phase=["phase-1-phase-2"], enrollment=(448, None),
                        sponsor=["GlaxoSmithKline"], outcomes={"primary": 12, "secondary": 3}, sites=32),
    "nct06668220": dict(subtypes=[], state=["not-yet-recruiting"], phase=["phase-1"], sites=0,
                        computable={"Sex: Male"},
                        interventions=[("Drug", "Bupivacain"), ("Drug", "Dexmedetomidine")]),
    "nct01398852": dict(subtypes=[], state=["terminated"], phase=["phase-3"], sites=13,
                        interventions=[("Device", "VEGA UV-A Illumination System"), ("Drug", "Riboflavin")]),
    "nct04989114": dict(subtypes=[], state=[], phase=["n-a"], sites=1),  # UNKNOWN, no last known status in the export
    "nct01361386": dict(subtypes=[], state=["completed"], phase=[], enrollment=(13011, None), sites=109,
                        interventions=[]),
}


@pytest.mark.parametrize("study_id", sorted(FACTS))
def test_sample_facts(converted, study_id):
    bundles, _, _ = converted
    facts = _facts(bundles[study_id])
    expected = FACTS[study_id]
    for key, value in expected.items():
        got = facts[key]
        if key == "mesh":
            got, value = sorted(got), sorted(value)
        if key == "computable":
            assert value <= got, (key, got)
            continue
        assert got == value, (key, got)


def test_every_sample_record_converted(converted):
    bundles, report, _ = converted
    assert report["failed"] == 0 and report["converted"] == len(bundles) == 18


def test_criteria_notes_and_sub_items(converted):
    bundles, _, _ = converted
    [elig] = [e["resource"] for e in bundles["nct02210780"]["entry"] if e["resource"]["id"].endswith("-eligibility")]
    assert any(n["text"].startswith("The information listed above") for n in elig["note"])
    [elig] = [e["resource"] for e in bundles["nct03064438"]["entry"] if e["resource"]["id"].endswith("-eligibility")]
    [face] = [c for c in elig["characteristic"] if "following within the specified period" in c["description"]]
    assert face["description"].endswith("by study participation:") and face["exclude"] is True
    combination = face["definitionByCombination"]
    assert combination["code"] == "any-of"  # "any of the following"
    items = [(c["linkId"], c["description"]) for c in combination["characteristic"]]
    assert items[0][0] == f"{face['linkId']}.1"
    assert items[-2:] == [(f"{face['linkId']}.{len(items) - 1}", "A cutaneous malignancy; 180 days"),
                          (f"{face['linkId']}.{len(items)}", "Experienced a sunburn; 14 days")]
    ids = [c["linkId"] for c in elig["characteristic"]]
    assert len(ids) == len(set(ids))


def test_unknown_status_is_said(converted):
    bundles, _, _ = converted
    rs = bundles["nct04989114"]["entry"][0]["resource"]
    state = rs["progressStatus"][0]
    assert state["actual"] is False and "unknown" in state["state"]["text"].lower()


def test_no_protocol_or_results_field_left_unmapped(converted):
    """Every source field outside the annotation and document sections (the results too) reaches
    FHIR or is on the documented ignore list (mappings/ctgov-ignored-fields.json, with reasons)."""
    _, report, _ = converted
    left = [f for f in report["unmappedFields"] if not f.startswith(("annotationSection", "documentSection"))]
    assert left == []
    assert any(f.startswith("documentSection") for f in report["unmappedFields"]), "the rest is reported, not hidden"


def test_ignore_list_gives_reasons():
    from fhirstudy.terminology import load_mapping

    table = load_mapping("ctgov-ignored-fields.json")
    for fmt in ("ctgov-json", "ctgov-xml", "ctgov-csv"):
        for field, reason in table[fmt].items():
            assert isinstance(reason, str) and len(reason) > 10, f"{fmt} {field}: no reason"
            assert not field.startswith("resultsSection"), "results are carried, not ignored"


def test_provenance_records_the_source(converted):
    bundles, _, _ = converted
    provenance = bundles["nct02210780"]["entry"][-1]["resource"]
    assert provenance["resourceType"] == "Provenance"
    assert "NCT02210780.json" in provenance["entity"][0]["what"]["display"]
    assert provenance.get("occurredDateTime"), "the source version date"
    assert bundles["nct02210780"]["entry"][0]["resource"]["meta"]["source"].startswith("urn:fhirstudy:source:ctgov-json:")


@pytest.mark.parametrize("name", [f for f in SAMPLE_FILES if f.endswith(".json")])
def test_condition_ancestors_reach_the_study(converted, name):
    """Every derivedSection.conditionBrowseModule.ancestors entry becomes one condition-ancestor
    extension (MeSH, NLM's id form); none becomes a condition."""
    from fhirstudy.terminology import CONDITION_ANCESTOR_URL, mesh_descriptor_id

    bundles, _, _ = converted
    source = json.loads((SAMPLES / name).read_text())["derivedSection"]["conditionBrowseModule"].get("ancestors", [])
    study = bundles[name.removesuffix(".json").lower()]["entry"][0]["resource"]
    carried = [e["valueCoding"] for e in study.get("extension", []) if e["url"] == CONDITION_ANCESTOR_URL]
    assert [(c["code"], c["display"]) for c in carried] == [(mesh_descriptor_id(a["id"]), a["term"]) for a in source]
    assert all(c["system"] == "https://www.nlm.nih.gov/mesh" for c in carried)
    conditions = {c["code"] for cc in study.get("condition", []) for c in cc.get("coding", [])}
    ancestors_only = {c["code"] for c in carried} - {mesh_descriptor_id(m["id"]) for m in json.loads(
        (SAMPLES / name).read_text())["derivedSection"]["conditionBrowseModule"].get("meshes", [])}
    assert not ancestors_only & conditions


@pytest.mark.peer
def test_every_sample_bundle_passes_the_peer_validator(converted, peer_validate):
    _, _, folder = converted
    files = sorted(str(p) for p in folder.glob("*.json"))
    result = subprocess.run([str(peer_validate), "r5", *files], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "INVALID" not in result.stdout
