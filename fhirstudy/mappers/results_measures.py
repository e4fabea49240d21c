"""Outcome and baseline measures with results -> FHIR R5 Evidence (for :mod:`.evidence`).

Per measure and group one Evidence: ``variableDefinition`` the group (role population, the
result Group) and the measure (role measuredVariable: the outcome's EvidenceVariable where the
protocol lists the outcome), one ``statistic`` per class and category the group has a value in
(``category`` "class: category"), with the measure's parameter as ``statisticType``, the value as
``quantity`` in the measure's unit, the denominator as ``sampleSize.numberOfParticipants`` and the
dispersion as ``attributeEstimate``. Per analysis one Evidence comparing its groups (role exposure
each): the estimate, its confidence interval and dispersion, the p-value, the method.
"""
from __future__ import annotations

from .. import terminology
from ..terminology import fold
from ..trial import Trial
from . import ids
from .common import compact, concept, meta, reference
from .results_groups import GroupIndex
from .results_statistics import (DIFFERENCES, analysis_statistic_type, confidence_interval, dispersion,
                                 label, model_characteristic, p_value, quantity, statistic_type, whole)

RESOURCE_TYPE = "Evidence"
OUTCOME_KINDS = {"PRIMARY": "primary", "SECONDARY": "secondary", "OTHER_PRE_SPECIFIED": "other"}
PARTICIPANTS = "participants"


def role(code: str) -> dict:
    """``variableRole`` (the official variable-role code)."""
    return concept(terminology.coding("variableRole", code))


def evidence(trial: Trial, rid: str, title: str, variables: list[dict], statistics: list[dict],
             description: str | None = None, notes: list[str | None] = ()) -> dict:
    """One Evidence of the trial's results, documented by its ResearchStudy."""
    sid = ids.study_id(trial)
    return compact({
        "resourceType": RESOURCE_TYPE, "id": rid, "meta": meta(trial),
        "title": title, "status": "active", "date": trial.results_first_posted_date,
        "relatedArtifact": [{"type": "documentation", "resourceReference": reference("ResearchStudy", sid)}],
        "description": description,
        "note": [{"text": n} for n in notes if n],
        "variableDefinition": variables,
        "statistic": statistics,
    })


def population(groups: GroupIndex, key: tuple, fallback: str, denoms=()) -> dict:
    """The variableDefinition of a result group (role population); ``denoms``: the numbers
    analysed overall (each statistic's sampleSize has its own), as notes."""
    notes = [f"Overall number analysed: {c.value} {d.units or PARTICIPANTS}" for d in denoms for c in d.counts
             if c.group_id == key[-1] and c.value]
    return compact({"description": groups.title(key) or fallback, "note": [{"text": n} for n in notes],
                    "variableRole": role("population"), "observed": groups.reference(key)})


def outcome_variables(trial: Trial) -> list[dict | None]:
    """For each results outcome measure, the Reference to the protocol outcome's EvidenceVariable
    with the same title and kind (case and spacing ignored), or None (post hoc, or not listed)."""
    sid = ids.study_id(trial)
    used: set[str] = set()
    out = []
    for measure in trial.results.outcome_measures if trial.results else ():
        kind = OUTCOME_KINDS.get(measure.kind or "")
        found = None
        for n, outcome in enumerate(trial.outcomes_of(kind) if kind else [], 1):
            rid = ids.outcome_id(sid, kind, n)
            if rid not in used and fold(outcome.name) == fold(measure.title):
                used.add(rid)
                found = reference("EvidenceVariable", rid, outcome.name)
                break
        out.append(found)
    return out


def _denominator(denoms_lists, group_id: str) -> tuple[int | None, list[str]]:
    """The participants analysed for a group (the most specific denominators first) and the other
    units' counts in words."""
    for denoms in denoms_lists:
        counts = [(d.units, c) for d in denoms for c in d.counts if c.group_id == group_id]
        if counts:
            participants = next((whole(c.value) for units, c in counts if fold(units or PARTICIPANTS) == PARTICIPANTS),
                                None)
            others = [f"Analysed: {c.value} {units}" for units, c in counts
                      if fold(units or PARTICIPANTS) != PARTICIPANTS and c.value]
            return participants, others
    return None, []


def _category(klass, category) -> dict | None:
    text = ": ".join(t for t in (klass.title, category.title) if t)
    return concept(text=text) if text else None


def _statistics(measure, group_id: str, module_denoms=()) -> list[dict]:
    unit = measure.unit_of_measure
    out = []
    for klass in measure.classes:
        counted = None  # the class's denominator of the group, found at its first value
        for category in klass.categories:
            for m in category.measurements:
                if m.group_id != group_id:
                    continue
                if counted is None:
                    counted = _denominator((klass.denoms, measure.denoms, module_denoms), group_id)
                participants, others = counted
                value = quantity(m.value, unit)
                out.append(compact({
                    "description": f"Value: {m.value}" if m.value and value is None else None,
                    "note": [{"text": m.comment}] if m.comment else [],
                    "statisticType": statistic_type(measure.param_type),
                    "category": _category(klass, category),
                    "quantity": value,
                    "sampleSize": compact({"numberOfParticipants": participants,
                                           "note": [{"text": t} for t in others]}) or None,
                    "attributeEstimate": dispersion(measure.dispersion_type, measure.param_type, m.spread,
                                                    m.lower_limit, m.upper_limit, unit),
                }))
    return out


