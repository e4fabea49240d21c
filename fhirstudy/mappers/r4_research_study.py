"""FHIR R5 -> R4 ResearchStudy (the ``to_r4`` of :mod:`fhirstudy.mappers.research_study`).

ResearchStudy.status (R4: the study's state) from the R5 progressStatus state;
``recruitment.eligibility`` becomes ``enrollment``: a Group ``<trial>-enrollment`` with the
eligibility characteristics; ``comparisonGroup`` -> ``arm``; outcome measures -> ``objective``
(type primary / secondary / exploratory); ``classifier`` -> ``category``; ``whyStopped`` ->
``reasonStopped``; the lead sponsor -> an Organization ``<trial>-sponsor`` (``sponsor``) and the
principal investigator -> a Practitioner ``<trial>-principal-investigator``
(``principalInvestigator``); sites stay Locations; what R4 has no element for (``label``, ``date``,
``descriptionSummary``, ``studyDesign``, ``associatedParty``, ``progressStatus``, ``recruitment``,
``outcomeMeasure``, ...) goes into the cross-version extensions. A comparison group's
``observedGroup`` (a result Group) is kept only when the results go too (``push
--r4-results=extensions``): otherwise it would point at nothing.
"""
from __future__ import annotations

from . import ids
from .common import compact
from .r4_base import R4Context, complex_ext, concepts, ext, extension_url, related_artifact, table

def _status(study: dict) -> str:
    statuses = table()
    for progress in study.get("progressStatus", []):
        for coding in progress.get("state", {}).get("coding", []):
            if coding.get("system") == "http://hl7.org/fhir/research-study-status":
                mapped = statuses["researchStudyStatus"].get(coding.get("code"))
                if mapped:
                    return mapped
    return statuses["defaultResearchStudyStatus"]


def _role(party: dict) -> str | None:
    codings = (party.get("role") or {}).get("coding", [])
    return codings[0].get("code") if codings else None


def _sponsor(study: dict, sid: str, meta: dict) -> dict | None:
    roles = table()["sponsorRoles"]
    party = next((p for p in study.get("associatedParty", []) if _role(p) in roles and p.get("name")), None)
    if party is None:
        return None
    return {"resourceType": "Organization", "id": ids.sponsor_id(sid), "meta": meta,
            "active": True, "name": party["name"]}


def _investigator(study: dict, sid: str, meta: dict) -> tuple[dict | None, str | None]:
    roles = table()["principalInvestigatorRoles"]
    party = next((p for p in study.get("associatedParty", []) if _role(p) in roles), None)
    if party is None:
        return None, None
    contained = {f"#{c['id']}": c for c in study.get("contained", [])}
    person = contained.get((party.get("party") or {}).get("reference", ""))
    display = (party.get("party") or {}).get("display") or party.get("name")
    name = person["name"] if person else [{"text": party.get("name") or display}]
    return compact({"resourceType": "Practitioner", "id": ids.investigator_id(sid),
                    "meta": meta, "active": True, "name": name,
                    "telecom": person.get("telecom") if person else None}), display


def _group_characteristics(c: dict, exclude: bool) -> list[dict]:
    """An R5 eligibility characteristic as R4 Group characteristics, which all must hold. A
    combination is flattened only where that keeps its meaning: the items of an inclusion
    ``all-of`` each must hold, and each item of an exclusion ``any-of`` excludes (not (A or B) is
    (not A) and (not B)). Any other combination stays one characteristic, in words."""
    by_value = c.get("definitionByTypeAndValue")
    if by_value and not c.get("note"):  # a conditional threshold ("or <= 5 x ULN with liver
        # metastases") would exclude the patients its note admits: R4 Group has no note, so words
        kind = next(k for k in by_value if k.startswith("value"))
        return [{"code": concepts(by_value["type"]), kind: concepts(by_value[kind]), "exclude": exclude}]
    combination = c.get("definitionByCombination")
    if combination and combination["code"] == ("any-of" if exclude else "all-of"):
        return [g for part in combination["characteristic"] for g in _group_characteristics(part, exclude)]
    text = c.get("definitionCodeableConcept") or {"text": _words(c)}
    if c.get("note"):
        text = {"text": " ".join([text["text"], *(n["text"] for n in c["note"])])}
    return [{"code": {"text": "Exclusion criterion" if exclude else "Inclusion criterion"},
             "valueCodeableConcept": text, "exclude": exclude}]


def _words(c: dict) -> str:
    parts = (c.get("definitionByCombination") or {}).get("characteristic", [])
    items = "; ".join(p["description"] for p in parts if p.get("description"))
    return f"{c.get('description')} {items}" if items else c.get("description") or ""


def _group(study: dict, eligibility: dict | None, sid: str) -> dict:
    """The enrollment Group: who may take part (the eligibility characteristics), not members."""
    characteristics = []
    for c in (eligibility or {}).get("characteristic", []):
        characteristics += _group_characteristics(c, bool(c.get("exclude", False)))
    recruitment = study.get("recruitment") or {}
    return compact({
        "resourceType": "Group",
        "id": ids.enrollment_id(sid),
        "meta": study.get("meta"),
        "type": "person",
        "actual": False,
        "name": f"Enrollment: {study.get('title') or sid}",
        "quantity": recruitment.get("actualNumber"),
        "characteristic": characteristics,
    })


