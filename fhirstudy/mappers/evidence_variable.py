"""Trial -> FHIR R5 EvidenceVariables: one per outcome measure, one for the eligibility criteria."""
from __future__ import annotations

import re

from .. import eligibility, terminology
from ..trial import Trial
from . import ids
from .common import compact, concept, meta, reference
from .r4_base import R4Context, complex_ext, ext, extension_url, related_artifact

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Year|Month|Week|Day|Hour|Minute)s?\s*$", re.IGNORECASE)

RESOURCE_TYPE = "EvidenceVariable"


def _outcome(trial: Trial, sid: str, outcome, n: int) -> dict:
    return compact({
        "resourceType": RESOURCE_TYPE,
        "id": ids.outcome_id(sid, outcome.kind, n),
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


def _age(text: str | None) -> dict | None:
    """ "18 Years" -> a UCUM Quantity; None for absent or unreadable ages ("N/A")."""
    match = _AGE.match(text or "")
    if not match:
        return None
    units = terminology.load_mapping("eligibility-characteristics.json")["age"]["units"]
    unit = units[match.group(2).capitalize()]
    number = float(match.group(1))
    return {"value": int(number) if number.is_integer() else number, "unit": unit["unit"],
            "system": "http://unitsofmeasure.org", "code": unit["code"]}


def _computable(trial: Trial) -> list[dict]:
    """Sex, age range and healthy volunteers as computable characteristics."""
    table = terminology.load_mapping("eligibility-characteristics.json")
    out = []
    sex = terminology.coding("sex", trial.sex)
    if sex:
        out.append({"linkId": "sex", "description": f"Sex: {sex['display']}", "exclude": False,
                    "definitionByTypeAndValue": {"type": table["sex"]["type"], "valueCodeableConcept": concept(sex)}})
    low, high = _age(trial.minimum_age), _age(trial.maximum_age)
    if low or high:
        words = " to ".join(t for t in (trial.minimum_age, trial.maximum_age) if t and _age(t))
        description = (f"Age {words}" if low and high else
                       f"Age {trial.minimum_age} or older" if low else f"Age up to {trial.maximum_age}")
        out.append({"linkId": "age", "description": description, "exclude": False, "definitionByTypeAndValue": {
            "type": concept(table["age"]["type"]), "valueRange": compact({"low": low, "high": high})}})
    if trial.healthy_volunteers is not None:
        out.append({"linkId": "healthy-volunteers",
                    "description": "Accepts healthy volunteers" if trial.healthy_volunteers
                    else "Does not accept healthy volunteers", "exclude": False,
                    "definitionByTypeAndValue": {"type": table["healthyVolunteers"]["type"],
                                                 "valueBoolean": trial.healthy_volunteers}})
    return out


def _definition(text: str, exclude: bool, link_id: str, computable: bool = True) -> dict:
    """What a criterion's text says: its facts in FHIR terms where :func:`eligibility.facts` reads
    them without doubt (a nested fact gets the linkId "<link_id>.<n>"), else the text alone."""
    found = eligibility.facts(text, exclude=exclude) if computable else None
    if not found:
        return {"definitionCodeableConcept": {"text": text}}
    return _linked(found, link_id)


def _linked(definition: dict, link_id: str) -> dict:
    combination = definition.get("definitionByCombination")
    if not combination:
        return definition
    parts = [{"linkId": f"{link_id}.{n}", **_linked(part, f"{link_id}.{n}")}
             for n, part in enumerate(combination["characteristic"], start=1)]
    return {**definition, "definitionByCombination": {**combination, "characteristic": parts}}


def _combination(criterion) -> str:
    """all-of or any-of for a criterion's items, by its wording ("any of the following") or, without
    a cue, by its side (``eligibility-cues.json`` ``combination``)."""
    table = terminology.load_mapping("eligibility-cues.json")["combination"]
    for code in ("any-of", "all-of"):
        if re.search(table[code], criterion.text, re.IGNORECASE):
            return code
    return table["default"]["exclusion" if criterion.exclude else "inclusion"]


def _criterion(criterion, link_id: str) -> dict:
    """One criterion as a characteristic: its text, side and stable ``linkId`` (side and place:
    "inclusion-3"); a sub-list becomes a ``definitionByCombination`` of one characteristic per item
    ("inclusion-3.1" ...). A criterion of a qualified block ("Stage 1") says the qualifier first
    and stays text: its facts hold for part of the study only, and a matcher would apply them to all."""
    description = f"{criterion.qualifier}: {criterion.text}" if criterion.qualifier else criterion.text
    out = {"linkId": link_id, "description": description, "exclude": criterion.exclude}
    computable = not criterion.qualifier
    if criterion.items:
        out["definitionByCombination"] = {"code": _combination(criterion), "characteristic": [
            {"linkId": f"{link_id}.{n}", "description": item,
             **_definition(item, criterion.exclude, f"{link_id}.{n}", computable)}
            for n, item in enumerate(criterion.items, start=1)]}
    else:
        out.update(_definition(criterion.text, criterion.exclude, link_id, computable))
    return out


def _criteria(trial: Trial) -> list[dict]:
    counters = {False: 0, True: 0}
    out = []
    for c in trial.criteria:
        if c.note:
            continue
        counters[c.exclude] += 1
        out.append(_criterion(c, f"{'exclusion' if c.exclude else 'inclusion'}-{counters[c.exclude]}"))
    return out


def criteria(trial: Trial) -> list[dict]:
    """The criteria of a trial as eligibility characteristics (inclusion and exclusion, in source
    order, notes left out), as the eligibility EvidenceVariable lists them after sex, age and
    healthy volunteers."""
    return _criteria(trial)


def _eligibility(trial: Trial, sid: str) -> dict:
    notes = [f"Standard age groups: {', '.join(trial.std_ages)}" if trial.std_ages else None,
             f"Sampling method: {trial.sampling_method}" if trial.sampling_method else None,
             f"Gender based: {'Yes' if trial.gender_based else 'No'}" if trial.gender_based is not None else None,
             f"Gender description: {trial.gender_description}" if trial.gender_description else None]
    return compact({
        "resourceType": RESOURCE_TYPE,
        "id": ids.eligibility_id(sid),
        "meta": meta(trial),
        "status": "active",
        "title": f"Eligibility criteria: {trial.brief_title}",
        "description": trial.study_population,
        "note": [{"text": n} for n in notes if n] + [{"text": c.text} for c in trial.criteria if c.note],
        "actual": False,
        "relatedArtifact": [{"type": "documentation", "resourceReference": reference("ResearchStudy", sid)}],
        "characteristic": _computable(trial) + criteria(trial),
    })


def has_eligibility(trial: Trial) -> bool:
    """Whether the trial has anything for the eligibility EvidenceVariable to say."""
    return bool(trial.criteria or _computable(trial) or trial.study_population)


def map_trial(trial: Trial) -> list[dict]:
    """The outcome EvidenceVariables (primary, secondary, other, in source order), then the
    eligibility EvidenceVariable when the trial lists criteria."""
    sid = ids.study_id(trial)
    out, counters = [], {}
    for outcome in trial.outcomes:
        counters[outcome.kind] = counters.get(outcome.kind, 0) + 1
        out.append(_outcome(trial, sid, outcome, counters[outcome.kind]))
    if has_eligibility(trial):
        out.append(_eligibility(trial, sid))
    return out


def _r4_text(characteristic: dict) -> str:
    """A characteristic in words, its combination's items after it (R4 has no nesting)."""
    parts = (characteristic.get("definitionByCombination") or {}).get("characteristic", [])
    words = "; ".join(p.get("description") or "" for p in parts if p.get("description"))
    return f"{characteristic.get('description')} {words}" if words else characteristic.get("description")


def to_r4(ev: dict, context: R4Context | None = None) -> dict:
    """R5 EvidenceVariable -> R4 (``definitionByTypeAndValue`` and ``timeFromEvent`` as extensions,
    each characteristic keeping a CodeableConcept definition; ``actual`` as an extension)."""
    base = "EvidenceVariable"
    characteristics = []
    for c in ev.get("characteristic", []):
        extensions = [e for e in (
            complex_ext(extension_url(f"{base}.characteristic.definitionByTypeAndValue"), [
                ("type", "CodeableConcept", (c.get("definitionByTypeAndValue") or {}).get("type")),
                *[(k, k[5:], v) for k, v in (c.get("definitionByTypeAndValue") or {}).items() if k.startswith("value")]]),
            *[ext(extension_url(f"{base}.characteristic.note"), "Annotation", n) for n in c.get("note", [])],
            *[complex_ext(extension_url(f"{base}.characteristic.timeFromEvent"), [
                ("description", "Markdown", t.get("description"))]) for t in c.get("timeFromEvent", [])],
        ) if e]
        characteristics.append(compact({
            "extension": extensions,
            "description": c.get("description"),
            "definitionCodeableConcept": c.get("definitionCodeableConcept") or {"text": _r4_text(c)},
            "exclude": c.get("exclude"),
        }))
    if not characteristics:  # R4 needs one: the study population in words
        characteristics.append({"description": ev.get("description") or ev.get("title"),
                                "definitionCodeableConcept": {"text": ev.get("description") or ev.get("title")}})
    return compact({
        "resourceType": "EvidenceVariable",
        "id": ev["id"],
        "meta": ev.get("meta"),
        "text": ev.get("text"),
        "extension": [e for e in [ext(extension_url(f"{base}.actual"), "Boolean", ev.get("actual"))] if e],
        "identifier": ev.get("identifier", []),
        "title": ev.get("title"),
        "shortTitle": ev.get("shortTitle"),
        "status": ev["status"],
        "description": ev.get("description"),
        "note": ev.get("note", []),
        "relatedArtifact": [related_artifact(ra, base) for ra in ev.get("relatedArtifact", [])],
        "characteristic": characteristics,
    })
