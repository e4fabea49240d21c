"""The Trial model is declared once (dataclasses) and its marshmallow schema derived from it: every
field checked as declared (required, type, enumeration, pattern, range, nested), with marshmallow's
messages, and the schema's fields are exactly the dataclasses' fields."""
from __future__ import annotations

import copy
import dataclasses
import typing

import pytest
from marshmallow import fields

from fhirstudy import trial
from fhirstudy.errors import TrialError
from fhirstudy.trial import results
from fhirstudy.trial.schema import SCHEMAS

MINIMAL = {"provenance": {"file": "f.json", "record": 1, "format": "ctgov-json"}, "brief_title": "A trial"}
FULL = {
    **MINIMAL,
    "identifiers": [{"value": "NCT01234567", "kind": "nct"}],
    "conditions": ["Breast Cancer"], "phases": ["PHASE2"], "overall_status": "RECRUITING",
    "start_date": {"date": "2020-01", "type": "ACTUAL"}, "first_posted_date": "2020-01-02",
    "sponsor": {"name": "Acme", "role": "lead-sponsor"}, "enrollment": 40, "enrollment_type": "ESTIMATED",
    "sex": "ALL", "sites": [{"city": "Oslo", "latitude": 59.9, "longitude": 10.7, "contacts": [{"name": "Ann"}]}],
    "condition_meshes": [{"id": "D001943", "term": "Breast Neoplasms"}],
    "interventions": [{"type": "DRUG", "name": "A plus B", "components": ["A", "B"]}],
    "outcomes": [{"kind": "primary", "name": "Survival"}], "criteria": [{"text": "Adult", "exclude": False}],
    "oversight": [{"name": "oversightHasDmc", "value": True}], "ipd_sharing": {"sharing": "NO"},
    "arms": [{"label": "A", "interventions": ["Drug: A"]}], "unplaced": [],
}
ONE_OF = "Must be one of: "
MISSING = "Missing data for required field."
NULL = "Field may not be null."
EMPTY = "Shorter than minimum length 1."
NOT_DATE = "not a date of the form YYYY, YYYY-MM or YYYY-MM-DD"


def _with(path: str, value):
    data = copy.deepcopy(FULL)
    *head, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    cur = data
    for key in head:
        cur = cur[key]
    if value is KeyError:
        del cur[last]
    else:
        cur[last] = value
    return data


CASES = [  # (path, value, field named in the error, start of its message)
    ("provenance", KeyError, "provenance", MISSING),
    ("brief_title", KeyError, "brief_title", MISSING),
    ("brief_title", "", "brief_title", EMPTY),
    ("brief_title", None, "brief_title", NULL),
    ("brief_title", 3, "brief_title", "Not a valid string."),
    ("provenance.record", 0, "provenance.record", "Must be greater than or equal to 1."),
    ("provenance.record", "1", "provenance.record", "Not a valid integer."),
    ("provenance.format", "", "provenance.format", EMPTY),
    ("provenance.file", KeyError, "provenance.file", MISSING),
    ("identifiers.0.kind", "isbn", "identifiers.0.kind", ONE_OF + "nct, org"),
    ("identifiers.0.kind", None, "identifiers.0.kind", NULL),
    ("identifiers.0.value", "", "identifiers.0.value", EMPTY),
    ("identifiers", None, "identifiers", NULL),
    ("identifiers", "NCT1", "identifiers", "Not a valid list."),
    ("conditions.0", "", "conditions.0", EMPTY),
    ("phases.0", "PHASE9", "phases.0", ONE_OF + "NA, EARLY_PHASE1"),
    ("study_type", "OTHER", "study_type", ONE_OF),
    ("overall_status", "BOGUS", "overall_status", ONE_OF + "ACTIVE_NOT_RECRUITING"),
    ("last_known_status", "BOGUS", "last_known_status", ONE_OF),
    ("start_date.date", "2020-13", "start_date.date", NOT_DATE),
    ("start_date.date", KeyError, "start_date.date", MISSING),
    ("start_date.type", "GUESSED", "start_date.type", ONE_OF + "ACTUAL, ESTIMATED"),
    ("start_date", "2020", "start_date._schema", "Invalid input type."),
    ("first_posted_date", "2020-02-30x", "first_posted_date", NOT_DATE),
    ("sponsor.name", KeyError, "sponsor.name", MISSING),
    ("sponsor.is_person", None, "sponsor.is_person", NULL),
    ("sponsor.is_person", "maybe", "sponsor.is_person", "Not a valid boolean."),
    ("enrollment", -1, "enrollment", "Must be greater than or equal to 0 and less than or equal to 2147483647."),
    ("enrollment", 2**31, "enrollment", "Must be greater than or equal to 0"),
    ("enrollment", 4.5, "enrollment", "Not a valid integer."),
    ("enrollment_type", "ACTUALLY", "enrollment_type", ONE_OF),
    ("sex", "BOTH", "sex", ONE_OF + "FEMALE, MALE, ALL"),
    ("sites.0.latitude", 91, "sites.0.latitude", "Must be greater than or equal to -90 and less than or equal to 90."),
    ("sites.0.longitude", -181, "sites.0.longitude", "Must be greater than or equal to -180"),
    ("sites.0.latitude", "north", "sites.0.latitude", "Not a valid number."),
    ("sites.0.contacts.0.name", "", "sites.0.contacts.0.name", EMPTY),
    ("condition_meshes.0.id", "12345", "condition_meshes.0.id", "not a MeSH id"),
    ("condition_meshes.0.term", KeyError, "condition_meshes.0.term", MISSING),
    ("interventions.0.type", "PILL", "interventions.0.type", ONE_OF + "BEHAVIORAL"),
    ("interventions.0.type", KeyError, "interventions.0.type", MISSING),
    ("interventions.0.components.1", "", "interventions.0.components.1", EMPTY),
    ("outcomes.0.kind", "tertiary", "outcomes.0.kind", ONE_OF + "primary, secondary, other"),
    ("criteria.0.text", "", "criteria.0.text", EMPTY),
    ("criteria.0.exclude", None, "criteria.0.exclude", NULL),
    ("oversight.0.value", KeyError, "oversight.0.value", MISSING),
    ("ipd_sharing.info_types", [1], "ipd_sharing.info_types.0", "Not a valid string."),
    ("arms.0.label", KeyError, "arms.0.label", MISSING),
    ("invented", 1, "invented", "Unknown field."),
    ("sites.0.invented", 1, "sites.0.invented", "Unknown field."),
]


