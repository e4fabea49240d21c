"""R5 -> R4 down-conversion: valid against the official R4 definitions, faithful, pure."""
from __future__ import annotations

import json
import subprocess

import orjson
import pytest

from _peer_fixtures import PEER_DIR, all_trials  # noqa: F401
from _references import references
from fhirstudy.mappers.r4 import extension_url, to_r4
from fhirstudy.terminology import CONDITION_ANCESTOR_URL

STATUS_CASES = [  # R5 progressStatus state -> R4 ResearchStudy.status
    ("not-yet-recruiting", "approved"),
    ("recruiting", "active"),
    ("enrolling-by-invitation", "active"),
    ("active-but-not-recruiting", "closed-to-accrual"),
    ("temporarily-closed-to-accrual-and-intervention", "temporarily-closed-to-accrual-and-intervention"),
    ("terminated", "administratively-completed"),
    ("completed", "completed"),
    ("withdrawn", "withdrawn"),
    ("closed-to-accrual", "closed-to-accrual"),
    ("approved", "approved"),
    (None, "active"),
]
R4_STATUSES = {"active", "administratively-completed", "approved", "closed-to-accrual",
               "closed-to-accrual-and-intervention", "completed", "disapproved", "in-review",
               "temporarily-closed-to-accrual", "temporarily-closed-to-accrual-and-intervention", "withdrawn"}


@pytest.mark.parametrize("state, status", STATUS_CASES)
def test_status_from_progress_state(state, status):
    study = {"resourceType": "ResearchStudy", "id": "x", "status": "active", "progressStatus": [
        {"state": {"coding": [{"system": "http://hl7.org/fhir/research-study-status", "code": state}]}, "actual": True}
    ] if state else []}
    assert to_r4([study])[0]["status"] == status


def test_r4_shape_is_faithful(all_trials):
    for trial in all_trials:
        r4 = to_r4(trial)
        study = r4[0]
        assert study["status"] in R4_STATUSES
        keys = {f"{r['resourceType']}/{r['id']}" for r in r4}
        for ref in references(r4):  # every literal reference points inside the trial (or at a contained one)
            assert ref.startswith("#") or ref in keys, ref
        r5 = trial[0]
        ext = {e["url"] for e in study.get("extension", [])}
        for element in ("outcomeMeasure", "progressStatus", "label", "descriptionSummary", "associatedParty"):
            if r5.get(element):
                assert extension_url(f"ResearchStudy.{element}") in ext, element
        if (r5.get("recruitment") or {}).get("targetNumber") or (r5.get("recruitment") or {}).get("actualNumber"):
            assert extension_url("ResearchStudy.recruitment") in ext
        ancestors = [e for e in r5.get("extension", []) if e["url"] == CONDITION_ANCESTOR_URL]
        assert [e for e in study.get("extension", []) if e["url"] == CONDITION_ANCESTOR_URL] == ancestors
        assert len(study.get("arm", [])) == len(r5.get("comparisonGroup", []))
        assert len(study.get("objective", [])) == len(r5.get("outcomeMeasure", []))
        if (r5.get("recruitment") or {}).get("eligibility"):
            group = next(r for r in r4 if r["resourceType"] == "Group")
            assert study["enrollment"] == [{"reference": f"Group/{group['id']}", "display": "Eligible participants"}]
            eligibility = next(r for r in trial if r["id"] == r5["recruitment"]["eligibility"]["reference"].split("/")[1])
            assert len(group.get("characteristic", [])) == sum(map(_r4_count, eligibility.get("characteristic", [])))
        if any(p.get("role", {}).get("coding", [{}])[0].get("code") == "lead-sponsor" for p in r5.get("associatedParty", [])):
            assert study["sponsor"]["reference"] == f"Organization/{r5['id']}-sponsor"
        provenance = r4[-1]
        assert provenance["resourceType"] == "Provenance" and provenance["recorded"]
        assert len(provenance["target"]) == len(r4) - 1


def _r4_count(c: dict) -> int:
    """How many R4 Group characteristics one R5 characteristic becomes: the items of an inclusion
    all-of or an exclusion any-of each stand alone (both mean "every one of them must hold")."""
    combination = c.get("definitionByCombination")
    if combination and combination["code"] == ("any-of" if c["exclude"] else "all-of"):
        return len(combination["characteristic"])
    return 1


@pytest.mark.parametrize(("exclude", "code", "flattened"), [
    (False, "all-of", True), (True, "any-of", True), (False, "any-of", False), (True, "all-of", False)])
def test_r4_group_flattens_combinations_only_where_meaning_is_kept(exclude, code, flattened):
    ev = {"resourceType": "EvidenceVariable", "id": "x-eligibility", "status": "active", "characteristic": [
        {"linkId": "inclusion-1", "description": "Organ function:", "exclude": exclude,
         "definitionByCombination": {"code": code, "characteristic": [
             {"linkId": "inclusion-1.1", "description": "ANC >= 1.5", "definitionCodeableConcept": {"text": "ANC >= 1.5"}},
             {"linkId": "inclusion-1.2", "description": "Platelets >= 100", "definitionCodeableConcept": {"text": "Platelets >= 100"}}]}}]}
    study = {"resourceType": "ResearchStudy", "id": "x", "status": "active",
             "recruitment": {"eligibility": {"reference": "EvidenceVariable/x-eligibility"}}}
    [group] = [r for r in to_r4([study, ev]) if r["resourceType"] == "Group"]
    got = [(c["valueCodeableConcept"]["text"], c["exclude"]) for c in group["characteristic"]]
    if flattened:
        assert got == [("ANC >= 1.5", exclude), ("Platelets >= 100", exclude)]
    else:
        assert got == [("Organ function: ANC >= 1.5; Platelets >= 100", exclude)]


def test_principal_investigator_as_practitioner(all_trials):
    with_pi = [t for t in all_trials if any(p.get("role", {}).get("coding", [{}])[0].get("code") == "primary-investigator"
                                            for p in t[0].get("associatedParty", []))]
    assert with_pi
    for trial in with_pi:
        r4 = to_r4(trial)
        pi = next(r for r in r4 if r["resourceType"] == "Practitioner")
        assert r4[0]["principalInvestigator"]["reference"] == f"Practitioner/{pi['id']}"
        assert pi["name"]


def test_pure_same_bytes(all_trials):
    for trial in all_trials[:5]:
        before = orjson.dumps(trial)
        assert orjson.dumps(to_r4(trial)) == orjson.dumps(to_r4(trial))
        assert orjson.dumps(trial) == before  # the input is not changed


def test_r4_output_passes_the_official_r4_validator(all_trials, tmp_path):
    script = PEER_DIR / "validate.sh"
    if not script.exists():
        pytest.skip(f"peer validator not found at {script} (set FHIRSTUDY_PEER_DIR)")
    files = []
    for trial in all_trials:
        for r in to_r4(trial):
            path = tmp_path / f"{r['resourceType']}-{r['id']}.json"
            path.write_text(json.dumps(r))
            files.append(str(path))
    run = subprocess.run([str(script), "r4", *files], capture_output=True, text=True, timeout=300)
    invalid = [line for line in run.stdout.splitlines() if not line.startswith("valid")]
    assert run.returncode == 0 and not invalid, "\n".join(invalid[:20]) + run.stderr[-2000:]
    assert len(run.stdout.splitlines()) == len(files)
