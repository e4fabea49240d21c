"""Every child resource id, pinned exactly as the mappers have always produced it: the named
functions of ``fhirstudy.mappers.ids`` are the one place an id suffix is spelled."""
from __future__ import annotations

import json

import pytest

from fhirstudy import trial as model
from fhirstudy.mappers import ids, map_resources
from fhirstudy.mappers.r4 import to_r4
from test_mappers import FULL

CASES = [
    (ids.protocol_id, ("nct01234567",), "nct01234567-protocol"),
    (ids.eligibility_id, ("nct01234567",), "nct01234567-eligibility"),
    (ids.outcome_id, ("nct01234567", "primary", 1), "nct01234567-outcome-primary-1"),
    (ids.outcome_id, ("nct01234567", "secondary", 12), "nct01234567-outcome-secondary-12"),
    (ids.outcome_id, ("nct01234567", "other", 2), "nct01234567-outcome-other-2"),
    (ids.site_id, ("nct01234567", 3), "nct01234567-site-3"),
    (ids.provenance_id, ("nct01234567",), "nct01234567-provenance"),
    (ids.enrollment_id, ("nct01234567",), "nct01234567-enrollment"),
    (ids.sponsor_id, ("nct01234567",), "nct01234567-sponsor"),
    (ids.investigator_id, ("nct01234567",), "nct01234567-principal-investigator"),
    (ids.contained_person_id, (2,), "person-2"),
    (ids.protocol_id, ("fs-0123456789abcdef",), "fs-0123456789abcdef-protocol"),
]


@pytest.mark.parametrize(("function", "args", "expected"), CASES,
                         ids=[f"{c[0].__name__}-{c[2]}" for c in CASES])
def test_child_id_format(function, args, expected):
    assert function(*args) == expected


def test_ids_of_a_full_trial():
    """The ids one trial's R5 and R4 resources get, in bundle order."""
    trial = model.load_trial(json.loads(json.dumps(FULL)))
    r5 = [f"{r['resourceType']}/{r['id']}" for r in map_resources(trial)]
    assert r5[0] == "ResearchStudy/nct01234567"
    assert r5[-1] == "Provenance/nct01234567-provenance"
    assert "PlanDefinition/nct01234567-protocol" in r5
    assert "EvidenceVariable/nct01234567-outcome-primary-1" in r5
    assert "EvidenceVariable/nct01234567-eligibility" in r5
    assert "Location/nct01234567-site-1" in r5
    r4 = [f"{r['resourceType']}/{r['id']}" for r in to_r4(map_resources(trial))]
    assert r4[1:3] == ["Group/nct01234567-enrollment", "Organization/nct01234567-sponsor"]
    study = map_resources(trial)[0]
    assert [c["id"] for c in study["contained"]] == ["person-1", "person-2"]


def test_study_id_of_an_nct_number_and_of_an_org_identifier():
    trial = model.load_trial(json.loads(json.dumps(FULL)))
    assert ids.study_id(trial) == "nct01234567"
    no_nct = dict(json.loads(json.dumps(FULL)), identifiers=[{"value": "v-org-id", "kind": "org"}])
    sid = ids.study_id(model.load_trial(no_nct))
    assert sid.startswith("fs-") and len(sid) == 3 + ids.ID_HEX_DIGITS


def test_a_free_text_trial_keeps_its_id_when_the_model_gains_an_empty_field(monkeypatch):
    trial = model.Trial(provenance=model.Provenance(file="a.txt", record=1, format="text-bulleted"),
                        brief_title="A study", conditions=("Asthma",),
                        criteria=(model.Criterion(text="Adults"),))
    before = ids.study_id(trial)
    real = ids.dump_trial

    def grown(t):  # a later Trial: a new empty field at the top and inside a criterion
        dumped = real(t)
        return {**dumped, "new_list": [], "new_text": None,
                "criteria": [{**c, "new_items": []} for c in dumped["criteria"]]}
    monkeypatch.setattr(ids, "dump_trial", grown)
    assert ids.study_id(trial) == before
    assert ids.study_id(model.Trial(**{**trial.__dict__, "conditions": ("Asthma", "COPD")})) != before
