"""Trial -> FHIR R5 ResearchStudy."""
from __future__ import annotations

from .. import terminology
from ..trial import DateStruct, Trial
from . import ids
from .common import compact, concept, meta, reference

NCT_SYSTEM = "https://clinicaltrials.gov"
RESOURCE_TYPE = "ResearchStudy"


def _identifier(ident) -> dict:
    system = ident.system or (NCT_SYSTEM if ident.kind == "nct" else None)
    use = {"nct": "official", "org": "secondary", "secondary": "secondary", "derived": "secondary"}[ident.kind]
    return compact({"use": use, "system": system, "value": ident.value,
                    "assigner": {"display": ident.assigner} if ident.assigner else None})


def _labels(trial: Trial) -> list[dict]:
    out = []
    if trial.official_title:
        out.append({"type": concept(terminology.coding("titleType", "official")), "value": trial.official_title})
    if trial.acronym:
        out.append({"type": concept(terminology.coding("titleType", "acronym")), "value": trial.acronym})
    return out


def _phase(trial: Trial) -> dict | None:
    if not trial.phases:
        return None
    key = "|".join(sorted(trial.phases))
    return concept(terminology.coding("phase", key), text=" / ".join(trial.phases) if key not in
                   terminology.load_mapping("ctgov-to-fhir.json")["phase"]["codes"] else None)


def _study_design(trial: Trial) -> list[dict]:
    keys = [f"studyType:{trial.study_type}", f"allocation:{trial.allocation}",
            f"interventionModel:{trial.intervention_model}"]
    return [concept(c) for c in (terminology.coding("studyDesign", k) for k in keys) if c]


def _conditions(trial: Trial) -> list[dict]:
    mesh_by_term = {terminology.fold(m.term): m for m in trial.condition_meshes}
    mesh_ids = frozenset(m.id for m in trial.condition_meshes)
    out = []
    for text in trial.conditions:
        codings = terminology.condition_codings(text, mesh_ids if len(trial.conditions) == 1 else frozenset())
        mesh = mesh_by_term.get(terminology.fold(text))
        if mesh:
            codings.append({"system": terminology.MESH_SYSTEM, "code": mesh.id, "display": mesh.term})
        out.append(compact({"coding": _unique(codings), "text": text}))
    listed = {c["code"] for cc in out for c in cc.get("coding", [])}
    for mesh in trial.condition_meshes:  # MeSH terms not named verbatim by any condition
        if mesh.id not in listed:
            codings = terminology.condition_codings(mesh.term, frozenset({mesh.id}))
            codings.append({"system": terminology.MESH_SYSTEM, "code": mesh.id, "display": mesh.term})
            out.append({"coding": _unique(codings), "text": mesh.term})
    return out


def _unique(codings: list[dict]) -> list[dict]:
    seen, out = set(), []
    for c in codings:
        if (c["system"], c["code"]) not in seen:
            seen.add((c["system"], c["code"]))
            out.append(c)
    return out


def _period(start: DateStruct | None, end: DateStruct | None) -> dict | None:
    return compact({"start": start.date if start else None, "end": end.date if end else None}) or None


def _progress(trial: Trial) -> list[dict]:
    out = []
    status = trial.overall_status
    if status == "UNKNOWN" and trial.last_known_status:
        status = trial.last_known_status
    state = terminology.coding("overallStatus", status)
    if state:
        out.append({"state": concept(state), "actual": trial.overall_status != "UNKNOWN"})
    if trial.start_date or trial.completion_date:
        out.append(compact({"state": concept(terminology.coding("progressPeriod", "overall")),
                            "actual": bool(trial.completion_date and trial.completion_date.type == "ACTUAL"),
                            "period": _period(trial.start_date, trial.completion_date)}))
    return out


def _party(party) -> dict:
    role = terminology.coding("partyRole", party.role)
    return compact({
        "name": party.name,
        "role": concept(role, text=None if role else party.role),
        "classifier": [c for c in [concept(terminology.coding("sponsorClass", party.classifier))] if c],
    })


def _comparison_groups(trial: Trial) -> list[dict]:
    out = []
    for n, arm in enumerate(trial.arms, 1):
        out.append(compact({
            "linkId": f"arm-{n}",
            "name": arm.label,
            "type": concept(terminology.coding("armGroupType", arm.type)),
            "description": arm.description,
        }))
    return out


def _outcome_measures(trial: Trial, study_id: str) -> list[dict]:
    out = []
    counters: dict[str, int] = {}
    for outcome in trial.outcomes:
        counters[outcome.kind] = counters.get(outcome.kind, 0) + 1
        ev_id = ids.child_id(study_id, "outcome", outcome.kind, counters[outcome.kind])
        out.append(compact({
            "name": outcome.name,
            "type": [concept(terminology.coding("outcomeKind", outcome.kind))],
            "description": outcome.description,
            "reference": reference("EvidenceVariable", ev_id, outcome.name),
        }))
    return out


def map_trial(trial: Trial) -> dict:
    """The ResearchStudy of a trial, with references to the trial's other resources by id."""
    sid = ids.study_id(trial)
    has_eligibility = bool(trial.criteria)
    has_protocol = bool(trial.interventions or trial.arms)
    recruitment = compact({
        "targetNumber": trial.enrollment if trial.enrollment_type != "ACTUAL" else None,
        "actualNumber": trial.enrollment if trial.enrollment_type == "ACTUAL" else None,
        "eligibility": reference("EvidenceVariable", ids.child_id(sid, "eligibility"), "Eligibility criteria")
        if has_eligibility else None,
    })
    description = trial.detailed_description
    if trial.unplaced:
        unplaced = "\n\n".join(trial.unplaced)
        description = f"{description}\n\n{unplaced}" if description else unplaced
    return compact({
        "resourceType": RESOURCE_TYPE,
        "id": sid,
        "meta": meta(trial),
        "identifier": [_identifier(i) for i in trial.identifiers],
        "title": trial.brief_title,
        "label": _labels(trial),
        "status": "active",
        "primaryPurposeType": concept(terminology.coding("primaryPurpose", trial.primary_purpose)),
        "phase": _phase(trial),
        "studyDesign": _study_design(trial),
        "condition": _conditions(trial),
        "keyword": [{"text": k} for k in trial.keywords],
        "descriptionSummary": trial.brief_summary,
        "description": description,
        "period": _period(trial.start_date, trial.completion_date),
        "site": [reference("Location", ids.child_id(sid, "site", n), s.facility or s.city)
                 for n, s in enumerate(trial.sites, 1)],
        "associatedParty": [_party(p) for p in [trial.sponsor, *trial.collaborators, *trial.officials] if p],
        "progressStatus": _progress(trial),
        "whyStopped": concept(text=trial.why_stopped),
        "recruitment": recruitment or None,
        "comparisonGroup": _comparison_groups(trial),
        "outcomeMeasure": _outcome_measures(trial, sid),
        "protocol": [reference("PlanDefinition", ids.child_id(sid, "protocol"), "Interventions")]
        if has_protocol else [],
    })
