"""Mapper properties that hold for any trial: every Trial field reaches FHIR, output is valid and
deterministic, and ids are stable."""
from __future__ import annotations

import dataclasses
import json

from fhirstudy import trial as model
from fhirstudy.mappers import map_resources, map_trial
from fhirstudy.validation import validate_bundle

FULL = {
    "provenance": {"file": "/data/in/study-file.json", "record": 7, "format": "ctgov-json", "source_date": "2024-05-06"},
    "brief_title": "v-brief-title",
    "identifiers": [{"value": "NCT01234567", "kind": "nct"}, {"value": "v-org-id", "kind": "org", "assigner": "v-assigner",
                                                              "type": "v-id-type"}],
    "official_title": "v-official-title", "acronym": "v-acronym",
    "brief_summary": "v-brief-summary", "detailed_description": "v-detailed-description",
    "conditions": ["v-condition"], "condition_meshes": [{"id": "D000000001", "term": "v-condition-mesh"}],
    "condition_ancestors": [{"id": "D000000003", "term": "v-condition-ancestor"}],
    "intervention_meshes": [{"id": "D000000002", "term": "v-drug"}],
    "keywords": ["v-keyword"], "phases": ["PHASE1", "PHASE2"], "study_type": "INTERVENTIONAL",
    "allocation": "RANDOMIZED", "intervention_model": "PARALLEL", "primary_purpose": "TREATMENT",
    "masking": "v-masking", "observational_model": "v-observational-model", "time_perspective": "v-time-perspective",
    "intervention_model_description": "v-model-description", "masking_description": "v-masking-description",
    "who_masked": ["v-who-masked"], "patient_registry": True, "target_duration": "v-target-duration",
    "expanded_access_types": ["v-expanded-access"], "bio_spec_retention": "v-biospec-retention",
    "bio_spec_description": "v-biospec-description", "oversight": [{"name": "v-oversight-flag", "value": True}],
    "overall_status": "RECRUITING", "last_known_status": None, "why_stopped": "v-why-stopped",
    "start_date": {"date": "2020-01", "type": "ACTUAL"}, "primary_completion_date": {"date": "2021-02", "type": "ESTIMATED"},
    "completion_date": {"date": "2022-03", "type": "ESTIMATED"}, "status_verified_date": "2019-04",
    "first_posted_date": "2019-05-06", "last_update_date": "2023-07-08", "results_first_posted_date": "2022-09-10",
    "has_results": True,
    "sponsor": {"name": "v-sponsor", "role": "lead-sponsor", "classifier": "v-sponsor-class"},
    "collaborators": [{"name": "v-collaborator", "role": "collaborator"}],
    "officials": [{"name": "v-official", "role": "study-chair", "affiliation": "v-affiliation", "is_person": True,
                   "title": "v-person-title"}],
    "contacts": [{"name": "v-contact", "role": "general-contact", "phone": "v-phone", "email": "v-email",
                  "is_person": True}],
    "sites": [{"facility": "v-facility", "city": "v-city", "state": "v-state", "zip": "v-zip", "country": "v-country",
               "status": "RECRUITING", "latitude": 12.5, "longitude": -45.25,
               "contacts": [{"name": "v-site-contact", "role": "v-site-role", "phone": "v-site-phone",
                             "email": "v-site-email"}]}],
    "enrollment": 4321, "enrollment_type": "ESTIMATED", "sex": "FEMALE", "minimum_age": "18 Years",
    "maximum_age": "75 Years", "healthy_volunteers": False, "gender_based": True,
    "gender_description": "v-gender-description", "std_ages": ["v-std-age"], "study_population": "v-study-population",
    "sampling_method": "v-sampling-method", "eligibility_text": "v-criterion-in", "criteria": [
        {"text": "v-criterion-in", "exclude": False}, {"text": "v-criterion-out", "exclude": True}],
    "arms": [{"label": "v-arm", "type": "EXPERIMENTAL", "description": "v-arm-description", "interventions": ["v-drug"]}],
    "interventions": [{"type": "DRUG", "name": "v-drug", "description": "v-drug-description",
                       "other_names": ["v-other-name"], "arms": ["v-arm"]}],
    "outcomes": [{"kind": "primary", "name": "v-outcome", "description": "v-outcome-description",
                  "time_frame": "v-time-frame"}, {"kind": "other", "name": "v-other-outcome"}],
    "references": [{"citation": "v-citation", "pmid": "v-pmid", "type": "RESULT"},
                   {"url": "https://example.org/v-link", "label": "v-link-label", "type": "link"}],
    "ipd_sharing": {"sharing": "YES", "description": "v-ipd-description", "info_types": ["v-ipd-type"],
                    "time_frame": "v-ipd-time", "access_criteria": "v-ipd-access", "url": "https://example.org/v-ipd"},
    "results": {
        "participant_flow": {
            "recruitment_details": "v-recruitment-details", "pre_assignment_details": "v-pre-assignment",
            "type_units_analyzed": "v-flow-units",
            "groups": [{"id": "v-fg-1", "title": "v-arm", "description": "v-flow-group-description"}],
            "periods": [{"title": "v-period", "milestones": [
                {"type": "STARTED", "comment": "v-milestone-comment",
                 "counts": [{"group_id": "v-fg-1", "value": "31", "units": "32", "comment": "v-achievement-comment"}]}],
                "drop_withdraws": [{"type": "v-drop-reason", "comment": "v-drop-comment",
                                    "counts": [{"group_id": "v-fg-1", "value": "3", "comment": "v-reason-comment"}]}]}]},
        "baseline": {
            "population_description": "v-baseline-population", "type_units_analyzed": "v-baseline-units",
            "groups": [{"id": "v-bg-1", "title": "v-baseline-group", "description": "v-baseline-group-description"}],
            "denoms": [{"units": "Participants", "counts": [{"group_id": "v-bg-1", "value": "41"}]}],
            "measures": [{"title": "v-baseline-measure", "description": "v-baseline-measure-description",
                          "population_description": "v-baseline-measure-population", "param_type": "MEDIAN",
                          "dispersion_type": "FULL_RANGE", "unit_of_measure": "v-baseline-unit",
                          "calculate_pct": True, "denom_units_selected": "v-denom-units-selected",
                          "classes": [{"title": "v-baseline-class", "categories": [{"title": "v-baseline-category",
                                       "measurements": [{"group_id": "v-bg-1", "value": "42.5", "lower_limit": "18.25",
                                                         "upper_limit": "70.75", "comment": "v-measurement-comment"}]}]}]}]},
        "outcome_measures": [{
            "title": "v-outcome", "kind": "PRIMARY", "description": "v-result-description",
            "population_description": "v-result-population", "reporting_status": "POSTED",
            "anticipated_posting_date": "2025-01", "param_type": "MEAN", "dispersion_type": "CONFIDENCE_95",
            "unit_of_measure": "mg/dL", "time_frame": "v-result-time-frame", "type_units_analyzed": "v-result-units",
            "groups": [{"id": "v-og-1", "title": "v-arm", "description": "v-flow-group-description"},
                       {"id": "v-og-2", "title": "v-comparator", "description": "v-comparator-description"}],
            "denoms": [{"units": "v-eyes", "counts": [{"group_id": "v-og-1", "value": "51"},
                                                      {"group_id": "v-og-2", "value": "52"}]}],
            "classes": [{"title": "v-class", "denoms": [{"units": "Participants", "counts": [
                {"group_id": "v-og-1", "value": "53"}, {"group_id": "v-og-2", "value": "54"}]}],
                "categories": [{"title": "v-category", "measurements": [
                    {"group_id": "v-og-1", "value": "5.5", "lower_limit": "4.25", "upper_limit": "6.75"},
                    {"group_id": "v-og-2", "value": "NA", "comment": "v-na-comment", "spread": "v-spread"}]}]}],
            "analyses": [{"group_ids": ["v-og-1", "v-og-2"], "group_description": "v-analysis-groups",
                          "tested_non_inferiority": True, "non_inferiority_type": "v-non-inferiority-type",
                          "non_inferiority_comment": "v-non-inferiority-comment", "p_value": "0.0123",
                          "p_value_comment": "v-p-comment", "statistical_method": "v-method",
                          "statistical_comment": "v-method-comment", "param_type": "v-estimate-type",
                          "param_value": "1.75", "dispersion_type": "STANDARD_DEVIATION", "dispersion_value": "0.625",
                          "ci_pct_value": "90", "ci_num_sides": "TWO_SIDED", "ci_lower_limit": "0.375",
                          "ci_upper_limit": "3.125", "ci_lower_limit_comment": "v-ci-low-comment",
                          "ci_upper_limit_comment": "v-ci-high-comment", "estimate_comment": "v-estimate-comment",
                          "other_analysis_description": "v-other-analysis"}]}],
        "adverse_events": {
            "frequency_threshold": "5", "time_frame": "v-ae-time-frame", "description": "v-ae-description",
            "all_cause_mortality_comment": "v-mortality-comment",
            "groups": [{"id": "v-eg-1", "title": "v-arm", "description": "v-flow-group-description",
                        "deaths_num_affected": 61, "deaths_num_at_risk": 62, "serious_num_affected": 63,
                        "serious_num_at_risk": 64, "other_num_affected": 65, "other_num_at_risk": 66}],
            "events": [{"term": "v-serious-term", "serious": True, "organ_system": "v-organ-system",
                        "source_vocabulary": "v-vocabulary", "assessment_type": "SYSTEMATIC_ASSESSMENT",
                        "notes": "v-event-notes", "stats": [{"group_id": "v-eg-1", "num_events": 67, "num_affected": 68,
                                                             "num_at_risk": 69}]},
                       {"term": "v-other-term", "serious": False, "stats": [{"group_id": "v-eg-1", "num_affected": 70}]}]},
        "more_info": {"limitations": "v-limitations", "pi_sponsor_employee": False, "restrictive_agreement": True,
                      "restriction_type": "LTE60", "agreement_details": "v-agreement-details",
                      "contact_title": "v-poc-title", "contact_organization": "v-poc-organization",
                      "contact_email": "v-poc-email", "contact_phone": "v-poc-phone"},
    },
    "unplaced": ["v-unplaced"],
}
# Fields whose content reaches FHIR in another form, checked by value below.
DERIVED = {
    "provenance.file": "only the file name (the same bytes on every machine): study-file.json",
    "eligibility_text": "split into the criteria, one characteristic each",
    "enrollment_type": "decides targetNumber versus actualNumber",
    "phases": "combined into one research-study-phase code",
}


