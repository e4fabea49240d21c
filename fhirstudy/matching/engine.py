"""``ResearchStudy/$match``: the studies a patient could join, best first, each with its reasons.

1. Candidates come from the search service, as ``GET /ResearchStudy`` would find them:
   ``recruitment-status:not`` every status not asked for (a study that states none is kept: its
   status is unknown, not wrong), ``phase`` when asked, ``eligible-sex`` (a study without a sex limit admits
   both), ``site.near`` when a place is given; their eligibility EvidenceVariables come with them
   (``_include=ResearchStudy:eligibility``), a page at a time.
2. Each study is judged: its condition and the receptor status its subtype keywords ask for
   (:mod:`.conditions`), then every characteristic of its eligibility (:mod:`.criteria`). A study the patient certainly fails (an inclusion criterion not
   met, an exclusion criterion met) is left out, unless ``includeIneligible`` (then score 0).
3. The score (0..1) is the weighted share of computable criteria passed, an unknown one counting
   half, the condition :data:`CONDITION_WEIGHT` times; text-only criteria do not count. Ties keep
   the nearer study first, then the order studies were stored.
4. With a place, only sites near it count, and of those only sites whose own recruitment status
   is one of the statuses asked for (or that state none); the nearest one's distance is on the
   entry (``location-distance``).

Per criterion, ``entry.search`` carries a ``match-criterion`` extension: linkId, description,
exclusion, ``verdict`` (met / not-met / unknown: whether the criterion's statement holds for the
patient), ``fit`` (pass / fail / unknown: for an exclusion criterion, met means fail), the
patient resources that decided it and the information that is missing.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import orjson

from .. import terminology
from ..search import geo
from .conditions import judge_condition, subtype_characteristics
from .criteria import Verdict, fits, judge
from .request import MatchRequest

EXTENSION_BASE = "https://fhirstudy.org/fhir/StructureDefinition/"
CRITERION_URL = EXTENSION_BASE + "match-criterion"
MISSING_URL = EXTENSION_BASE + "match-missing"
DISTANCE_URL = "http://hl7.org/fhir/StructureDefinition/location-distance"
STATUS_SYSTEM = "http://hl7.org/fhir/research-study-status"
CONDITION_WEIGHT = 3
PAGE = 200            # studies asked of the search service at a time


@dataclass(frozen=True)
class Criterion:
    """One criterion of a study and the patient's verdict on it."""

    link_id: str
    description: str
    exclude: bool
    verdict: Verdict

    @property
    def fit(self) -> str:
        return fits(self.verdict, self.exclude)


@dataclass
class Judged:
    """A study, its criteria judged, its score and whether the patient certainly fails it."""

    study: dict
    criteria: list[Criterion]
    eligible: bool
    score: float
    distance_km: float | None = None


def judge_study(study: dict, eligibility: dict | None, request: MatchRequest) -> Judged:
    """The verdicts of ``study`` (with its eligibility EvidenceVariable) for the request's patient."""
    patient, on = request.patient, request.on
    criteria = [Criterion("condition", "Condition: " + "; ".join(
        c.get("text") or next((d.get("display", "") for d in c.get("coding", [])), "")
        for c in study.get("condition") or []), False, judge_condition(study, patient))]
    for characteristic in subtype_characteristics(study) + ((eligibility or {}).get("characteristic") or []):
        criteria.append(Criterion(characteristic.get("linkId") or "", characteristic.get("description") or "",
                                  bool(characteristic.get("exclude")), judge(characteristic, patient, on)))
    eligible = all(c.fit != "fail" for c in criteria)
    weights = [(CONDITION_WEIGHT if c.link_id == "condition" else 1, c) for c in criteria if c.verdict.computable]
    total = sum(w for w, _ in weights)
    passed = sum(w * {"pass": 1.0, "unknown": 0.5}.get(c.fit, 0.0) for w, c in weights)
    score = 0.0 if not eligible else round(passed / total, 4) if total else 0.5
    return Judged(study, criteria, eligible, score)


def _near_sites(service, request: MatchRequest) -> dict[str, float]:
    """``Location/<id>`` -> km from the place, for sites within the radius whose own status is
    one asked for or not stated."""
    latitude, longitude, km = request.near
    centre = geo.position(latitude, longitude)
    query = service.parse("Location", [("near", f"{latitude}|{longitude}|{km}|km"), ("_count", "500"),
                                       ("_total", "none")])
    out = {}
    while True:
        result = service.search(query)
        for entry in result.entries:
            location = orjson.loads(entry.json)
            statuses = {c.get("code") for ch in location.get("characteristic") or []
                        for c in ch.get("coding", []) if c.get("system") == STATUS_SYSTEM}
            point = location.get("position") or {}
            if (statuses and not statuses & set(request.statuses)) or "latitude" not in point:
                continue
            out[f"Location/{entry.id}"] = geo.great_circle_km(
                centre, geo.position(point["latitude"], point["longitude"]))
        if result.next_cursor is None:
            return out
        query.cursor = result.next_cursor


