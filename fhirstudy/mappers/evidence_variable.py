"""Trial -> FHIR R5 EvidenceVariables: one per outcome measure, one for the eligibility criteria."""
from __future__ import annotations

from ..trial import Trial
from . import ids
from .common import compact, meta, reference

RESOURCE_TYPE = "EvidenceVariable"


def _outcome(trial: Trial, sid: str, outcome, n: int) -> dict:
    return compact({
        "resourceType": RESOURCE_TYPE,
        "id": ids.child_id(sid, "outcome", outcome.kind, n),
        "meta": meta(trial),
        "status": "active",
        "title": outcome.name,
        "shortTitle": f"{outcome.kind} outcome {n}",
        "description": outcome.description,
        "relatedArtifact": [{"type": "documentation", "resourceReference": reference("ResearchStudy", sid)}],
        "characteristic": [compact({
            "description": outcome.name,
            "definitionCodeableConcept": {"text": outcome.name},
            "timeFromEvent": [{"description": outcome.time_frame}] if outcome.time_frame else [],
        })],
    })


def _eligibility(trial: Trial, sid: str) -> dict:
    return {
        "resourceType": RESOURCE_TYPE,
        "id": ids.child_id(sid, "eligibility"),
        "meta": meta(trial),
        "status": "active",
        "title": f"Eligibility criteria: {trial.brief_title}",
        "actual": False,
        "relatedArtifact": [{"type": "documentation", "resourceReference": reference("ResearchStudy", sid)}],
        "characteristic": [
            {"description": c.text, "definitionCodeableConcept": {"text": c.text}, "exclude": c.exclude}
            for c in trial.criteria
        ],
    }


def map_trial(trial: Trial) -> list[dict]:
    """The outcome EvidenceVariables (primary, secondary, other, in source order), then the
    eligibility EvidenceVariable when the trial lists criteria."""
    sid = ids.study_id(trial)
    out, counters = [], {}
    for outcome in trial.outcomes:
        counters[outcome.kind] = counters.get(outcome.kind, 0) + 1
        out.append(_outcome(trial, sid, outcome, counters[outcome.kind]))
    if trial.criteria:
        out.append(_eligibility(trial, sid))
    return out
