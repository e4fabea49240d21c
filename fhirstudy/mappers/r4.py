"""FHIR R5 -> R4 down-conversion of one trial's resources (pure functions, no HTTP).

``to_r4(resources)`` takes the R5 resources of one trial (as ``map_resources`` gives them, the
ResearchStudy first) and returns their R4 shape, plus the resources R4 needs where R5 has a
backbone element:

- ResearchStudy.status (R4: the study's state) from the R5 progressStatus state;
  ``recruitment.eligibility`` becomes ``enrollment``: a Group ``<trial>-enrollment`` with the
  eligibility characteristics; ``comparisonGroup`` -> ``arm``; outcome measures -> ``objective``
  (type primary / secondary / exploratory); ``classifier`` -> ``category``; ``whyStopped`` ->
  ``reasonStopped``; the lead sponsor -> an Organization ``<trial>-sponsor`` (``sponsor``) and the
  principal investigator -> a Practitioner ``<trial>-principal-investigator``
  (``principalInvestigator``); sites stay Locations;
- what R4 has no element for (``label``, ``date``, ``descriptionSummary``, ``studyDesign``,
  ``associatedParty``, ``progressStatus``, ``recruitment``, ``outcomeMeasure``, ...) goes into the
  cross-version extensions ``http://hl7.org/fhir/5.0/StructureDefinition/extension-<Type>.<element>``
  (complex elements as nested extensions named after their children);
- EvidenceVariable, PlanDefinition, Location and Provenance in their R4 shape.

Code systems whose URL moved between versions and the status table are data in
``mappings/r5-to-r4.json``. Same input, same bytes: nothing here reads a clock.
"""
from __future__ import annotations

from typing import Any

import orjson

from .. import terminology
from . import ids
from .common import compact

TABLE_FILE = "r5-to-r4.json"
EPOCH = "1970-01-01T00:00:00Z"  # Provenance.recorded when the record carries no date at all


def _table() -> dict:
    return terminology.load_mapping(TABLE_FILE)


def extension_url(path: str) -> str:
    """The cross-version extension URL of an R5 element (``ResearchStudy.label``)."""
    return _table()["extensionBase"] + path


def _ext(url: str, kind: str, value: Any) -> dict | None:
    """One extension with ``value<kind>``; None for an empty value."""
    if value is None or value == [] or value == {} or value == "":
        return None
    return {"url": url, f"value{kind}": value}


def _complex(url: str, parts: list[tuple[str, str, Any]]) -> dict | None:
    """A complex extension: one sub-extension per (child name, value type, value); list values
    repeat the sub-extension."""
    subs = []
    for name, kind, value in parts:
        for v in value if isinstance(value, list) else [value]:
            sub = _ext(name, kind, _concepts(v) if kind == "CodeableConcept" else v)
            if sub:
                subs.append(sub)
    return {"url": url, "extension": subs} if subs else None


def _concepts(value: Any) -> Any:
    """Rewrite code systems whose URL moved between R5 and R4 (anywhere inside ``value``)."""
    systems = _table()["systems"]
    if isinstance(value, dict):
        out = {k: _concepts(v) for k, v in value.items()}
        if isinstance(out.get("system"), str) and out["system"] in systems:
            out["system"] = systems[out["system"]]
        return out
    if isinstance(value, list):
        return [_concepts(v) for v in value]
    return value


def _related_artifact(ra: dict, owner: str) -> dict:
    """R5 RelatedArtifact -> R4 (``resourceReference``, ``classifier`` and ``publicationDate``
    become extensions; ``document`` is an Attachment in both)."""
    base = "RelatedArtifact"
    extensions = [e for e in (
        *[_ext(extension_url(f"{base}.classifier"), "CodeableConcept", c) for c in ra.get("classifier", [])],
        _ext(extension_url(f"{base}.resourceReference"), "Reference", ra.get("resourceReference")),
        _ext(extension_url(f"{base}.publicationDate"), "Date", ra.get("publicationDate")),
    ) if e]
    return compact({
        "extension": extensions,
        "type": ra["type"],
        "label": ra.get("label"),
        "display": ra.get("display"),
        "citation": ra.get("citation"),
        "url": (ra.get("document") or {}).get("url"),
        "document": ra.get("document"),
    })


# ---------------------------------------------------------------------------------------------
# ResearchStudy