def _leaves(value, path=""):
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(value, tuple):
        for item in value:
            yield from _leaves(item, path)
    elif value is not None:
        yield path, value


def test_every_trial_field_reaches_fhir():
    trial = model.load_trial(json.loads(json.dumps(FULL)))
    text = json.dumps(map_resources(trial), ensure_ascii=False)
    missing = []
    for path, value in _leaves(trial):
        if path in DERIVED or path.split(".")[0] in DERIVED or isinstance(value, bool) and path != "patient_registry":
            continue
        needle = value if isinstance(value, str) else json.dumps(value)
        if isinstance(value, str) and value.isupper():
            continue  # enum values become FHIR codes; checked by the seed and sample tests
        if needle not in text and needle.replace("-", " ") not in text.lower():
            missing.append(f"{path}={value!r}")
    assert not missing, f"Trial fields that do not reach FHIR: {missing}"
    assert "study-file.json#7" in text
    model_fields = {f.name for f in dataclasses.fields(model.Trial)}
    assert set(FULL) == model_fields, f"update FULL: {sorted(model_fields ^ set(FULL))}"


def test_full_trial_maps_to_a_valid_bundle():
    trial = model.load_trial(json.loads(json.dumps(FULL)))
    bundle = map_trial(trial)
    validate_bundle(bundle)
    study = bundle["entry"][0]["resource"]
    assert study["phase"]["coding"][0]["code"] == "phase-1-phase-2"
    assert study["recruitment"]["targetNumber"] == 4321 and "actualNumber" not in study["recruitment"]
    assert [p["state"].get("coding", [{}])[0].get("code") for p in study["progressStatus"]] == [
        "recruiting", "overall-study", None]
    provenance = bundle["entry"][-1]["resource"]
    assert provenance["resourceType"] == "Provenance" and provenance["occurredDateTime"] == "2024-05-06"
    assert len(provenance["target"]) == len(bundle["entry"]) - 1


def test_unknown_status_uses_last_known_status_and_says_so():
    data = {**FULL, "overall_status": "UNKNOWN", "last_known_status": "RECRUITING"}
    study = map_resources(model.load_trial(json.loads(json.dumps(data))))[0]
    state = study["progressStatus"][0]
    assert state["actual"] is False and state["state"]["coding"][0]["code"] == "recruiting"
    assert "unknown" in state["state"]["text"]


def test_ids_and_bytes_are_stable():
    a = map_trial(model.load_trial(json.loads(json.dumps(FULL))))
    moved = {**FULL, "provenance": {**FULL["provenance"], "file": "elsewhere/on/another/machine/study-file.json"}}
    b = map_trial(model.load_trial(json.loads(json.dumps(moved))))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["entry"][0]["resource"]["id"] == "nct01234567"
