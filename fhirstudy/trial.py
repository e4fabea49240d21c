"""The one normalized model of a clinical trial, whatever the source, and its marshmallow schema.

Readers in ``fhirstudy.sources`` build a plain dict in the shape of ``TrialSchema`` and call
``load_trial(data)``; the schema checks it and returns a ``Trial`` (frozen dataclasses all the way
down). Mappers read only ``Trial``. Enumerated values use ClinicalTrials.gov API v2 names
(``overallStatus`` values such as ``RECRUITING``, phases such as ``PHASE2``), because that is the
richest vocabulary of the sources; a reader of another format translates to them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from .errors import TrialError

# Value lists from the ClinicalTrials.gov API v2 description (../shared/reference/ctg-oas-v2.yaml).
OVERALL_STATUSES = (
    "ACTIVE_NOT_RECRUITING", "COMPLETED", "ENROLLING_BY_INVITATION", "NOT_YET_RECRUITING",
    "RECRUITING", "SUSPENDED", "TERMINATED", "WITHDRAWN", "AVAILABLE", "NO_LONGER_AVAILABLE",
    "TEMPORARILY_NOT_AVAILABLE", "APPROVED_FOR_MARKETING", "WITHHELD", "UNKNOWN",
)
PHASES = ("NA", "EARLY_PHASE1", "PHASE1", "PHASE2", "PHASE3", "PHASE4")
STUDY_TYPES = ("EXPANDED_ACCESS", "INTERVENTIONAL", "OBSERVATIONAL")
INTERVENTION_TYPES = (
    "BEHAVIORAL", "BIOLOGICAL", "COMBINATION_PRODUCT", "DEVICE", "DIAGNOSTIC_TEST",
    "DIETARY_SUPPLEMENT", "DRUG", "GENETIC", "PROCEDURE", "RADIATION", "OTHER",
)
SEXES = ("FEMALE", "MALE", "ALL")
DATE_TYPES = ("ACTUAL", "ESTIMATED")
MAX_COUNT = 2**31 - 1  # FHIR unsignedInt: the largest enrollment a ResearchStudy can hold
OUTCOME_KINDS = ("primary", "secondary", "other")
IDENTIFIER_KINDS = ("nct", "org", "secondary", "derived")
SOURCE_FORMATS = (
    "text-registry-export", "text-webpage", "text-bulleted",
    "ctgov-json", "ctgov-csv", "ctgov-xml",
)


@dataclass(frozen=True)
class Identifier:
    """A business identifier of the trial (``kind`` nct, org, secondary or derived)."""

    value: str
    kind: str = "secondary"
    system: str | None = None
    assigner: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class DateStruct:
    """A date of the trial as the registry gives it (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``)."""

    date: str
    type: str | None = None  # ACTUAL or ESTIMATED


@dataclass(frozen=True)
class Party:
    """A sponsor, collaborator or official: an organization or a person with a role."""

    name: str
    role: str = "sponsor"  # lead-sponsor, collaborator, principal-investigator, ...
    classifier: str | None = None  # ClinicalTrials.gov class (INDUSTRY, NIH, OTHER, ...)
    affiliation: str | None = None
    is_person: bool = False
    title: str | None = None  # a person's title or degree ("MD, PhD") or job title
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Site:
    """A place where the trial runs."""

    facility: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    status: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    contacts: tuple[Party, ...] = ()


@dataclass(frozen=True)
class Arm:
    """An arm group: label, type (EXPERIMENTAL, ...), description and the interventions it gets."""

    label: str
    type: str | None = None
    description: str | None = None
    interventions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Intervention:
    """An intervention as registered. ``components`` are the single drugs or procedures it names
    (``Inetetamab Plus Cyclophosphamide ... Plus AI`` -> three), in order."""

    type: str
    name: str
    description: str | None = None
    other_names: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    components: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """An outcome measure: ``kind`` primary, secondary or other."""

    kind: str
    name: str
    description: str | None = None
    time_frame: str | None = None


@dataclass(frozen=True)
class Criterion:
    """One eligibility criterion; ``exclude`` is True for exclusion criteria. ``note`` marks text
    of the criteria list that is not a criterion (a disclaimer), kept rather than dropped."""

    text: str
    exclude: bool = False
    note: bool = False


@dataclass(frozen=True)
class MeshTerm:
    """A MeSH descriptor as ClinicalTrials.gov's ``derivedSection`` gives it."""

    id: str
    term: str


