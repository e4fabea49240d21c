"""The one normalized model of a clinical trial, whatever the source: frozen dataclasses all the way
down, each field declaring its check next to it (``checked(...)``, see ``trial.vocabulary``).

This is the only declaration of the model: ``trial.schema`` derives the marshmallow schemas from
these classes. Mappers read only ``Trial``. Lists are tuples so a Trial is hashable and immutable.
"""
from __future__ import annotations

from dataclasses import dataclass

from .vocabulary import (DATE_TYPES, IDENTIFIER_KINDS, INTERVENTION_TYPES, MAX_COUNT, MESH_ID, OUTCOME_KINDS,
                         OVERALL_STATUSES, PARTIAL_DATE, PHASES, SEXES, STUDY_TYPES, TEXT,
                         Between, OneOf, checked)
from .results import Results


@dataclass(frozen=True)
class Identifier:
    """A business identifier of the trial (``kind`` nct, org, secondary or derived)."""

    value: str = checked(TEXT)
    kind: str = checked(OneOf(IDENTIFIER_KINDS), default="secondary")
    system: str | None = None
    assigner: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class DateStruct:
    """A date of the trial as the registry gives it (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``)."""

    date: str = checked(PARTIAL_DATE)
    type: str | None = checked(OneOf(DATE_TYPES), default=None)  # ACTUAL or ESTIMATED


@dataclass(frozen=True)
class Party:
    """A sponsor, collaborator or official: an organization or a person with a role."""

    name: str = checked(TEXT)
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
    latitude: float | None = checked(Between(-90, 90), default=None)
    longitude: float | None = checked(Between(-180, 180), default=None)
    contacts: tuple[Party, ...] = ()


@dataclass(frozen=True)
class Arm:
    """An arm group: label, type (EXPERIMENTAL, ...), description and the interventions it gets."""

    label: str = checked(TEXT)
    type: str | None = None
    description: str | None = None
    interventions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Intervention:
    """An intervention as registered. ``components`` are the single drugs or procedures it names
    (``Inetetamab Plus Cyclophosphamide ... Plus AI`` -> three), in order."""

    type: str = checked(OneOf(INTERVENTION_TYPES))
    name: str = checked(TEXT)
    description: str | None = None
    other_names: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    components: tuple[str, ...] = checked(each=TEXT, default=())


@dataclass(frozen=True)
class Outcome:
    """An outcome measure: ``kind`` primary, secondary or other."""

    kind: str = checked(OneOf(OUTCOME_KINDS))
    name: str = checked(TEXT)
    description: str | None = None
    time_frame: str | None = None


@dataclass(frozen=True)
class Criterion:
    """One eligibility criterion; ``exclude`` is True for exclusion criteria. ``items`` are the
    bullets of its sub-list ("Adequate organ function:" -> "ANC >= 1.5 x 10^9/L", ...).
    ``qualifier`` is the part of the study its block applies to ("Stage 1", "Cohort B") when the
    block's heading names one. ``note`` marks text of the criteria list that is not a criterion
    (a disclaimer), kept rather than dropped."""

    text: str = checked(TEXT)
    exclude: bool = False
    items: tuple[str, ...] = checked(None, each=TEXT, default=())
    qualifier: str | None = None
    note: bool = False


@dataclass(frozen=True)
class MeshTerm:
    """A MeSH descriptor as ClinicalTrials.gov's ``derivedSection`` gives it."""

    id: str = checked(MESH_ID)
    term: str = checked(TEXT)


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

    name: str = checked(TEXT)
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
    record: int = checked(Between(1))
    format: str = checked(TEXT)  # a reader's FORMAT (sources.READER_MODULES)
    source_date: str | None = None


@dataclass(frozen=True)
class Trial:
    """One clinical trial, normalized. Lists are tuples so a Trial is hashable and immutable."""

    provenance: Provenance
    brief_title: str = checked(TEXT)
    identifiers: tuple[Identifier, ...] = ()
    official_title: str | None = None
    acronym: str | None = None
    brief_summary: str | None = None
    detailed_description: str | None = None
    conditions: tuple[str, ...] = checked(each=TEXT, default=())
    condition_meshes: tuple[MeshTerm, ...] = ()
    condition_ancestors: tuple[MeshTerm, ...] = ()  # broader MeSH descriptors of condition_meshes
    intervention_meshes: tuple[MeshTerm, ...] = ()
    keywords: tuple[str, ...] = checked(each=TEXT, default=())
    phases: tuple[str, ...] = checked(each=OneOf(PHASES), default=())
    study_type: str | None = checked(OneOf(STUDY_TYPES), default=None)
    allocation: str | None = None
    intervention_model: str | None = None
    primary_purpose: str | None = None
    masking: str | None = None
    observational_model: str | None = None
    time_perspective: str | None = None
    intervention_model_description: str | None = None
    masking_description: str | None = None
    who_masked: tuple[str, ...] = checked(each=TEXT, default=())
    patient_registry: bool | None = None
    target_duration: str | None = None
    expanded_access_types: tuple[str, ...] = checked(each=TEXT, default=())
    bio_spec_retention: str | None = None
    bio_spec_description: str | None = None
    oversight: tuple[Flag, ...] = ()
    overall_status: str | None = checked(OneOf(OVERALL_STATUSES), default=None)
    last_known_status: str | None = checked(OneOf(OVERALL_STATUSES), default=None)
    why_stopped: str | None = None
    start_date: DateStruct | None = None
    primary_completion_date: DateStruct | None = None
    completion_date: DateStruct | None = None
    status_verified_date: str | None = checked(PARTIAL_DATE, default=None)
    first_posted_date: str | None = checked(PARTIAL_DATE, default=None)
    last_update_date: str | None = checked(PARTIAL_DATE, default=None)
    results_first_posted_date: str | None = checked(PARTIAL_DATE, default=None)
    has_results: bool | None = None
    sponsor: Party | None = None
    collaborators: tuple[Party, ...] = ()
    officials: tuple[Party, ...] = ()
    contacts: tuple[Party, ...] = ()
    sites: tuple[Site, ...] = ()
    enrollment: int | None = checked(Between(0, MAX_COUNT), default=None)
    enrollment_type: str | None = checked(OneOf(DATE_TYPES), default=None)
    sex: str | None = checked(OneOf(SEXES), default=None)
    minimum_age: str | None = None
    maximum_age: str | None = None
    healthy_volunteers: bool | None = None
    gender_based: bool | None = None
    gender_description: str | None = None
    std_ages: tuple[str, ...] = checked(each=TEXT, default=())
    study_population: str | None = None
    sampling_method: str | None = None
    eligibility_text: str | None = None
    criteria: tuple[Criterion, ...] = ()
    arms: tuple[Arm, ...] = ()
    interventions: tuple[Intervention, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    references: tuple[Reference, ...] = ()
    ipd_sharing: IpdSharing | None = None
    results: Results | None = None  # posted results (``trial.results``)
    unplaced: tuple[str, ...] = ()  # source text the reader could not place, kept, not dropped

    @property
    def nct_id(self) -> str | None:
        """The ClinicalTrials.gov number, if the record has one."""
        return next((i.value for i in self.identifiers if i.kind == "nct"), None)

    def outcomes_of(self, kind: str) -> list[Outcome]:
        """The outcome measures of one kind (primary, secondary, other), in source order."""
        return [o for o in self.outcomes if o.kind == kind]
