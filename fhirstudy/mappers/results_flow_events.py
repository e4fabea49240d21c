"""Participant flow and adverse events -> FHIR R5 Evidence (for :mod:`.evidence`).

Participant flow: per period and group one Evidence, one ``statistic`` per milestone (``category``
the milestone: STARTED, COMPLETED ...) and per reason for not completing (``category``
"Not completed: <reason>"), each a count of participants (``statisticType`` Count, ``quantity``
in participants; a count in other units, ``numUnits``, is a statistic of its own in those units).

Adverse events: per event group up to three Evidence: all-cause mortality, serious and other
adverse events. Each term is a ``statistic``: ``category`` the term, ``numberAffected`` the
participants affected, ``numberOfEvents`` the events, ``sampleSize.numberOfParticipants`` those
at risk; its organ system, source vocabulary, assessment type and notes are its ``note``s. The
group's totals come first (``category`` "Total, serious adverse events").
"""
from __future__ import annotations

from .. import terminology
from ..trial import Trial
from . import ids
from .common import compact, concept
from .results_groups import GroupIndex
from .results_measures import evidence, population, role
from .results_statistics import count, label, whole

PARTICIPANTS_UNIT = "participants"
AE_KINDS = (("deaths", "All-cause mortality"), ("serious", "Serious adverse events"),
            ("other", "Other (not including serious) adverse events"))


def _count_type() -> dict:
    return concept(terminology.coding("statisticType", "COUNT_OF_PARTICIPANTS"), "Count of Participants")


def _counts(category: str, group_id: str, counts, units: str | None) -> list[dict]:
    out = []
    for c in counts:
        if c.group_id != group_id:
            continue
        for text, unit in ((c.value, PARTICIPANTS_UNIT), (c.units, units)):
            if text is None:
                continue
            number = whole(text)
            out.append(compact({
                "description": f"Value: {text}" if number is None else None,
                "note": [{"text": c.comment}] if c.comment else [],
                "statisticType": _count_type(),
                "category": concept(text=category),
                "quantity": compact({"value": number, "unit": unit or "units"}) if number is not None else None,
            }))
    return out


def flow_evidence(trial: Trial, groups: GroupIndex) -> list[tuple[int, dict]]:
    """The participant flow's Evidence: (period number, resource)."""
    flow = trial.results.participant_flow
    if flow is None:
        return []
    sid = ids.study_id(trial)
    out = []
    for p, period in enumerate(flow.periods, 1):
        measured = {"description": f"Participant flow: {period.title or f'period {p}'}",
                    "variableRole": role("measuredVariable")}
        for g, group in enumerate(flow.groups, 1):
            statistics = []
            for milestone in period.milestones:
                statistics += _counts(milestone.type, group.id, milestone.counts, flow.type_units_analyzed)
            for reason in period.drop_withdraws:
                statistics += _counts(f"Not completed: {reason.type}", group.id, reason.counts,
                                      flow.type_units_analyzed)
            notes = [f"{m.type}: {m.comment}" for m in (*period.milestones, *period.drop_withdraws) if m.comment]
            if statistics:
                out.append((p, evidence(trial, ids.flow_result_id(sid, p, g),
                                        f"Participant flow, {period.title or f'period {p}'}: {group.title or group.id}",
                                        [population(groups, ("flow", group.id), group.id), measured],
                                        statistics, notes=notes)))
    return out


def _event_statistic(category: str, affected: int | None, at_risk: int | None, events: int | None = None,
                     notes: list[str | None] = ()) -> dict:
    return compact({
        "note": [{"text": n} for n in notes if n],
        "statisticType": _count_type(),
        "category": concept(text=category),
        "quantity": {"value": count(affected), "unit": PARTICIPANTS_UNIT} if count(affected) is not None else None,
        "numberOfEvents": count(events),
        "numberAffected": count(affected),
        "sampleSize": compact({"numberOfParticipants": count(at_risk)}) or None,
    })


def _term_notes(event) -> list[str | None]:
    return [f"Organ system: {event.organ_system}" if event.organ_system else None,
            f"Source vocabulary: {event.source_vocabulary}" if event.source_vocabulary else None,
            f"Assessment type: {label('eventAssessment', event.assessment_type)}" if event.assessment_type else None,
            event.notes]


def adverse_event_evidence(trial: Trial, groups: GroupIndex) -> list[tuple[str, dict]]:
    """The adverse events' Evidence: (kind: deaths, serious or other, resource)."""
    module = trial.results.adverse_events
    if module is None:
        return []
    sid = ids.study_id(trial)
    notes = [f"Time frame: {module.time_frame}" if module.time_frame else None,
             f"Frequency threshold for reporting other adverse events: {module.frequency_threshold}%"
             if module.frequency_threshold else None]
    out = []
    for kind, title in AE_KINDS:
        for g, group in enumerate(module.groups, 1):
            affected = getattr(group, f"{kind}_num_affected")
            at_risk = getattr(group, f"{kind}_num_at_risk")
            statistics = []
            if affected is not None or at_risk is not None:
                total = {"deaths": "Total, all-cause mortality"}.get(kind, f"Total, {kind} adverse events")
                statistics.append(_event_statistic(
                    total, affected, at_risk,
                    notes=[module.all_cause_mortality_comment] if kind == "deaths" else []))
            if kind != "deaths":
                for event in module.events:
                    if event.serious != (kind == "serious"):
                        continue
                    for st in event.stats:
                        if st.group_id == group.id:
                            statistics.append(_event_statistic(event.term, st.num_affected, st.num_at_risk,
                                                               st.num_events, _term_notes(event)))
            if statistics:
                out.append((kind, evidence(trial, ids.adverse_events_id(sid, kind, g),
                                           f"{title}: {group.title or group.id}",
                                           [population(groups, ("events", group.id), group.id),
                                            {"description": title, "variableRole": role("measuredVariable")}],
                                           statistics, module.description, notes)))
    return out
