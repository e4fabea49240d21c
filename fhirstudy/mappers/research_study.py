"""Trial -> FHIR R5 ResearchStudy (its subtype keywords from :mod:`.subtypes`)."""
from __future__ import annotations

from .. import terminology
from ..trial import DateStruct, Trial
from . import evidence_variable, ids, results_groups, subtypes
from .common import compact, concept, meta, reference
from .r4_research_study import to_r4  # noqa: F401 - the R4 converter this module declares

NCT_SYSTEM = "https://clinicaltrials.gov"
RESOURCE_TYPE = "ResearchStudy"


def _identifier(ident) -> dict:
    system = ident.system or (NCT_SYSTEM if ident.kind == "nct" else None)
    use = {"nct": "official", "org": "secondary", "secondary": "secondary", "derived": "secondary"}[ident.kind]
    return compact({"use": use, "type": concept(text=ident.type), "system": system, "value": ident.value,
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


def _design_text(label: str, value: object) -> str:
    if isinstance(value, bool):
        return f"{label}: {'Yes' if value else 'No'}"
    return f"{label}: {str(value).replace('_', ' ').capitalize() if str(value).isupper() else value}"


def _study_design(trial: Trial) -> list[dict]:
    """SEVCO codes where the official code system has the concept; the registry's words otherwise."""
    out = []
    coded = [("studyType", trial.study_type, "Study type"), ("allocation", trial.allocation, "Allocation"),
             ("interventionModel", trial.intervention_model, "Intervention model"),
             ("observationalModel", trial.observational_model, "Observational model"),
             ("timePerspective", trial.time_perspective, "Time perspective"),
             *[("whoMasked", w, "Masked") for w in trial.who_masked]]
    for key, value, label in coded:
        if value is None:
            continue
        code = terminology.coding("studyDesign", f"{key}:{value}")
        out.append(concept(code) if code else concept(text=_design_text(label, value)))
    texts = [("Masking", trial.masking), ("Masking description", trial.masking_description),
             ("Intervention model description", trial.intervention_model_description),
             ("Patient registry", trial.patient_registry), ("Target duration", trial.target_duration),
             ("Biospecimen retention", trial.bio_spec_retention),
             ("Biospecimen description", trial.bio_spec_description),
             *[("Expanded access type", t) for t in trial.expanded_access_types]]
    out.extend(concept(text=_design_text(label, value)) for label, value in texts if value is not None)
    return out


def _classifiers(trial: Trial) -> list[dict]:
    out = []
    for flag in trial.oversight:
        code = terminology.coding("oversight", flag.name) if flag.value else None
        out.append(concept(code) if code else concept(text=_design_text(flag.name, flag.value)))
    if trial.has_results is not None:
        out.append(concept(text=_design_text("Has results", trial.has_results)))
    return out


def _conditions(trial: Trial) -> list[dict]:
    """Each condition with the groups it belongs to (by text; by the MeSH ids and ancestors when
    the study names one condition), its MeSH descriptor when a MeSH term names it verbatim; then
    the MeSH terms no condition names, and the groups only an ancestor gives (a study of "NSCLC"
    whose ancestors include Lung Neoplasms is a lung-cancer study)."""
    mesh_by_term = {terminology.fold(m.term): m for m in trial.condition_meshes}
    mesh_ids = frozenset(m.id for m in trial.condition_meshes)
    ancestor_ids = frozenset(m.id for m in trial.condition_ancestors)
    out = []
    for text in trial.conditions:
        single = len(trial.conditions) == 1
        codings = terminology.condition_codings(text, mesh_ids if single else frozenset(),
                                                ancestor_ids if single else frozenset())
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
            listed |= {c["code"] for c in out[-1]["coding"]}
    for ancestor in trial.condition_ancestors:  # groups that only an ancestor names
        codings = terminology.condition_codings("", ancestor_ids=frozenset({ancestor.id}))
        if codings and not {c["code"] for c in codings} <= listed:
            out.append({"coding": _unique(codings), "text": ancestor.term})
            listed |= {c["code"] for c in codings}
    return out


def _ancestors(trial: Trial) -> list[dict]:
    """The MeSH ancestors of the conditions, one extension each (not conditions of the study)."""
    return [{"url": terminology.CONDITION_ANCESTOR_URL,
             "valueCoding": {"system": terminology.MESH_SYSTEM, "code": a.id, "display": a.term}}
            for a in trial.condition_ancestors]


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
    """The recruitment state (UNKNOWN: the last known state, marked not actual and said so), the
    overall study period, and the primary completion date."""
    out = []
    unknown = trial.overall_status == "UNKNOWN"
    status = trial.last_known_status if unknown else trial.overall_status
    state = terminology.coding("overallStatus", status)
    text = (f"Last known status {status.replace('_', ' ').lower()}; the registry's overall status is unknown"
            if unknown and status else "Unknown: the registry has not verified the status" if unknown else None)
    if state or status or unknown:
        out.append({"state": concept(state, text=text or (None if state else status)), "actual": not unknown})
    if trial.start_date or trial.completion_date:
        dates = [d for d in (trial.start_date, trial.completion_date) if d]
        out.append(compact({"state": concept(terminology.coding("progressPeriod", "overall")),
                            "actual": all(d.type == "ACTUAL" for d in dates),
                            "period": _period(trial.start_date, trial.completion_date)}))
    if trial.primary_completion_date:
        out.append({"state": concept(text="Primary completion"),
                    "actual": trial.primary_completion_date.type == "ACTUAL",
                    "period": {"end": trial.primary_completion_date.date}})
    return out


def _party(party, contained_id: str | None) -> dict:
    role = terminology.coding("partyRole", party.role)
    classifier = terminology.coding("sponsorClass", party.classifier)
    display = f"{party.name} ({party.affiliation})" if party.affiliation else None
    return compact({
        "name": ", ".join(p for p in (party.name, party.title) if p),
        "role": concept(role, text=None if role else party.role),
        "classifier": [concept(classifier, text=None if classifier else party.classifier)]
        if party.classifier else [],
        "party": compact({"reference": f"#{contained_id}" if contained_id else None, "display": display})
        or None,
    })


def _person(party, contained_id: str) -> dict:
    telecom = [{"system": "phone", "value": party.phone}] if party.phone else []
    telecom += [{"system": "email", "value": party.email}] if party.email else []
    return compact({"resourceType": "Practitioner", "id": contained_id,
                    "name": [compact({"text": party.name, "suffix": [party.title] if party.title else []})],
                    "telecom": telecom})


def _parties(trial: Trial) -> tuple[list[dict], list[dict]]:
    """associatedParty entries, and the contained Practitioners that carry people's phone and email."""
    parties, contained = [], []
    for party in [trial.sponsor, *trial.collaborators, *trial.officials, *trial.contacts]:
        if party is None:
            continue
        cid = None
        if party.is_person and (party.phone or party.email or party.title):
            cid = ids.contained_person_id(len(contained) + 1)
            contained.append(_person(party, cid))
        parties.append(_party(party, cid))
    return parties, contained


def _related_artifacts(trial: Trial) -> list[dict]:
    out = []
    if trial.nct_id:
        record = f"https://clinicaltrials.gov/study/{trial.nct_id}"
        verified = f"Status last verified {trial.status_verified_date}" if trial.status_verified_date else None
        out.append(compact({"type": "documentation", "label": "ClinicalTrials.gov record", "display": verified,
                            "document": {"url": record}, "publicationDate": trial.first_posted_date}))
        if trial.has_results:
            out.append(compact({"type": "documentation", "label": "ClinicalTrials.gov results",
                                "document": {"url": f"{record}?tab=results"},
                                "publicationDate": trial.results_first_posted_date}))
    for ref in trial.references:
        url = ref.url or (f"https://pubmed.ncbi.nlm.nih.gov/{ref.pmid}/" if ref.pmid else None)
        kind = (ref.type or "").lower()
        out.append(compact({
            "type": "citation" if ref.citation or ref.pmid else "documentation",
            "classifier": [concept(text=kind)] if kind else [],
            "label": ref.label,
            "citation": ref.citation,
            "document": {"url": url} if url else None,
        }))
    ipd = trial.ipd_sharing
    if ipd is not None:
        details = [f"Plan to share IPD: {ipd.sharing}" if ipd.sharing else None, ipd.description,
                   f"Information types: {', '.join(ipd.info_types)}" if ipd.info_types else None,
                   f"Time frame: {ipd.time_frame}" if ipd.time_frame else None,
                   f"Access criteria: {ipd.access_criteria}" if ipd.access_criteria else None]
        out.append(compact({"type": "documentation", "label": "Individual participant data (IPD) sharing statement",
                            "display": "\n\n".join(d for d in details if d),
                            "document": {"url": ipd.url} if ipd.url else None}))
    return out


def _comparison_groups(trial: Trial) -> list[dict]:
    out = []
    for n, arm in enumerate(trial.arms, 1):
        out.append(compact({
            "linkId": f"arm-{n}",
            "name": arm.label,
            "type": concept(terminology.coding("armGroupType", arm.type)),
            "description": arm.description,
            "observedGroup": results_groups.arm_group(trial, arm.label) if trial.results else None,
        }))
    return out


def _outcome_measures(trial: Trial, study_id: str) -> list[dict]:
    out = []
    counters: dict[str, int] = {}
    for outcome in trial.outcomes:
        counters[outcome.kind] = counters.get(outcome.kind, 0) + 1
        ev_id = ids.outcome_id(study_id, outcome.kind, counters[outcome.kind])
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
    has_eligibility = evidence_variable.has_eligibility(trial)
    has_protocol = bool(trial.interventions or trial.arms)
    recruitment = compact({
        "targetNumber": trial.enrollment if trial.enrollment_type != "ACTUAL" else None,
        "actualNumber": trial.enrollment if trial.enrollment_type == "ACTUAL" else None,
        "eligibility": reference("EvidenceVariable", ids.eligibility_id(sid), "Eligibility criteria")
        if has_eligibility else None,
    })
    parties, contained = _parties(trial)
    description = trial.detailed_description
    if trial.unplaced:
        unplaced = "\n\n".join(trial.unplaced)
        description = f"{description}\n\n{unplaced}" if description else unplaced
    return compact({
        "resourceType": RESOURCE_TYPE,
        "id": sid,
        "meta": meta(trial),
        "contained": contained,
        "extension": _ancestors(trial),
        "identifier": [_identifier(i) for i in trial.identifiers],
        "title": trial.brief_title,
        "label": _labels(trial),
        "relatedArtifact": _related_artifacts(trial),
        "date": trial.last_update_date,
        "status": "active",
        "primaryPurposeType": concept(terminology.coding("primaryPurpose", trial.primary_purpose)),
        "phase": _phase(trial),
        "studyDesign": _study_design(trial),
        "condition": _conditions(trial),
        "keyword": [{"text": k} for k in trial.keywords] + subtypes.keywords(trial),
        "classifier": _classifiers(trial),
        "descriptionSummary": trial.brief_summary,
        "description": description,
        "period": _period(trial.start_date, trial.completion_date),
        "site": [reference("Location", ids.site_id(sid, n), s.facility or s.city)
                 for n, s in enumerate(trial.sites, 1)],
        "associatedParty": parties,
        "progressStatus": _progress(trial),
        "whyStopped": concept(text=trial.why_stopped),
        "recruitment": recruitment or None,
        "comparisonGroup": _comparison_groups(trial),
        "outcomeMeasure": _outcome_measures(trial, sid),
        "protocol": [reference("PlanDefinition", ids.protocol_id(sid), "Interventions")]
        if has_protocol else [],
    })
