"""The posted results of a trial (ClinicalTrials.gov ``resultsSection``, legacy ``<clinical_results>``),
as part of the one Trial model (``Trial.results``): frozen dataclasses, checked by the derived schema.

Numbers stay the text the registry wrote (``"12"``, ``"0.366"``, ``"<0.0001"``, ``"NA"``): the
registry writes them as text, some are not numbers, and a mapper decides what is a quantity.
Enumerated values use API v2 names (``MEAN``, ``STANDARD_DEVIATION``, ``PRIMARY``); a value no
table knows stays as written. Group ids are the registry's (``OG000``; legacy ``O1``), unique
within one module (an outcome measure's groups are its own).
"""
from __future__ import annotations

from dataclasses import dataclass

from .vocabulary import TEXT, checked


@dataclass(frozen=True)
class ResultGroup:
    """A group results are reported for (an arm, a cohort, the total): its id in the module, title
    and description."""

    id: str = checked(TEXT)
    title: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class GroupValue:
    """A number of one group: a denominator count, a milestone's or a drop reason's subjects."""

    group_id: str = checked(TEXT)
    value: str | None = None
    units: str | None = None  # a second count in other units (``numUnits`` of participant flow)
    comment: str | None = None


@dataclass(frozen=True)
class Denominator:
    """The numbers analysed per group, in ``units`` (Participants, or eyes, lesions ...)."""

    units: str | None = None
    counts: tuple[GroupValue, ...] = ()


@dataclass(frozen=True)
class Measurement:
    """One value of one group: the value, its spread or its limits, and a comment ("NA" values)."""

    group_id: str = checked(TEXT)
    value: str | None = None
    spread: str | None = None
    lower_limit: str | None = None
    upper_limit: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class MeasureCategory:
    """A category of a measure's class ("Female"); untitled when the class has one row."""

    title: str | None = None
    measurements: tuple[Measurement, ...] = ()


@dataclass(frozen=True)
class MeasureClass:
    """A class of a measure ("Week 12", "United States"), with its own denominators when given."""

    title: str | None = None
    denoms: tuple[Denominator, ...] = ()
    categories: tuple[MeasureCategory, ...] = ()


@dataclass(frozen=True)
class Analysis:
    """A statistical analysis comparing groups of one outcome measure."""

    group_ids: tuple[str, ...] = checked(each=TEXT, default=())
    group_description: str | None = None
    tested_non_inferiority: bool | None = None
    non_inferiority_type: str | None = None
    non_inferiority_comment: str | None = None
    p_value: str | None = None
    p_value_comment: str | None = None
    statistical_method: str | None = None
    statistical_comment: str | None = None
    param_type: str | None = None
    param_value: str | None = None
    dispersion_type: str | None = None
    dispersion_value: str | None = None
    ci_pct_value: str | None = None
    ci_num_sides: str | None = None
    ci_lower_limit: str | None = None
    ci_upper_limit: str | None = None
    ci_lower_limit_comment: str | None = None
    ci_upper_limit_comment: str | None = None
    estimate_comment: str | None = None
    other_analysis_description: str | None = None


@dataclass(frozen=True)
class ResultMeasure:
    """An outcome measure with its results (``kind`` PRIMARY, SECONDARY, OTHER_PRE_SPECIFIED,
    POST_HOC), or a baseline measure (``kind`` None)."""

    title: str = checked(TEXT)
    kind: str | None = None
    description: str | None = None
    population_description: str | None = None
    reporting_status: str | None = None
    anticipated_posting_date: str | None = None
    param_type: str | None = None
    dispersion_type: str | None = None
    unit_of_measure: str | None = None
    calculate_pct: bool | None = None
    time_frame: str | None = None
    type_units_analyzed: str | None = None
    denom_units_selected: str | None = None
    groups: tuple[ResultGroup, ...] = ()  # an outcome measure's own groups (a baseline measure has none)
    denoms: tuple[Denominator, ...] = ()
    classes: tuple[MeasureClass, ...] = ()
    analyses: tuple[Analysis, ...] = ()


@dataclass(frozen=True)
class FlowMilestone:
    """A milestone of a participant-flow period (STARTED, COMPLETED, ...), or a reason for not
    completing it (Adverse Event, Withdrawal by Subject, ...), with the numbers per group."""

    type: str = checked(TEXT)
    comment: str | None = None
    counts: tuple[GroupValue, ...] = ()


@dataclass(frozen=True)
class FlowPeriod:
    """A period of the participant flow ("Overall Study")."""

    title: str | None = None
    milestones: tuple[FlowMilestone, ...] = ()
    drop_withdraws: tuple[FlowMilestone, ...] = ()


@dataclass(frozen=True)
class ParticipantFlow:
    """How participants went through the study."""

    recruitment_details: str | None = None
    pre_assignment_details: str | None = None
    type_units_analyzed: str | None = None
    groups: tuple[ResultGroup, ...] = ()
    periods: tuple[FlowPeriod, ...] = ()


@dataclass(frozen=True)
class Baseline:
    """Baseline characteristics: groups, overall denominators and measures."""

    population_description: str | None = None
    type_units_analyzed: str | None = None
    groups: tuple[ResultGroup, ...] = ()
    denoms: tuple[Denominator, ...] = ()
    measures: tuple[ResultMeasure, ...] = ()


@dataclass(frozen=True)
class EventGroup:
    """A group adverse events are reported for, with its totals (deaths, serious, other)."""

    id: str = checked(TEXT)
    title: str | None = None
    description: str | None = None
    deaths_num_affected: int | None = None
    deaths_num_at_risk: int | None = None
    serious_num_affected: int | None = None
    serious_num_at_risk: int | None = None
    other_num_affected: int | None = None
    other_num_at_risk: int | None = None


@dataclass(frozen=True)
class EventStats:
    """One adverse event's numbers in one group."""

    group_id: str = checked(TEXT)
    num_events: int | None = None
    num_affected: int | None = None
    num_at_risk: int | None = None


@dataclass(frozen=True)
class AdverseEvent:
    """One adverse event term, serious or other, with its organ system, vocabulary and numbers."""

    term: str = checked(TEXT)
    serious: bool = False
    organ_system: str | None = None
    source_vocabulary: str | None = None
    assessment_type: str | None = None  # SYSTEMATIC_ASSESSMENT, NON_SYSTEMATIC_ASSESSMENT
    notes: str | None = None
    stats: tuple[EventStats, ...] = ()


@dataclass(frozen=True)
class AdverseEvents:
    """The adverse events module: what was collected, over which time, for which groups."""

    frequency_threshold: str | None = None
    time_frame: str | None = None
    description: str | None = None
    all_cause_mortality_comment: str | None = None
    groups: tuple[EventGroup, ...] = ()
    events: tuple[AdverseEvent, ...] = ()


@dataclass(frozen=True)
class MoreInfo:
    """Limitations and caveats, agreements with the investigators, the results point of contact."""

    limitations: str | None = None
    pi_sponsor_employee: bool | None = None
    restrictive_agreement: bool | None = None
    restriction_type: str | None = None
    agreement_details: str | None = None  # otherDetails, or a legacy statement read as written
    contact_title: str | None = None
    contact_organization: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None


@dataclass(frozen=True)
class Results:
    """Everything a trial posted as results."""

    participant_flow: ParticipantFlow | None = None
    baseline: Baseline | None = None
    outcome_measures: tuple[ResultMeasure, ...] = ()
    adverse_events: AdverseEvents | None = None
    more_info: MoreInfo | None = None
