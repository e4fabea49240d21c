"""Trial results -> FHIR R5 Compositions: the report of each results module, in the shape of the
HL7 EBM IG (``mappings/results-reports.json``), and one results report that lists them.

- ``<trial>-participant-flow-report`` (ParticipantFlowReport): the groups, the recruitment and
  pre-assignment details, a section per period listing its Evidence;
- ``<trial>-baseline-report`` (BaselineMeasureReport): the groups, the population, a section per
  measure;
- ``<trial>-outcome-measures-report`` (OutcomeMeasureReport): the groups, a section per outcome
  measure (``focus`` the outcome's EvidenceVariable) listing the Evidence of each group and of
  each analysis;
- ``<trial>-adverse-events-report``: the groups, the time frame, the description, a section per
  kind (all-cause mortality, serious, other);
- ``<trial>-results-report``: a section per report above, the limitations and caveats, the
  agreements with the investigators and the results point of contact (its author, contained).

Every report's ``subject`` is the ResearchStudy (``Composition?subject=ResearchStudy/<id>``, or
``ResearchStudy?_revinclude=Composition:subject``); a section lists only Evidence the trial has.
"""
from __future__ import annotations

import html

from .. import terminology
from ..terminology import load_mapping
from ..trial import Trial
from . import ids, r4_results, results_groups
from .common import compact, concept, meta, reference
from .results_flow_events import AE_KINDS
from .results_measures import outcome_variables
from .results_statistics import label

RESOURCE_TYPE = "Composition"
REPORTS_FILE = "results-reports.json"
CONTACT_ID = "point-of-contact"


def _narrative(*paragraphs: str | None) -> dict | None:
    texts = [p for p in paragraphs if p]
    if not texts:
        return None
    body = "".join(f"<p>{html.escape(t)}</p>" for t in texts)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _code(key: str) -> dict | None:
    return concept(terminology.coding("reportSection", key))


def _section(title: str, entries: list[dict], code: str = "results", focus: dict | None = None) -> dict | None:
    if not entries:
        return None
    return compact({"title": title, "code": _code(code), "focus": focus, "entry": entries})


def _text_section(title: str, *paragraphs: str | None) -> dict | None:
    text = _narrative(*paragraphs)
    return {"title": title, "text": text} if text else None