def _party_extension(party: dict) -> dict | None:
    return complex_ext(extension_url("ResearchStudy.associatedParty"), [
        ("name", "String", party.get("name")), ("role", "CodeableConcept", party.get("role")),
        ("classifier", "CodeableConcept", party.get("classifier", [])),
        ("party", "Reference", party.get("party"))])


def _study_extensions(study: dict, with_results: bool = False) -> list[dict]:
    rs = "ResearchStudy"
    recruitment = study.get("recruitment") or {}
    extensions = [
        *study.get("extension", []),  # fhirstudy's own (the conditions' MeSH ancestors) mean the same in R4
        *[complex_ext(extension_url(f"{rs}.label"), [("type", "CodeableConcept", lb.get("type")),
                                                  ("value", "String", lb.get("value"))])
          for lb in study.get("label", [])],
        ext(extension_url(f"{rs}.date"), "DateTime", study.get("date")),
        ext(extension_url(f"{rs}.descriptionSummary"), "Markdown", study.get("descriptionSummary")),
        *[ext(extension_url(f"{rs}.studyDesign"), "CodeableConcept", concepts(d))
          for d in study.get("studyDesign", [])],
        *[_party_extension(p) for p in study.get("associatedParty", [])],
        *[complex_ext(extension_url(f"{rs}.progressStatus"), [
            ("state", "CodeableConcept", p.get("state")), ("actual", "Boolean", p.get("actual")),
            ("period", "Period", p.get("period"))]) for p in study.get("progressStatus", [])],
        complex_ext(extension_url(f"{rs}.recruitment"), [
            ("targetNumber", "UnsignedInt", recruitment.get("targetNumber")),
            ("actualNumber", "UnsignedInt", recruitment.get("actualNumber")),
            ("eligibility", "Reference", recruitment.get("eligibility"))]),
        *[complex_ext(extension_url(f"{rs}.outcomeMeasure"), [
            ("name", "String", o.get("name")), ("type", "CodeableConcept", o.get("type", [])),
            ("description", "Markdown", o.get("description")), ("reference", "Reference", o.get("reference"))])
          for o in study.get("outcomeMeasure", [])],
        *[complex_ext(extension_url(f"{rs}.comparisonGroup"), [
            ("linkId", "Id", g.get("linkId")), ("name", "String", g.get("name")),
            ("observedGroup", "Reference", g.get("observedGroup") if with_results else None)])
          for g in study.get("comparisonGroup", [])],
    ]
    return [e for e in extensions if e]


def _objectives(study: dict) -> list[dict]:
    """R5 objectives as they are, then one per outcome measure typed primary/secondary/exploratory."""
    types = table()["objectiveTypes"]
    out = [compact({"name": o.get("name"), "type": concepts(o.get("type"))}) for o in study.get("objective", [])]
    for o in study.get("outcomeMeasure", []):
        coding = next((c for t in o.get("type", []) for c in t.get("coding", [])), None)
        kind = types.get(coding["code"]) if coding else None
        out.append(compact({"name": o.get("name"), "type": concepts({"coding": [{
            **coding, "code": kind}]}) if kind else None}))
    return [o for o in out if o]


def research_study(study: dict, eligibility: dict | None, with_results: bool = False) -> list[dict]:
    """The R4 ResearchStudy and the resources it now references (enrollment Group, sponsor
    Organization, principal investigator Practitioner); ``with_results`` when the result Groups
    are converted too (comparison groups keep their ``observedGroup``)."""
    sid = study["id"]
    meta = study.get("meta")
    group = _group(study, eligibility, sid) if eligibility or study.get("recruitment") else None
    sponsor = _sponsor(study, sid, meta)
    investigator, pi_display = _investigator(study, sid, meta)
    r4 = compact({
        "resourceType": "ResearchStudy",
        "id": sid,
        "meta": meta,
        "text": study.get("text"),
        "contained": study.get("contained", []),
        "extension": _study_extensions(study, with_results),
        "identifier": study.get("identifier", []),
        "title": study.get("title"),
        "protocol": study.get("protocol", []),
        "status": _status(study),
        "primaryPurposeType": concepts(study.get("primaryPurposeType")),
        "phase": concepts(study.get("phase")),
        "category": concepts(study.get("classifier", [])),
        "condition": study.get("condition", []),
        "relatedArtifact": [related_artifact(ra, "ResearchStudy") for ra in study.get("relatedArtifact", [])],
        "keyword": study.get("keyword", []),
        "description": study.get("description"),
        "enrollment": [{"reference": f"Group/{group['id']}", "display": "Eligible participants"}] if group else [],
        "period": study.get("period"),
        "sponsor": {"reference": f"Organization/{sponsor['id']}", "display": sponsor["name"]} if sponsor else None,
        "principalInvestigator": compact({"reference": f"Practitioner/{investigator['id']}",
                                          "display": pi_display}) if investigator else None,
        "site": study.get("site", []),
        "reasonStopped": concepts(study.get("whyStopped")),
        "arm": [compact({"name": g.get("name") or g.get("linkId"), "type": g.get("type"),
                         "description": g.get("description")}) for g in study.get("comparisonGroup", [])],
        "objective": _objectives(study),
    })
    return [r for r in (r4, group, sponsor, investigator) if r]


def to_r4(study: dict, context: R4Context) -> list[dict]:
    """The R4 ResearchStudy and the resources it now references (enrollment Group, sponsor
    Organization, principal investigator Practitioner), in that order."""
    eligibility = context.resolve(((study.get("recruitment") or {}).get("eligibility") or {}).get("reference"))
    return research_study(study, eligibility, context.results == "extensions")