def test_full_record_loads_to_frozen_tuples():
    t = trial.load_trial(copy.deepcopy(FULL))
    assert isinstance(t, trial.Trial) and t.nct_id == "NCT01234567"
    assert t.sites[0].contacts == (trial.Party(name="Ann"),) and t.phases == ("PHASE2",)
    assert t.start_date == trial.DateStruct("2020-01", "ACTUAL") and t.interventions[0].components == ("A", "B")
    assert trial.load_trial(trial.dump_trial(t)) == t
    hash(t)


def test_minimal_record_takes_the_dataclass_defaults():
    t = trial.load_trial(copy.deepcopy(MINIMAL))
    assert t == trial.Trial(provenance=trial.Provenance("f.json", 1, "ctgov-json"), brief_title="A trial")


@pytest.mark.parametrize(("path", "value", "field", "message"), CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_each_field_is_checked(path, value, field, message):
    data = _with(path, value)
    with pytest.raises(TrialError) as caught:
        trial.load_trial(data)
    assert list(caught.value.messages) == [field]
    assert caught.value.messages[field][0].startswith(message)
    prov = data.get("provenance", {})  # the place, as far as the record gives it
    place = (prov.get("file"), prov.get("record"))
    assert (caught.value.problems[0].file, caught.value.problems[0].record) == place


def test_every_problem_is_reported_at_once():
    data = _with("sex", "BOTH")
    data["outcomes"][0]["kind"] = "tertiary"
    del data["brief_title"]
    with pytest.raises(TrialError) as caught:
        trial.load_trial(data)
    assert sorted(caught.value.messages) == ["brief_title", "outcomes.0.kind", "sex"]


def _optional(hint) -> bool:
    return type(None) in typing.get_args(hint)


@pytest.mark.parametrize("model", sorted(SCHEMAS, key=lambda m: m.__name__), ids=lambda m: m.__name__)
def test_schema_is_the_dataclass(model):
    """One declaration: the schema has the dataclass's fields, required exactly when the field has
    no default, nullable exactly when its type admits None, nested and listed as its type says."""
    schema = SCHEMAS[model]()
    hints = typing.get_type_hints(model)
    assert list(schema.fields) == [f.name for f in dataclasses.fields(model)]
    for f in dataclasses.fields(model):
        got = schema.fields[f.name]
        assert got.required is (f.default is dataclasses.MISSING), f.name
        assert got.allow_none is _optional(hints[f.name]), f.name
        hint = typing.get_args(hints[f.name])[0] if _optional(hints[f.name]) else hints[f.name]
        if typing.get_origin(hint) is tuple:
            assert isinstance(got, fields.List), f.name
        elif dataclasses.is_dataclass(hint):
            assert isinstance(got, fields.Nested) and got.nested is SCHEMAS[hint], f.name


RESULT_MODELS = {results.Results, results.ParticipantFlow, results.FlowPeriod, results.FlowMilestone,
                 results.GroupValue, results.ResultGroup, results.Baseline, results.Denominator, results.ResultMeasure,
                 results.MeasureClass, results.MeasureCategory, results.Measurement, results.Analysis,
                 results.AdverseEvents, results.EventGroup, results.AdverseEvent, results.EventStats, results.MoreInfo}


def test_nested_schemas_are_shared_and_exported():
    assert trial.TrialSchema().fields["sponsor"].nested is trial.PartySchema
    assert trial.SiteSchema().fields["contacts"].inner.nested is trial.PartySchema
    assert set(SCHEMAS) == {trial.Trial, trial.Provenance, trial.Identifier, trial.MeshTerm, trial.Flag,
                            trial.DateStruct, trial.Party, trial.Site, trial.Criterion, trial.Arm,
                            trial.Intervention, trial.Outcome, trial.Reference, trial.IpdSharing,
                            *RESULT_MODELS}
    assert trial.TrialSchema().fields["results"].nested is SCHEMAS[results.Results]


def test_vocabulary_is_what_the_schema_checks():
    assert trial.TrialSchema().fields["overall_status"].validate.choices == trial.OVERALL_STATUSES
    assert trial.TrialSchema().fields["phases"].inner.validate.choices == trial.PHASES


def test_provenance_format_is_any_readers_name_not_a_list_here():
    from fhirstudy.sources import READERS
    schema = trial.ProvenanceSchema()
    for reader in READERS:
        assert schema.validate({"file": "f", "record": 1, "format": reader.FORMAT}) == {}
    assert "format" in schema.validate({"file": "f", "record": 1, "format": ""})