def _status(study: dict) -> str:
    table = _table()
    for progress in study.get("progressStatus", []):
        for coding in progress.get("state", {}).get("coding", []):
            if coding.get("system") == "http://hl7.org/fhir/research-study-status":
                mapped = table["researchStudyStatus"].get(coding.get("code"))
                if mapped:
                    return mapped
    return table["defaultResearchStudyStatus"]


def _role(party: dict) -> str | None:
    codings = (party.get("role") or {}).get("coding", [])
    return codings[0].get("code") if codings else None


def _sponsor(study: dict, sid: str, meta: dict) -> dict | None:
    roles = _table()["sponsorRoles"]
    party = next((p for p in study.get("associatedParty", []) if _role(p) in roles and p.get("name")), None)
    if party is None:
        return None
    return {"resourceType": "Organization", "id": ids.sponsor_id(sid), "meta": meta,
            "active": True, "name": party["name"]}


def _investigator(study: dict, sid: str, meta: dict) -> tuple[dict | None, str | None]:
    roles = _table()["principalInvestigatorRoles"]
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


def _group(study: dict, eligibility: dict | None, sid: str) -> dict:
    """The enrollment Group: who may take part (the eligibility characteristics), not members."""
    characteristics = []
    for c in (eligibility or {}).get("characteristic", []):
        by_value = c.get("definitionByTypeAndValue")
        if by_value:
            kind = next(k for k in by_value if k.startswith("value"))
            characteristics.append({"code": _concepts(by_value["type"]), kind: _concepts(by_value[kind]),
                                    "exclude": bool(c.get("exclude", False))})
        elif "definitionCodeableConcept" in c:
            characteristics.append({
                "code": {"text": "Exclusion criterion" if c.get("exclude") else "Inclusion criterion"},
                "valueCodeableConcept": c["definitionCodeableConcept"],
                "exclude": bool(c.get("exclude", False))})
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
    return _complex(extension_url("ResearchStudy.associatedParty"), [
        ("name", "String", party.get("name")), ("role", "CodeableConcept", party.get("role")),
        ("classifier", "CodeableConcept", party.get("classifier", [])),
        ("party", "Reference", party.get("party"))])


def _study_extensions(study: dict) -> list[dict]:
    rs = "ResearchStudy"
    recruitment = study.get("recruitment") or {}
    extensions = [
        *[_complex(extension_url(f"{rs}.label"), [("type", "CodeableConcept", lb.get("type")),
                                                  ("value", "String", lb.get("value"))])
          for lb in study.get("label", [])],
        _ext(extension_url(f"{rs}.date"), "DateTime", study.get("date")),
        _ext(extension_url(f"{rs}.descriptionSummary"), "Markdown", study.get("descriptionSummary")),
        *[_ext(extension_url(f"{rs}.studyDesign"), "CodeableConcept", _concepts(d))
          for d in study.get("studyDesign", [])],
        *[_party_extension(p) for p in study.get("associatedParty", [])],
        *[_complex(extension_url(f"{rs}.progressStatus"), [
            ("state", "CodeableConcept", p.get("state")), ("actual", "Boolean", p.get("actual")),
            ("period", "Period", p.get("period"))]) for p in study.get("progressStatus", [])],
        _complex(extension_url(f"{rs}.recruitment"), [
            ("targetNumber", "UnsignedInt", recruitment.get("targetNumber")),
            ("actualNumber", "UnsignedInt", recruitment.get("actualNumber")),
            ("eligibility", "Reference", recruitment.get("eligibility"))]),
        *[_complex(extension_url(f"{rs}.outcomeMeasure"), [
            ("name", "String", o.get("name")), ("type", "CodeableConcept", o.get("type", [])),
            ("description", "Markdown", o.get("description")), ("reference", "Reference", o.get("reference"))])
          for o in study.get("outcomeMeasure", [])],
        *[_complex(extension_url(f"{rs}.comparisonGroup"), [
            ("linkId", "Id", g.get("linkId")), ("name", "String", g.get("name"))])
          for g in study.get("comparisonGroup", [])],
    ]
    return [e for e in extensions if e]


