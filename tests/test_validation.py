"""The checks fhir.resources lacks, each proven on a resource that breaks exactly one rule."""
from __future__ import annotations

import copy

import pytest

from fhirstudy.errors import ValidationFailed
from fhirstudy.mappers import transaction_bundle
from fhirstudy.validation import validate_bundle, validate_resource

STUDY = {
    "resourceType": "ResearchStudy",
    "id": "nct00000001",
    "status": "active",
    "title": "A study",
    "phase": {"coding": [{"system": "http://hl7.org/fhir/research-study-phase", "code": "phase-2"}]},
    "recruitment": {"targetNumber": 10, "eligibility": {"reference": "EvidenceVariable/nct00000001-eligibility"}},
    "site": [{"reference": "Location/nct00000001-site-1"}],
    "progressStatus": [{"state": {"text": "recruiting"}, "actual": True, "period": {"start": "2024-01"}}],
}
LOCATION = {"resourceType": "Location", "id": "nct00000001-site-1", "name": "A hospital", "mode": "instance"}
ELIGIBILITY = {"resourceType": "EvidenceVariable", "id": "nct00000001-eligibility", "status": "active",
               "characteristic": [{"description": "Age 18 or older", "exclude": False}]}


def _with(change):
    study = copy.deepcopy(STUDY)
    change(study)
    return study


BROKEN = [
    ("status-not-in-required-valueset", lambda r: r.update(status="bogus"), "status", "required value set"),
    ("number-as-string", lambda r: r["recruitment"].update(targetNumber="10"), "recruitment.targetNumber", "unsignedInt"),
    ("negative-unsigned", lambda r: r["recruitment"].update(targetNumber=-1), "recruitment.targetNumber", ""),
    ("boolean-as-string", lambda r: r["progressStatus"][0].update(actual="true"), "progressStatus[0].actual", "boolean"),
    ("array-for-single", lambda r: r.update(title=["A", "B"]), "title", "array"),
    ("single-for-array", lambda r: r.update(site={"reference": "Location/x"}), "site", "single value"),
    ("empty-string", lambda r: r.update(title=""), "title", "empty"),
    ("bad-date", lambda r: r["progressStatus"][0]["period"].update(start="2024-13"), "period.start", "dateTime"),
    ("bad-id", lambda r: r.update(id="has space"), "id", "valid id"),
    ("unknown-element", lambda r: r.update(bogus=1), "bogus", "unknown element"),
    ("null-value", lambda r: r.update(description=None), "description", "empty"),
    ("missing-required", lambda r: r.update(comparisonGroup=[{"description": "no name"}]), "comparisonGroup[0].name",
     "missing required"),
    ("missing-required-status", lambda r: r.pop("status"), "status", "missing required"),
    ("identifier-use-binding", lambda r: r.update(identifier=[{"use": "nope", "value": "x"}]), "identifier[0].use",
     "required value set"),
]


@pytest.mark.parametrize("name,change,field,reason", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_rule_is_reported_with_its_place(name, change, field, reason):
    with pytest.raises(ValidationFailed) as info:
        validate_resource(_with(change))
    issues = info.value.issues
    assert any(field in (i.field or "") and reason in i.reason for i in issues), [str(i) for i in issues]


def test_fhir_resources_alone_accepts_what_we_reject():
    """Why the extra checks exist: the model takes a bogus status and coerces a numeric string."""
    from fhir.resources.researchstudy import ResearchStudy

    ResearchStudy.model_validate(_with(lambda r: r.update(status="bogus")))
    ResearchStudy.model_validate(_with(lambda r: r["recruitment"].update(targetNumber="10")))


def test_valid_bundle_passes_and_every_issue_is_collected():
    bundle = transaction_bundle([STUDY, LOCATION, ELIGIBILITY])
    validate_bundle(bundle)
    broken = transaction_bundle([_with(lambda r: r.update(status="bogus", title="")), LOCATION, ELIGIBILITY])
    with pytest.raises(ValidationFailed) as info:
        validate_bundle(broken)
    assert len(info.value.issues) == 2


def test_references_must_resolve_inside_the_bundle():
    bundle = transaction_bundle([STUDY, LOCATION])  # eligibility EvidenceVariable left out
    with pytest.raises(ValidationFailed) as info:
        validate_bundle(bundle)
    [issue] = info.value.issues
    assert "EvidenceVariable/nct00000001-eligibility" in issue.reason
    assert issue.field.endswith("recruitment.eligibility")


def test_nested_backbone_via_content_reference_is_checked():
    plan = {"resourceType": "PlanDefinition", "status": "active",
            "action": [{"title": "arm", "action": [{"title": "drug", "groupingBehavior": "bogus"}]}]}
    with pytest.raises(ValidationFailed) as info:
        validate_resource(plan)
    assert info.value.issues[0].field == "PlanDefinition.action[0].action[0].groupingBehavior"


def test_model_errors_are_reported_when_structure_is_fine():
    # What fhir.resources adds: a choice element takes one type only (value[x] once).
    two_values = {"url": "https://example.org/x", "valueString": "a", "valueBoolean": True}
    with pytest.raises(ValidationFailed) as info:
        validate_resource(_with(lambda r: r.update(extension=[two_values])))
    assert any("extension" in (i.field or "") for i in info.value.issues)


def test_bundle_entries_are_checked_too():
    bundle = transaction_bundle([STUDY, LOCATION, ELIGIBILITY])
    del bundle["entry"][1]["request"]["url"]
    with pytest.raises(ValidationFailed) as info:
        validate_bundle(bundle)
    assert [i.field for i in info.value.issues] == ["Bundle.entry[1].request.url"]