class _Reports:
    """The reports of one trial, given the resources made before (the Evidence and Groups)."""

    def __init__(self, trial: Trial, made: list[dict]):
        self.trial, self.results = trial, trial.results
        self.sid = ids.study_id(trial)
        self.made = {(r["resourceType"], r["id"]): r for r in made}
        self.groups = results_groups.index(trial)

    def evidence(self, rid: str) -> list[dict]:
        found = self.made.get(("Evidence", rid))
        return [reference("Evidence", rid, found.get("title"))] if found else []

    def group_section(self, keys: list[tuple]) -> dict | None:
        refs = []
        for key in keys:
            ref = self.groups.reference(key)
            if ref and ref not in refs:
                refs.append(ref)
        return _section("Groups", refs, "groups")

    def composition(self, report: str, sections: list[dict | None], notes: list[str | None] = (),
                    author: dict | None = None, contained: list[dict] = ()) -> dict | None:
        sections = [s for s in sections if s]
        date = self.trial.results_first_posted_date or self.trial.last_update_date or self.trial.provenance.source_date
        if not (sections or any(notes)) or not date:
            return None
        row = load_mapping(REPORTS_FILE)["reports"][report]
        who = self.trial.results.more_info.contact_organization if self.trial.results.more_info else None
        who = who or (self.trial.sponsor.name if self.trial.sponsor else None) or "ClinicalTrials.gov"
        name = self.trial.nct_id or self.trial.brief_title
        return compact({
            "resourceType": RESOURCE_TYPE, "id": ids.report_id(self.sid, report), "meta": meta(self.trial),
            "contained": list(contained),
            "status": "final", "type": concept(row.get("coding"), row["text"]),
            "subject": [reference("ResearchStudy", self.sid, self.trial.brief_title)],
            "date": date, "author": [author or {"display": who}],
            "title": f"{row['title']} for {name}",
            "note": [{"text": n} for n in notes if n],
            "section": sections,
        })

    def flow(self) -> dict | None:
        flow = self.results.participant_flow
        if flow is None:
            return None
        periods = [_section(period.title or f"Period {p}",
                            [e for g in range(1, len(flow.groups) + 1)
                             for e in self.evidence(ids.flow_result_id(self.sid, p, g))])
                   for p, period in enumerate(flow.periods, 1)]
        return self.composition("participant-flow", [
            self.group_section([("flow", g.id) for g in flow.groups]),
            _text_section("Recruitment details", flow.recruitment_details),
            _text_section("Pre-assignment details", flow.pre_assignment_details),
            _text_section("Type of units analysed", flow.type_units_analyzed), *periods])

    def baseline(self) -> dict | None:
        baseline = self.results.baseline
        if baseline is None:
            return None
        measures = [_section(m.title, [e for g in range(1, len(baseline.groups) + 1)
                                       for e in self.evidence(ids.baseline_result_id(self.sid, n, g))])
                    for n, m in enumerate(baseline.measures, 1)]
        return self.composition("baseline", [
            self.group_section([("baseline", g.id) for g in baseline.groups]),
            _text_section("Population description", baseline.population_description),
            _text_section("Type of units analysed", baseline.type_units_analyzed), *measures])

    def outcomes(self) -> dict | None:
        measures = self.results.outcome_measures
        variables = outcome_variables(self.trial)
        sections = []
        for n, m in enumerate(measures, 1):
            entries = [e for g in range(1, len(m.groups) + 1) for e in self.evidence(ids.outcome_result_id(self.sid, n, g))]
            entries += [e for a in range(1, len(m.analyses) + 1)
                        for e in self.evidence(ids.analysis_result_id(self.sid, n, a))]
            kind = label("outcomeMeasureType", m.kind)
            sections.append(_section(m.title, entries, focus=variables[n - 1])
                            or _text_section(m.title, f"{kind} outcome measure" if kind else None,
                                             "Not posted" if m.reporting_status == "NOT_POSTED" else "No results posted",
                                             f"Anticipated posting date: {m.anticipated_posting_date}"
                                             if m.anticipated_posting_date else None))
        keys = [("outcome", n, g.id) for n, m in enumerate(measures, 1) for g in m.groups]
        return self.composition("outcome-measures", [self.group_section(keys), *sections])

    def adverse_events(self) -> dict | None:
        module = self.results.adverse_events
        if module is None:
            return None
        kinds = [_section(title, [e for g in range(1, len(module.groups) + 1)
                                  for e in self.evidence(ids.adverse_events_id(self.sid, kind, g))])
                 for kind, title in AE_KINDS]
        return self.composition("adverse-events", [
            self.group_section([("events", g.id) for g in module.groups]),
            _text_section("Time frame", module.time_frame), _text_section("Description", module.description),
            _text_section("Frequency threshold", f"{module.frequency_threshold}%" if module.frequency_threshold else None),
            _text_section("All-cause mortality", module.all_cause_mortality_comment), *kinds])

    def summary(self, reports: list[dict]) -> dict | None:
        info = self.results.more_info
        contained, author, notes = [], None, []
        if info is not None:
            notes = [f"Limitations and caveats: {info.limitations}" if info.limitations else None,
                     _agreement(info)]
            contact = _contact(info)
            if contact:
                contained, author = [contact], {"reference": f"#{CONTACT_ID}", "display": contact["name"]}
        sections = [_section(r["title"], [reference("Composition", r["id"], r["title"])]) for r in reports]
        return self.composition("results", sections, notes, author, contained)


def _agreement(info) -> str | None:
    parts = [f"Principal investigators are {'' if info.pi_sponsor_employee else 'not '}employed by the sponsor"
             if info.pi_sponsor_employee is not None else None,
             f"Restrictive agreement: {'yes' if info.restrictive_agreement else 'no'}"
             if info.restrictive_agreement is not None else None,
             f"Restriction type: {info.restriction_type}" if info.restriction_type else None, info.agreement_details]
    parts = [p for p in parts if p]
    return "Certain agreements: " + "; ".join(parts) if parts else None


def _contact(info) -> dict | None:
    if not info.contact_organization:
        return None
    telecom = [{"system": s, "value": v} for s, v in (("email", info.contact_email), ("phone", info.contact_phone)) if v]
    return compact({"resourceType": "Organization", "id": CONTACT_ID, "name": info.contact_organization,
                    "contact": [compact({"purpose": concept(text="Results point of contact"),
                                         "name": [{"text": info.contact_title}] if info.contact_title else [],
                                         "telecom": telecom})]})


def map_resources(trial: Trial, made: list[dict]) -> list[dict]:
    """The report Compositions of a trial's results (none without results), the results report last."""
    if trial.results is None:
        return []
    reports = _Reports(trial, made)
    out = [c for c in (reports.flow(), reports.baseline(), reports.outcomes(), reports.adverse_events()) if c]
    summary = reports.summary(out) if out or trial.results.more_info else None
    return out + ([summary] if summary else [])


def to_r4(composition: dict, context=None) -> list[dict]:
    """Nothing: the reports list Evidence, which go to R5 stores only; with ``context.results ==
    "extensions"`` the R4 Composition (:mod:`.r4_results`)."""
    if context is not None and context.results == "extensions":
        return r4_results.composition(composition, context)
    return []