def _objectives(study: dict) -> list[dict]:
    """R5 objectives as they are, then one per outcome measure typed primary/secondary/exploratory."""
    types = _table()["objectiveTypes"]
    out = [compact({"name": o.get("name"), "type": _concepts(o.get("type"))}) for o in study.get("objective", [])]
    for o in study.get("outcomeMeasure", []):
        coding = next((c for t in o.get("type", []) for c in t.get("coding", [])), None)
        kind = types.get(coding["code"]) if coding else None
        out.append(compact({"name": o.get("name"), "type": _concepts({"coding": [{
            **coding, "code": kind}]}) if kind else None}))
    return [o for o in out if o]


def research_study(study: dict, eligibility: dict | None) -> list[dict]:
    """The R4 ResearchStudy and the resources it now references (enrollment Group, sponsor
    Organization, principal investigator Practitioner)."""
    sid = study["id"]
    meta = study.get("meta")
    group = _group(study, eligibility, sid) if eligibility or study.get("recruitment") else None
    sponsor = _sponsor(study, sid, meta)
    investigator, pi_display = _investigator(study, sid, meta)
    r4 = compact({
        "resourceType": "ResearchStudy",
        "id": sid,
        "meta": meta,
        "contained": study.get("contained", []),
        "extension": _study_extensions(study),
        "identifier": study.get("identifier", []),
        "title": study.get("title"),
        "protocol": study.get("protocol", []),
        "status": _status(study),
        "primaryPurposeType": _concepts(study.get("primaryPurposeType")),
        "phase": _concepts(study.get("phase")),
        "category": _concepts(study.get("classifier", [])),
        "condition": study.get("condition", []),
        "relatedArtifact": [_related_artifact(ra, "ResearchStudy") for ra in study.get("relatedArtifact", [])],
        "keyword": study.get("keyword", []),
        "description": study.get("description"),
        "enrollment": [{"reference": f"Group/{group['id']}", "display": "Eligible participants"}] if group else [],
        "period": study.get("period"),
        "sponsor": {"reference": f"Organization/{sponsor['id']}", "display": sponsor["name"]} if sponsor else None,
        "principalInvestigator": compact({"reference": f"Practitioner/{investigator['id']}",
                                          "display": pi_display}) if investigator else None,
        "site": study.get("site", []),
        "reasonStopped": _concepts(study.get("whyStopped")),
        "arm": [compact({"name": g.get("name") or g.get("linkId"), "type": g.get("type"),
                         "description": g.get("description")}) for g in study.get("comparisonGroup", [])],
        "objective": _objectives(study),
    })
    return [r for r in (r4, group, sponsor, investigator) if r]


# ---------------------------------------------------------------------------------------------
# the other resources


def evidence_variable(ev: dict) -> dict:
    """R5 EvidenceVariable -> R4 (``definitionByTypeAndValue`` and ``timeFromEvent`` as extensions,
    each characteristic keeping a CodeableConcept definition; ``actual`` as an extension)."""
    base = "EvidenceVariable"
    characteristics = []
    for c in ev.get("characteristic", []):
        extensions = [e for e in (
            _complex(extension_url(f"{base}.characteristic.definitionByTypeAndValue"), [
                ("type", "CodeableConcept", (c.get("definitionByTypeAndValue") or {}).get("type")),
                *[(k, k[5:], v) for k, v in (c.get("definitionByTypeAndValue") or {}).items() if k.startswith("value")]]),
            *[_complex(extension_url(f"{base}.characteristic.timeFromEvent"), [
                ("description", "Markdown", t.get("description"))]) for t in c.get("timeFromEvent", [])],
        ) if e]
        characteristics.append(compact({
            "extension": extensions,
            "description": c.get("description"),
            "definitionCodeableConcept": c.get("definitionCodeableConcept") or {"text": c.get("description")},
            "exclude": c.get("exclude"),
        }))
    if not characteristics:  # R4 needs one: the study population in words
        characteristics.append({"description": ev.get("description") or ev.get("title"),
                                "definitionCodeableConcept": {"text": ev.get("description") or ev.get("title")}})
    return compact({
        "resourceType": "EvidenceVariable",
        "id": ev["id"],
        "meta": ev.get("meta"),
        "extension": [e for e in [_ext(extension_url(f"{base}.actual"), "Boolean", ev.get("actual"))] if e],
        "identifier": ev.get("identifier", []),
        "title": ev.get("title"),
        "shortTitle": ev.get("shortTitle"),
        "status": ev["status"],
        "description": ev.get("description"),
        "note": ev.get("note", []),
        "relatedArtifact": [_related_artifact(ra, base) for ra in ev.get("relatedArtifact", [])],
        "characteristic": characteristics,
    })