@dataclass(frozen=True)
class Reference:
    """A publication or link about the trial."""

    citation: str | None = None
    pmid: str | None = None
    url: str | None = None
    label: str | None = None
    type: str | None = None  # BACKGROUND, RESULT, DERIVED, link


@dataclass(frozen=True)
class Flag:
    """A yes/no fact the registry states (``oversightHasDmc``: True), under its source name."""

    name: str
    value: bool


@dataclass(frozen=True)
class IpdSharing:
    """The plan to share individual participant data."""

    sharing: str | None = None  # YES, NO, UNDECIDED
    description: str | None = None
    info_types: tuple[str, ...] = ()
    time_frame: str | None = None
    access_criteria: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Provenance:
    """Where the record came from: file, 1-based record number within it, and format."""

    file: str
    record: int
    format: str
    source_date: str | None = None


@dataclass(frozen=True)
class Trial:
    """One clinical trial, normalized. Lists are tuples so a Trial is hashable and immutable."""

    provenance: Provenance
    brief_title: str
    identifiers: tuple[Identifier, ...] = ()
    official_title: str | None = None
    acronym: str | None = None
    brief_summary: str | None = None
    detailed_description: str | None = None
    conditions: tuple[str, ...] = ()
    condition_meshes: tuple[MeshTerm, ...] = ()
    intervention_meshes: tuple[MeshTerm, ...] = ()
    keywords: tuple[str, ...] = ()
    phases: tuple[str, ...] = ()
    study_type: str | None = None
    allocation: str | None = None
    intervention_model: str | None = None
    primary_purpose: str | None = None
    masking: str | None = None
    observational_model: str | None = None
    time_perspective: str | None = None
    intervention_model_description: str | None = None
    masking_description: str | None = None
    who_masked: tuple[str, ...] = ()
    patient_registry: bool | None = None
    target_duration: str | None = None
    expanded_access_types: tuple[str, ...] = ()
    bio_spec_retention: str | None = None
    bio_spec_description: str | None = None
    oversight: tuple[Flag, ...] = ()
    overall_status: str | None = None
    last_known_status: str | None = None
    why_stopped: str | None = None
    start_date: DateStruct | None = None
    primary_completion_date: DateStruct | None = None
    completion_date: DateStruct | None = None
    status_verified_date: str | None = None
    first_posted_date: str | None = None
    last_update_date: str | None = None
    results_first_posted_date: str | None = None
    has_results: bool | None = None
    sponsor: Party | None = None
    collaborators: tuple[Party, ...] = ()
    officials: tuple[Party, ...] = ()
    contacts: tuple[Party, ...] = ()
    sites: tuple[Site, ...] = ()
    enrollment: int | None = None
    enrollment_type: str | None = None
    sex: str | None = None
    minimum_age: str | None = None
    maximum_age: str | None = None
    healthy_volunteers: bool | None = None
    gender_based: bool | None = None
    gender_description: str | None = None
    std_ages: tuple[str, ...] = ()
    study_population: str | None = None
    sampling_method: str | None = None
    eligibility_text: str | None = None
    criteria: tuple[Criterion, ...] = ()
    arms: tuple[Arm, ...] = ()
    interventions: tuple[Intervention, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    references: tuple[Reference, ...] = ()
    ipd_sharing: IpdSharing | None = None
    unplaced: tuple[str, ...] = ()  # source text the reader could not place, kept, not dropped

    @property
    def nct_id(self) -> str | None:
        """The ClinicalTrials.gov number, if the record has one."""
        return next((i.value for i in self.identifiers if i.kind == "nct"), None)

    def outcomes_of(self, kind: str) -> list[Outcome]:
        """The outcome measures of one kind (primary, secondary, other), in source order."""
        return [o for o in self.outcomes if o.kind == kind]


def _text(**kw: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1), **kw)