def _other_statuses(statuses: tuple[str, ...]) -> list[str]:
    table = terminology.load_mapping("ctgov-to-fhir.json")["overallStatus"]["codes"]
    return sorted({v["code"] for v in table.values()} - set(statuses))


def _candidate_params(request: MatchRequest) -> list[tuple[str, str]]:
    params = [("_count", str(PAGE)), ("_total", "none"), ("_include", "ResearchStudy:eligibility")]
    others = _other_statuses(request.statuses)
    if others:   # a study that states no recruitment status is not left out for it
        params.append(("recruitment-status:not", ",".join(others)))
    if request.phases:
        params.append(("phase", ",".join(request.phases)))
    if request.patient.gender in ("female", "male") and not request.include_ineligible:
        params.append(("eligible-sex", request.patient.gender))
    if request.near:
        latitude, longitude, km = request.near
        params.append(("site.near", f"{latitude}|{longitude}|{km}|km"))
    return params


def judged_studies(service, request: MatchRequest):
    """Every candidate study judged (a generator, a page of the search at a time)."""
    sites = _near_sites(service, request) if request.near else None
    query = service.parse("ResearchStudy", _candidate_params(request))
    while True:
        result = service.search(query)
        included = {f"{e.type}/{e.id}": e.json for e in result.included}
        for entry in result.entries:
            study = orjson.loads(entry.json)
            distance = None
            if sites is not None:
                near = [sites[s["reference"]] for s in study.get("site") or [] if s.get("reference") in sites]
                if not near:
                    continue
                distance = min(near)
            reference = ((study.get("recruitment") or {}).get("eligibility") or {}).get("reference")
            eligibility = orjson.loads(included[reference]) if reference in included else None
            judged = judge_study(study, eligibility, request)
            judged.distance_km = distance
            yield judged
        if result.next_cursor is None:
            return
        query.cursor = result.next_cursor


def match(service, request: MatchRequest, base: str) -> dict:
    """The searchset Bundle for ``request``: the ``count`` best studies, ``total`` of all kept."""
    best: list = []
    total = 0
    for order, judged in enumerate(judged_studies(service, request)):
        if not judged.eligible and not request.include_ineligible:
            continue
        total += 1
        key = (judged.score, -(judged.distance_km or 0.0), -order)
        if len(best) < request.count:
            heapq.heappush(best, (key, order, judged))
        elif key > best[0][0]:
            heapq.heapreplace(best, (key, order, judged))
    ranked = [j for _, _, j in sorted(best, key=lambda item: item[0], reverse=True)]
    entries = [_entry(j, base) for j in ranked]
    problems = request.patient.problems
    if problems:
        entries.append({"resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "processing", "diagnostics": p} for p in problems]},
            "search": {"mode": "outcome"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": total,
            "link": [{"relation": "self", "url": f"{base}/ResearchStudy/$match"}], "entry": entries}


def _criterion_extension(c: Criterion) -> dict:
    parts = [("linkId", "valueString", c.link_id), ("description", "valueString", c.description or None),
             ("exclusion", "valueBoolean", c.exclude), ("verdict", "valueCode", c.verdict.state),
             ("fit", "valueCode", c.fit), ("computable", "valueBoolean", c.verdict.computable),
             ("reason", "valueString", c.verdict.reason or None)]
    parts += [("evidence", "valueReference", {"reference": r}) for r in c.verdict.evidence]
    parts += [("missing", "valueString", m) for m in c.verdict.missing]
    return {"url": CRITERION_URL, "extension": [{"url": k, t: v} for k, t, v in parts if v is not None]}


def _entry(judged: Judged, base: str) -> dict:
    extensions = []
    if judged.distance_km is not None:
        extensions.append({"url": DISTANCE_URL, "valueDistance": {
            "value": round(judged.distance_km, 1), "unit": "km", "system": "http://unitsofmeasure.org",
            "code": "km"}})
    missing = dict.fromkeys(m for c in judged.criteria for m in c.verdict.missing if c.verdict.computable)
    extensions += [{"url": MISSING_URL, "valueString": m} for m in missing]
    extensions += [_criterion_extension(c) for c in judged.criteria]
    study = judged.study
    return {"fullUrl": f"{base}/ResearchStudy/{study['id']}", "resource": study,
            "search": {"extension": extensions, "mode": "match", "score": judged.score}}