def _measure_notes(measure) -> list[str | None]:
    status = {"POSTED": "Posted", "NOT_POSTED": "Not posted"}.get(measure.reporting_status or "",
                                                                   measure.reporting_status)
    return [f"Population: {measure.population_description}" if measure.population_description else None,
            f"Time frame: {measure.time_frame}" if measure.time_frame else None,
            f"Unit of measure: {measure.unit_of_measure}" if measure.unit_of_measure else None,
            f"Type of units analysed: {measure.type_units_analyzed}" if measure.type_units_analyzed else None,
            f"Denominator units: {measure.denom_units_selected}" if measure.denom_units_selected else None,
            "Percentages calculated by ClinicalTrials.gov" if measure.calculate_pct else None,
            f"Reporting status: {status}" if status else None,
            f"Anticipated posting date: {measure.anticipated_posting_date}"
            if measure.anticipated_posting_date else None]


def outcome_evidence(trial: Trial, groups: GroupIndex) -> list[tuple[int, str, dict]]:
    """The Evidence of the outcome measures: (measure number, "group" or "analysis", resource)."""
    sid = ids.study_id(trial)
    out = []
    variables = outcome_variables(trial)
    for n, measure in enumerate(trial.results.outcome_measures, 1):
        measured = compact({"description": measure.title, "variableRole": role("measuredVariable"),
                            "observed": variables[n - 1]})
        for g, group in enumerate(measure.groups, 1):
            statistics = _statistics(measure, group.id)
            participants, _ = _denominator((measure.denoms,), group.id)
            if not statistics and participants is None:
                continue
            out.append((n, "group", evidence(
                trial, ids.outcome_result_id(sid, n, g), f"{measure.title}: {group.title or group.id}",
                [population(groups, ("outcome", n, group.id), group.id, measure.denoms), measured],
                statistics or [{"sampleSize": {"numberOfParticipants": participants}}],
                measure.description, _measure_notes(measure))))
        for a, analysis in enumerate(measure.analyses, 1):
            out.append((n, "analysis", _analysis(trial, groups, n, a, measure, analysis, measured)))
    return out


def _analysis(trial: Trial, groups: GroupIndex, n: int, a: int, measure, analysis, measured: dict) -> dict:
    compared = [compact({"description": groups.title(("outcome", n, gid)) or gid, "variableRole": role("exposure"),
                         "observed": groups.reference(("outcome", n, gid))}) for gid in analysis.group_ids]
    unit = measure.unit_of_measure if analysis.param_type in DIFFERENCES else None
    spread = None
    if analysis.dispersion_type and analysis.dispersion_value:
        spread = dispersion(analysis.dispersion_type, "MEAN", analysis.dispersion_value, None, None, unit,
                            "analysisDispersionType")
    kind = label("nonInferiorityType", analysis.non_inferiority_type)
    notes = [f"Non-inferiority type: {kind}" if kind else None,
             f"Tested non-inferiority: {'yes' if analysis.tested_non_inferiority else 'no'}"
             if analysis.tested_non_inferiority is not None else None,
             analysis.non_inferiority_comment, analysis.statistical_comment, analysis.estimate_comment,
             analysis.other_analysis_description]
    statistic = compact({
        "statisticType": analysis_statistic_type(analysis.param_type),
        "quantity": quantity(analysis.param_value, unit),
        "description": f"Estimate: {analysis.param_value}" if analysis.param_value
        and quantity(analysis.param_value) is None else None,
        "note": [{"text": t} for t in notes if t],
        "attributeEstimate": [e for e in (p_value(analysis.p_value, analysis.p_value_comment),
                                          confidence_interval(analysis, unit), *(spread or [])) if e],
        "modelCharacteristic": [m for m in [model_characteristic(analysis.statistical_method)] if m],
    })
    titles = " vs ".join(groups.title(("outcome", n, gid)) or gid for gid in analysis.group_ids)
    return evidence(trial, ids.analysis_result_id(ids.study_id(trial), n, a),
                    f"{measure.title}: {titles}" if titles else measure.title,
                    [*compared, measured], [statistic] if statistic else [], analysis.group_description)


def baseline_evidence(trial: Trial, groups: GroupIndex) -> list[tuple[int, dict]]:
    """The Evidence of the baseline measures: (measure number, resource)."""
    baseline = trial.results.baseline
    if baseline is None:
        return []
    sid = ids.study_id(trial)
    out = []
    for n, measure in enumerate(baseline.measures, 1):
        measured = {"description": measure.title, "variableRole": role("measuredVariable")}
        for g, group in enumerate(baseline.groups, 1):
            statistics = _statistics(measure, group.id, baseline.denoms)
            if statistics:
                out.append((n, evidence(trial, ids.baseline_result_id(sid, n, g),
                                        f"Baseline {measure.title}: {group.title or group.id}",
                                        [population(groups, ("baseline", group.id), group.id, measure.denoms or baseline.denoms),
                                         measured],
                                        statistics, measure.description, _measure_notes(measure))))
    return out
