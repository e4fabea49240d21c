"""Narratives of the protocol's resources: the ResearchStudy, its PlanDefinition (arms and
interventions) and its EvidenceVariables (the eligibility criteria; each outcome with its time
frame)."""
from __future__ import annotations

from .xhtml import bold, concept_text, heading, items, labelled, para, text

CTGOV_SYSTEM = "https://clinicaltrials.gov"
LEAD_SPONSOR = "lead-sponsor"
PRIMARY_COMPLETION = "Primary completion"  # the progressStatus state text the mapper writes


def _distinct(values) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        if v and v not in seen:
            seen[v] = None
    return list(seen)


def _status(study: dict) -> tuple[str | None, str | None]:
    """The recruitment state in words, and the primary completion date."""
    state = completion = None
    for p in study.get("progressStatus", ()):
        if "period" not in p:
            state = state or concept_text(p.get("state"))
        elif (p.get("state") or {}).get("text") == PRIMARY_COMPLETION:
            completion = p["period"].get("end")
    return state, completion


def _enrollment(study: dict) -> str | None:
    recruitment = study.get("recruitment") or {}
    if recruitment.get("actualNumber") is not None:
        return f"{recruitment['actualNumber']} (actual)"
    if recruitment.get("targetNumber") is not None:
        return f"{recruitment['targetNumber']} (target)"
    return None


def research_study(study: dict, context) -> str:
    """Title, NCT number, status, phase, conditions, sponsor, dates, enrollment, sites."""
    nct = next((i.get("value") for i in study.get("identifier", ()) if i.get("system") == CTGOV_SYSTEM), None)
    state, primary_completion = _status(study)
    conditions = _distinct(concept_text(c) for c in study.get("condition", ()))
    sponsor = next((p.get("name") for p in study.get("associatedParty", ())
                    if any(c.get("code") == LEAD_SPONSOR for c in (p.get("role") or {}).get("coding", ()))), None)
    period = study.get("period") or {}
    sites = len(study.get("site", ()))
    return "".join((
        heading(study.get("title") or study["id"]),
        labelled("NCT number", nct) if nct else labelled("Study", study["id"]),
        labelled("Status", state),
        labelled("Why stopped", concept_text(study.get("whyStopped"))),
        labelled("Phase", concept_text(study.get("phase"))),
        labelled("Conditions", "; ".join(conditions) or None),
        labelled("Sponsor", sponsor),
        labelled("Start", period.get("start")),
        labelled("Primary completion", primary_completion),
        labelled("Completion", period.get("end")),
        labelled("Enrollment", _enrollment(study)),
        labelled("Sites", sites or None),
    ))


def _action(action: dict) -> str:
    kind = concept_text(action.get("code")) if isinstance(action.get("code"), dict) else None
    head = (f"{text(kind)}: " if kind else "") + text(action.get("title") or action.get("textEquivalent")
                                                        or action.get("linkId") or "action")
    return head + items([_action(a) for a in action.get("action", ())])


def plan_definition(plan: dict, context) -> str:
    """The title, then each arm with its interventions (or each intervention)."""
    arms = [a for a in plan.get("action", ()) if a.get("action")]
    loose = [a for a in plan.get("action", ()) if not a.get("action")]
    body = [heading(plan.get("title") or "Interventions")]
    if arms:
        body.append(items([bold(a.get("title") or a.get("linkId") or "Arm")
                           + items([_action(c) for c in a["action"]]) for a in arms]))
    if loose:
        body.append(items([_action(a) for a in loose]))
    return "".join(body)


def _criterion(c: dict) -> str:
    """A criterion's line, and its sub-items where they say more than the line (not the facts
    read from the line itself, whose texts are parts of it)."""
    line = c.get("description") or concept_text(c.get("definitionCodeableConcept")) or ""
    parts = (c.get("definitionByCombination") or {}).get("characteristic", ())
    sub = [p for p in parts if p.get("description") and p["description"] not in line]
    return text(line) + items([_criterion(p) for p in sub])


def _eligibility(ev: dict) -> str:
    chars = ev.get("characteristic", ())
    criteria = [c for c in chars if str(c.get("linkId", "")).startswith(("inclusion-", "exclusion-"))]
    general = [c.get("description") for c in chars if c not in criteria and c.get("description")]
    inclusion = [_criterion(c) for c in criteria if not c.get("exclude")]
    exclusion = [_criterion(c) for c in criteria if c.get("exclude")]
    return "".join((
        heading(ev.get("title") or "Eligibility criteria"),
        para("; ".join(general)) if general else "",
        labelled("Study population", ev.get("description")) if not criteria else "",
        ("<p><b>Inclusion criteria</b></p>" + items(inclusion)) if inclusion else "",
        ("<p><b>Exclusion criteria</b></p>" + items(exclusion)) if exclusion else "",
    ))


def _outcome(ev: dict) -> str:
    kind = ev.get("shortTitle")
    frames = _distinct(t.get("description") for c in ev.get("characteristic", ()) for t in c.get("timeFromEvent", ()))
    return "".join((
        heading(ev.get("title") or ev["id"]),
        para(kind[:1].upper() + kind[1:]) if kind else "",
        labelled("Time frame", "; ".join(frames) or None),
    ))


def evidence_variable(ev: dict, context) -> str:
    """Eligibility: the criteria, inclusion and exclusion, as lists. An outcome: its title, kind
    and time frame."""
    if ev.get("actual") is False or any("linkId" in c for c in ev.get("characteristic", ())):
        return _eligibility(ev)
    return _outcome(ev)