def _one_of(values: tuple[str, ...], **kw: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(values), **kw)


class _Base(Schema):
    """Unknown keys are errors: a reader that invents a field should hear about it."""

    model: type = object

    @post_load
    def _make(self, data: dict, **_: Any) -> Any:
        kw = {}
        for f in dataclasses.fields(self.model):
            if f.name in data:
                value = data[f.name]
                kw[f.name] = tuple(value) if isinstance(value, list) else value
        return self.model(**kw)


class IdentifierSchema(_Base):
    model = Identifier
    value = _text(required=True)
    kind = _one_of(IDENTIFIER_KINDS)
    system = fields.String(allow_none=True)
    assigner = fields.String(allow_none=True)
    type = fields.String(allow_none=True)


_DATE = validate.Regexp(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$",
                        error="not a date of the form YYYY, YYYY-MM or YYYY-MM-DD")


def _partial_date(**kw: Any) -> fields.String:
    return fields.String(allow_none=True, validate=_DATE, **kw)


class DateStructSchema(_Base):
    model = DateStruct
    date = fields.String(required=True, validate=_DATE)
    type = _one_of(DATE_TYPES, allow_none=True)


class PartySchema(_Base):
    model = Party
    name = _text(required=True)
    role = fields.String()
    classifier = fields.String(allow_none=True)
    affiliation = fields.String(allow_none=True)
    is_person = fields.Boolean()
    title = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)


class SiteSchema(_Base):
    model = Site
    facility = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    zip = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    latitude = fields.Float(allow_none=True, validate=validate.Range(-90, 90))
    longitude = fields.Float(allow_none=True, validate=validate.Range(-180, 180))
    contacts = fields.List(fields.Nested(PartySchema))


class ArmSchema(_Base):
    model = Arm
    label = _text(required=True)
    type = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    interventions = fields.List(fields.String())


class InterventionSchema(_Base):
    model = Intervention
    type = _one_of(INTERVENTION_TYPES, required=True)
    name = _text(required=True)
    description = fields.String(allow_none=True)
    other_names = fields.List(fields.String())
    arms = fields.List(fields.String())
    components = fields.List(_text())


class OutcomeSchema(_Base):
    model = Outcome
    kind = _one_of(OUTCOME_KINDS, required=True)
    name = _text(required=True)
    description = fields.String(allow_none=True)
    time_frame = fields.String(allow_none=True)


class CriterionSchema(_Base):
    model = Criterion
    text = _text(required=True)
    exclude = fields.Boolean()
    note = fields.Boolean()


class MeshTermSchema(_Base):
    model = MeshTerm
    id = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]\d{6,9}$", error="not a MeSH id"))
    term = _text(required=True)


class ReferenceSchema(_Base):
    model = Reference
    citation = fields.String(allow_none=True)
    pmid = fields.String(allow_none=True)
    url = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    type = fields.String(allow_none=True)


class FlagSchema(_Base):
    model = Flag
    name = _text(required=True)
    value = fields.Boolean(required=True)


class IpdSharingSchema(_Base):
    model = IpdSharing
    sharing = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    info_types = fields.List(fields.String())
    time_frame = fields.String(allow_none=True)
    access_criteria = fields.String(allow_none=True)
    url = fields.String(allow_none=True)


class ProvenanceSchema(_Base):
    model = Provenance
    file = fields.String(required=True)
    record = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    format = fields.String(required=True, validate=validate.Length(min=1))  # a reader's FORMAT (sources.READERS)
    source_date = fields.String(allow_none=True)


def _nested_list(schema: type[Schema]) -> fields.List:
    return fields.List(fields.Nested(schema))


