"""Trial -> FHIR R5 PlanDefinition: the protocol's interventions as actions.

Each single drug or procedure an intervention names is its own action; where arms are known, the
actions are grouped under one action per arm.
"""
from __future__ import annotations

from .. import terminology
from ..trial import Intervention, Trial
from . import ids
from .common import compact, meta, reference
from .r4_base import R4Context, ext, extension_url, related_artifact

RESOURCE_TYPE = "PlanDefinition"


def _type_text(itype: str) -> str:
    return itype.replace("_", " ").capitalize()


def _mesh(trial: Trial, names: list[str]) -> list[dict]:
    """MeSH codings from the registry's derivedSection whose term is one of the names."""
    folded = {terminology.fold(n) for n in names}
    return [{"system": terminology.MESH_SYSTEM, "code": m.id, "display": m.term}
            for m in trial.intervention_meshes if terminology.fold(m.term) in folded]


def _component_actions(trial: Trial, intervention: Intervention, prefix: str) -> list[dict]:
    names = intervention.components or (intervention.name,)
    description = intervention.description
    if intervention.other_names:
        other = f"Other names: {'; '.join(intervention.other_names)}"
        description = f"{description}\n\n{other}" if description else other
    return [compact({
        "linkId": f"{prefix}-{n}",
        "title": name,
        "description": description,
        "textEquivalent": intervention.name if name != intervention.name else None,
        "code": compact({"coding": _mesh(trial, [name, *(intervention.other_names if name == intervention.name else ())]),
                         "text": _type_text(intervention.type)}),
    }) for n, name in enumerate(names, 1)]


def map_trial(trial: Trial) -> list[dict]:
    """The PlanDefinition of a trial's interventions, or nothing when it names none."""
    if not (trial.interventions or trial.arms):
        return []
    sid = ids.study_id(trial)
    by_name = {i.name: i for i in trial.interventions}
    actions: list[dict] = []
    if trial.arms:
        placed: set[str] = set()
        for a, arm in enumerate(trial.arms, 1):
            children = []
            for i, name in enumerate(arm.interventions, 1):
                intervention = by_name.get(name)
                if intervention is not None:
                    placed.add(name)
                    children.extend(_component_actions(trial, intervention, f"arm-{a}-{i}"))
            actions.append(compact({"linkId": f"arm-{a}", "title": arm.label, "description": arm.description,
                                    "groupingBehavior": "logical-group", "action": children}))
        loose = [i for i in trial.interventions if i.name not in placed]
    else:
        loose = list(trial.interventions)
    for n, intervention in enumerate(loose, 1):
        actions.extend(_component_actions(trial, intervention, f"intervention-{n}"))
    return [{
        "resourceType": RESOURCE_TYPE,
        "id": ids.protocol_id(sid),
        "meta": meta(trial),
        "status": "active",
        "title": f"Interventions: {trial.brief_title}",
        "relatedArtifact": [{"type": "documentation", "resourceReference": reference("ResearchStudy", sid)}],
        "action": actions,
    }] if actions else []


def _action(action: dict) -> dict:
    return compact({
        "extension": [e for e in [ext(extension_url("PlanDefinition.action.linkId"), "String",
                                       action.get("linkId"))] if e],
        "title": action.get("title"),
        "description": action.get("description"),
        "textEquivalent": action.get("textEquivalent"),
        "code": [action["code"]] if isinstance(action.get("code"), dict) else action.get("code", []),
        "groupingBehavior": action.get("groupingBehavior"),
        "action": [_action(a) for a in action.get("action", [])],
    })


def to_r4(pd: dict, context: R4Context | None = None) -> dict:
    """R5 PlanDefinition -> R4 (``action.code`` is a list in R4; ``action.linkId`` an extension)."""
    out = {k: v for k, v in pd.items() if k not in ("action", "relatedArtifact")}
    out["relatedArtifact"] = [related_artifact(ra, "PlanDefinition") for ra in pd.get("relatedArtifact", [])]
    out["action"] = [_action(a) for a in pd.get("action", [])]
    return compact(out)