def _action(action: dict) -> dict:
    return compact({
        "extension": [e for e in [_ext(extension_url("PlanDefinition.action.linkId"), "String",
                                       action.get("linkId"))] if e],
        "title": action.get("title"),
        "description": action.get("description"),
        "textEquivalent": action.get("textEquivalent"),
        "code": [action["code"]] if isinstance(action.get("code"), dict) else action.get("code", []),
        "groupingBehavior": action.get("groupingBehavior"),
        "action": [_action(a) for a in action.get("action", [])],
    })


def plan_definition(pd: dict) -> dict:
    """R5 PlanDefinition -> R4 (``action.code`` is a list in R4; ``action.linkId`` an extension)."""
    out = {k: v for k, v in pd.items() if k not in ("action", "relatedArtifact")}
    out["relatedArtifact"] = [_related_artifact(ra, "PlanDefinition") for ra in pd.get("relatedArtifact", [])]
    out["action"] = [_action(a) for a in pd.get("action", [])]
    return compact(out)


def location(loc: dict) -> dict:
    """R5 Location -> R4 (``characteristic`` and ``contact`` as extensions; the contacts' phones
    and emails also in ``telecom``)."""
    out = {k: v for k, v in loc.items() if k not in ("characteristic", "contact")}
    extensions = [_ext(extension_url("Location.characteristic"), "CodeableConcept", c)
                  for c in loc.get("characteristic", [])]
    extensions += [_complex(extension_url("Location.contact"), [
        ("purpose", "CodeableConcept", c.get("purpose")), ("name", "HumanName", c.get("name", [])),
        ("telecom", "ContactPoint", c.get("telecom", []))]) for c in loc.get("contact", [])]
    telecom = [t for c in loc.get("contact", []) for t in c.get("telecom", [])]
    head = {"resourceType": out.pop("resourceType"), "id": out.pop("id")}
    if "meta" in out:
        head["meta"] = out.pop("meta")
    return compact({**head, "extension": [e for e in extensions if e], **out, "telecom": telecom})


def _instant(date: str | None) -> str | None:
    if not date:
        return None
    if "T" in date:
        return date
    parts = (date.split("-") + ["01", "01"])[:3]
    return "-".join(parts) + "T00:00:00Z"


def provenance(prov: dict, study: dict | None) -> dict:
    """R5 Provenance -> R4: ``recorded`` (required in R4) from the source date, else the study's
    last update date or start, else the epoch (a conversion never reads the clock)."""
    recorded = (prov.get("recorded") or _instant(prov.get("occurredDateTime"))
                or _instant((study or {}).get("date")) or _instant(((study or {}).get("period") or {}).get("start"))
                or EPOCH)
    out = dict(prov)
    out["recorded"] = recorded
    order = ["resourceType", "id", "meta", "target", "occurredDateTime", "recorded", "activity", "agent", "entity"]
    return compact({k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order})


CONVERTERS = {"EvidenceVariable": evidence_variable, "PlanDefinition": plan_definition, "Location": location}


def to_r4(resources: list[dict]) -> list[dict]:
    """The R4 resources of one trial from its R5 resources (ResearchStudy first, Provenance last;
    the new Group, Organization and Practitioner right after the ResearchStudy). The Provenance
    targets the new resources too."""
    resources = orjson.loads(orjson.dumps(resources))  # a deep copy, several times faster than copy's
    study = next((r for r in resources if r["resourceType"] == "ResearchStudy"), None)
    eligibility = None
    if study:
        ref = ((study.get("recruitment") or {}).get("eligibility") or {}).get("reference")
        eligibility = next((r for r in resources if ref and f"{r['resourceType']}/{r['id']}" == ref), None)
    out: list[dict] = []
    extra: list[dict] = []
    for r in resources:
        rtype = r["resourceType"]
        if rtype == "ResearchStudy":
            converted = research_study(r, eligibility)
            out.append(converted[0])
            extra = converted[1:]
            out.extend(extra)
        elif rtype == "Provenance":
            prov = provenance(r, study)
            prov["target"] = prov["target"] + [{"reference": f"{x['resourceType']}/{x['id']}"} for x in extra]
            out.append(prov)
        else:
            convert = CONVERTERS.get(rtype)
            out.append(convert(r) if convert else r)
    return out