class TrialSchema(_Base):
    """The schema every reader's output passes through."""

    model = Trial
    provenance = fields.Nested(ProvenanceSchema, required=True)
    brief_title = _text(required=True)
    identifiers = _nested_list(IdentifierSchema)
    official_title = fields.String(allow_none=True)
    acronym = fields.String(allow_none=True)
    brief_summary = fields.String(allow_none=True)
    detailed_description = fields.String(allow_none=True)
    conditions = fields.List(_text())
    condition_meshes = _nested_list(MeshTermSchema)
    intervention_meshes = _nested_list(MeshTermSchema)
    keywords = fields.List(_text())
    phases = fields.List(_one_of(PHASES))
    study_type = _one_of(STUDY_TYPES, allow_none=True)
    allocation = fields.String(allow_none=True)
    intervention_model = fields.String(allow_none=True)
    primary_purpose = fields.String(allow_none=True)
    masking = fields.String(allow_none=True)
    observational_model = fields.String(allow_none=True)
    time_perspective = fields.String(allow_none=True)
    intervention_model_description = fields.String(allow_none=True)
    masking_description = fields.String(allow_none=True)
    who_masked = fields.List(_text())
    patient_registry = fields.Boolean(allow_none=True)
    target_duration = fields.String(allow_none=True)
    expanded_access_types = fields.List(_text())
    bio_spec_retention = fields.String(allow_none=True)
    bio_spec_description = fields.String(allow_none=True)
    oversight = _nested_list(FlagSchema)
    overall_status = _one_of(OVERALL_STATUSES, allow_none=True)
    last_known_status = _one_of(OVERALL_STATUSES, allow_none=True)
    why_stopped = fields.String(allow_none=True)
    start_date = fields.Nested(DateStructSchema, allow_none=True)
    primary_completion_date = fields.Nested(DateStructSchema, allow_none=True)
    completion_date = fields.Nested(DateStructSchema, allow_none=True)
    status_verified_date = _partial_date()
    first_posted_date = _partial_date()
    last_update_date = _partial_date()
    results_first_posted_date = _partial_date()
    has_results = fields.Boolean(allow_none=True)
    sponsor = fields.Nested(PartySchema, allow_none=True)
    collaborators = _nested_list(PartySchema)
    officials = _nested_list(PartySchema)
    contacts = _nested_list(PartySchema)
    sites = _nested_list(SiteSchema)
    enrollment = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0, max=MAX_COUNT))
    enrollment_type = _one_of(DATE_TYPES, allow_none=True)
    sex = _one_of(SEXES, allow_none=True)
    minimum_age = fields.String(allow_none=True)
    maximum_age = fields.String(allow_none=True)
    healthy_volunteers = fields.Boolean(allow_none=True)
    gender_based = fields.Boolean(allow_none=True)
    gender_description = fields.String(allow_none=True)
    std_ages = fields.List(_text())
    study_population = fields.String(allow_none=True)
    sampling_method = fields.String(allow_none=True)
    eligibility_text = fields.String(allow_none=True)
    criteria = _nested_list(CriterionSchema)
    arms = _nested_list(ArmSchema)
    interventions = _nested_list(InterventionSchema)
    outcomes = _nested_list(OutcomeSchema)
    references = _nested_list(ReferenceSchema)
    ipd_sharing = fields.Nested(IpdSharingSchema, allow_none=True)
    unplaced = fields.List(fields.String())


_SCHEMA = TrialSchema()


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict -> {"outcomes.2.name": ["..."]}."""
    if isinstance(messages, list):
        return {prefix or "_schema": [str(m) for m in messages]}
    out: dict[str, list[str]] = {}
    for key, value in messages.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def load_trial(data: dict) -> Trial:
    """Check a reader's dict against ``TrialSchema`` and build the Trial.

    Raises ``TrialError`` naming every field that is wrong (``outcomes.2.kind``), with the file and
    record number of the provenance when it is readable.
    """
    try:
        return _SCHEMA.load(data)
    except ValidationError as exc:
        prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
        raise TrialError(_flatten(exc.messages), file=prov.get("file"), record=prov.get("record")) from None


def dump_trial(trial: Trial) -> dict:
    """The Trial as a plain dict in the schema's shape (for debugging and golden tests)."""
    return _SCHEMA.dump(trial)
