"""The study page: ``GET /ResearchStudy/{id}`` asked for as HTML.

The study as read (the FHIR read's bytes), and what it references, read from the same store:
the protocol PlanDefinition (arms and their interventions), the eligibility EvidenceVariable (each
criterion's text beside its computable fact), the outcome measures' EvidenceVariables, the first
:data:`MAX_SITES` sites (Location: status, address, contacts; the rest through a ``Location``
search link), and the results when there are any: the Compositions whose subject is the study
(``Composition?subject=ResearchStudy/{id}``) and the Evidence of its outcome measure report.
Every resource shown links to its FHIR JSON.
"""
from __future__ import annotations

import orjson
from flask import Response, render_template
from urllib.parse import urlencode

from fhirstudy.errors import NotFound
from fhirstudy.pages import present
from fhirstudy.server.routes import get_service, get_store

MAX_SITES = 50            # sites listed on the page (a study may have hundreds): page weight
MAX_STATISTICS = 8        # statistics shown per Evidence
OUTCOME_REPORT = "OutcomeMeasureReport"


def render_study(rid: str) -> Response:
    """The page of ``ResearchStudy/{rid}`` (NotFound: the one error handler's 404, as a page)."""
    store = get_store()
    entry = store.read_entry("ResearchStudy", rid)
    if entry is None:
        raise NotFound(f"ResearchStudy/{rid} is not known")
    study = orjson.loads(entry.json)
    protocol = _read_first(study.get("protocol"), "PlanDefinition")
    eligibility = _read_first([(study.get("recruitment") or {}).get("eligibility")], "EvidenceVariable")
    site_ids = [_id(ref, "Location") for ref in study.get("site") or []]
    site_ids = [s for s in site_ids if s]
    sites = _read_many("Location", site_ids[:MAX_SITES])
    reports = _reports(rid)
    page = render_template(
        "study.html", study=study, p=present, version=entry.version, criteria=present.criteria(eligibility),
        eligibility=eligibility, arms=_arms(study, protocol), protocol=protocol,
        outcomes=_outcomes(study), sites=[sites[s] for s in site_ids[:MAX_SITES] if s in sites],
        site_count=len(site_ids), all_sites=f"/Location?{urlencode([('_has:ResearchStudy:site:_id', rid)])}",
        reports=reports, outcome_results=_outcome_results(reports))
    return Response(page, mimetype="text/html")


def _id(reference: dict | None, rtype: str) -> str | None:
    ref = (reference or {}).get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith(rtype + "/") else None


def _read_many(rtype: str, ids: list[str]) -> dict[str, dict]:
    return {rid: orjson.loads(s.json) for rid, s in get_store().read_many(rtype, ids).items()} if ids else {}


def _read_first(references: list | None, rtype: str) -> dict | None:
    for reference in references or []:
        rid = _id(reference, rtype)
        if rid:
            return _read_many(rtype, [rid]).get(rid)
    return None


def _arms(study: dict, protocol: dict | None) -> list[dict]:
    """Each arm (``comparisonGroup``) with its interventions (the protocol's action of the same linkId)."""
    actions = {a.get("linkId"): a for a in (protocol or {}).get("action") or []}
    arms = []
    for group in study.get("comparisonGroup") or []:
        action = actions.pop(group.get("linkId"), None) or {}
        arms.append({"name": group.get("name", ""), "type": present.concept_text(group.get("type")),
                     "description": group.get("description", ""), "interventions": _interventions(action)})
    for action in actions.values():   # actions of no arm (a protocol without arms)
        arms.append({"name": action.get("title", ""), "type": "", "description": action.get("description", ""),
                     "interventions": _interventions(action) or [_intervention(action)]})
    return arms


def _interventions(action: dict) -> list[dict]:
    return [_intervention(a) for a in action.get("action") or []]


def _intervention(action: dict) -> dict:
    description = action.get("description") or ""
    return {"title": action.get("title", ""), "kind": present.concept_text(action.get("code")),
            "description": "" if description == action.get("title") else description}


def _outcomes(study: dict) -> list[dict]:
    out = []
    for measure in study.get("outcomeMeasure") or []:
        kinds = [present.concept_text(t) for t in measure.get("type") or []]
        out.append({"name": measure.get("name", ""), "kind": ", ".join(k for k in kinds if k),
                    "description": measure.get("description", ""),
                    "reference": (measure.get("reference") or {}).get("reference", "")})
    return out


def _reports(rid: str) -> list[dict]:
    """The study's results reports (Compositions whose subject it is), titles and sections."""
    service = get_service()
    query = service.parse("Composition", [("subject", f"ResearchStudy/{rid}"), ("_count", "50"), ("_total", "none")])
    reports = []
    for stored in service.search(query).entries:
        composition = orjson.loads(stored.json)
        kinds = [c.get("code") for c in (composition.get("type") or {}).get("coding") or []]
        reports.append({"id": stored.id, "title": composition.get("title") or stored.id, "kinds": kinds,
                        "composition": composition})
    return reports


def _outcome_results(reports: list[dict]) -> list[dict]:
    """Per outcome measure of the outcome measure report: its Evidence, each with a few statistics."""
    report = next((r for r in reports if OUTCOME_REPORT in r["kinds"]), None)
    if report is None:
        return []
    sections = [s for s in report["composition"].get("section") or []
                if any((e.get("reference") or "").startswith("Evidence/") for e in s.get("entry") or [])]
    ids = [_id(e, "Evidence") for s in sections for e in s.get("entry") or []]
    evidence = _read_many("Evidence", [i for i in ids if i])
    out = []
    for section in sections:
        rows = []
        for reference in section.get("entry") or []:
            found = evidence.get(_id(reference, "Evidence") or "")
            if found:
                title = (found.get("title") or found["id"]).removeprefix(section.get("title", "") + ": ")
                rows.append({"id": found["id"], "title": title,
                             "statistics": [_statistic(s) for s in (found.get("statistic") or [])[:MAX_STATISTICS]]})
        out.append({"title": section.get("title", ""), "rows": rows})
    return out


def _statistic(statistic: dict) -> str:
    """One statistic in words: category, type, value and unit, and its estimates (SD, CI, p)."""
    quantity = statistic.get("quantity") or {}
    value = ""
    if "value" in quantity:
        value = f"{quantity.get('comparator', '')}{quantity['value']:g}" if isinstance(quantity["value"], float) \
            else f"{quantity.get('comparator', '')}{quantity['value']}"
        value += f" {quantity.get('unit', '')}".rstrip()
    parts = [p for p in (statistic.get("category", {}).get("text"), present.concept_text(statistic.get("statisticType")),
                         value) if p]
    for estimate in statistic.get("attributeEstimate") or []:
        q, r = estimate.get("quantity") or {}, estimate.get("range") or {}
        shown = q.get("value") if q else (f"{(r.get('low') or {}).get('value')} to {(r.get('high') or {}).get('value')}"
                                          if r else None)
        if shown is not None:
            parts.append(f"{present.concept_text(estimate.get('type'))} {shown}")
    return "; ".join(str(p) for p in parts)
