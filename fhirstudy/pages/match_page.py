""""Check a patient": ``GET /ResearchStudy/$match`` asked for as HTML is the form (a textarea and
a file field for the patient's Bundle, a ZIP code and radius, "show studies the patient fails");
the form posts to the same URL (``multipart/form-data``), and the page runs exactly what
``POST /ResearchStudy/$match`` runs (:func:`fhirstudy.matching.run_match` with the app's matcher)
on a ``Parameters`` built from the fields, and shows the ranked studies with each criterion's
verdict, fit, reason and missing information.

A mistake is a 4xx page that says what is wrong, the form kept: no patient given, not JSON,
nested too deep, not a Bundle (400), and what ``$match`` refuses (400, naming the parameter or
the Bundle's entry); a body past the server's limit is the boundary's 413.
"""
from __future__ import annotations

from datetime import date

import orjson
from flask import Response, render_template, request

from fhirstudy.errors import FhirError, InvalidRequest
from fhirstudy.limits import MAX_JSON_DEPTH, check_depth
from fhirstudy.matching import run_match
from fhirstudy.matching.engine import CRITERION_URL, DISTANCE_URL, MISSING_URL
from fhirstudy.server.operations import get_matcher
from fhirstudy.server.routes import base_url

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
RADII = ("10", "25", "50", "100", "250", "500")
MILE_KM = 1.609344


def render_form() -> Response:
    """The empty form."""
    return _page({}, None)


def render_match() -> Response:
    """The form, filled in as posted, and the ``$match`` answer for its patient."""
    fields = {k: v for k, v in request.form.items()}
    try:
        bundle = run_match(get_matcher(), _parameters(fields), base_url(), date.today())
    except FhirError as error:
        return _page(fields, None, error=error.diagnostics, status=error.status)
    return _page(fields, _results(bundle, bool(fields.get("zip", "").strip())))


def _page(fields: dict, results: dict | None, error: str | None = None, status: int = 200) -> Response:
    return Response(render_template("match.html", fields=fields, results=results, error=error, radii=RADII),
                    status=status, mimetype="text/html")


def _patient_text(fields: dict) -> bytes:
    upload = request.files.get("patient_file")
    if upload is not None and upload.filename:
        data = upload.read()
        if data.strip():
            return data
    text = fields.get("patient", "")
    if not text.strip():
        raise InvalidRequest("Paste the patient's FHIR Bundle (JSON) or choose a file holding one", expression="patient")
    return text.encode("utf-8")


def _parameters(fields: dict) -> dict:
    """The ``$match`` Parameters of the form: InvalidRequest for a patient that is not a Bundle."""
    try:
        patient = orjson.loads(_patient_text(fields))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The patient data is not JSON: {exc}", expression="patient") from exc
    check_depth(patient, "patient", MAX_JSON_DEPTH)
    if not isinstance(patient, dict) or patient.get("resourceType") != "Bundle":
        kind = patient.get("resourceType") if isinstance(patient, dict) else type(patient).__name__
        raise InvalidRequest(f"The patient data must be a FHIR Bundle (resourceType Bundle), not {kind or 'an object without resourceType'}",
                             expression="patient")
    parameters = [{"name": "trialMatchClinicalData", "resource": patient}]
    zip_code = fields.get("zip", "").strip()
    if zip_code:
        parameters += [{"name": "zipCode", "valueString": zip_code},
                       {"name": "travelRadius", "valueString": fields.get("radius", "").strip() or "50"}]
    if fields.get("include_ineligible"):
        parameters.append({"name": "includeIneligible", "valueBoolean": True})
    return {"resourceType": "Parameters", "parameter": parameters}


def _results(bundle: dict, miles: bool) -> dict:
    """The searchset of ``$match`` as the page shows it: studies with score, distance, criteria."""
    studies, problems = [], []
    for entry in bundle.get("entry") or []:
        search, resource = entry.get("search") or {}, entry.get("resource") or {}
        if search.get("mode") == "outcome":
            problems += [i.get("diagnostics", "") for i in resource.get("issue") or []]
            continue
        extensions = search.get("extension") or []
        distance = next((e["valueDistance"] for e in extensions if e.get("url") == DISTANCE_URL), None)
        if distance is not None:
            km = distance.get("value", 0)
            distance = f"{km / MILE_KM:.1f} mi" if miles else f"{km:.1f} km"
        criteria = [_criterion(e) for e in extensions if e.get("url") == CRITERION_URL]
        studies.append({"id": resource.get("id"), "title": resource.get("title") or resource.get("id"),
                        "score": round(100 * (search.get("score") or 0)), "distance": distance,
                        "missing": [e.get("valueString") for e in extensions if e.get("url") == MISSING_URL],
                        "criteria": criteria,
                        "failed": sum(1 for c in criteria if c["fit"] == "fail")})
    return {"total": bundle.get("total", len(studies)), "studies": studies, "problems": problems}


def _criterion(extension: dict) -> dict:
    out: dict = {"missing": [], "evidence": []}
    for part in extension.get("extension") or []:
        key, value = part.get("url"), next((v for k, v in part.items() if k.startswith("value")), None)
        if key == "missing":
            out["missing"].append(value)
        elif key == "evidence":
            out["evidence"].append((value or {}).get("reference", ""))
        else:
            out[key] = value
    out.setdefault("fit", "unknown")
    return out
