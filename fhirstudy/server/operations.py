"""Operations on studies: ``POST /ResearchStudy/$match`` (the studies a patient could join,
:mod:`fhirstudy.matching`), and the definitions fhirstudy publishes: its OperationDefinitions
(``GET /OperationDefinition/{id}``, ``GET /OperationDefinition``: ``$match``'s and
``ResearchStudy/$export``'s) and the StructureDefinitions of
the extensions it writes (``GET /StructureDefinition/{id}``, ``GET /StructureDefinition``;
``mappings/structure-definitions-local.json``).

``$match`` is open to everyone, as searches are: it writes nothing. Its body is a ``Parameters``
resource (read as every FHIR body is: size, depth and media type checked by
:func:`fhirstudy.server.write.read_body`); a mistake in it is a 400 OperationOutcome naming the
parameter or the patient Bundle's entry.
"""
from __future__ import annotations

from datetime import date

import orjson
from flask import Blueprint, Response, current_app

from fhirstudy import mappings
from fhirstudy.errors import MethodNotAllowed, NotFound
from fhirstudy.matching import Matcher, match_operation_definition, run_match
from fhirstudy.server.routes import base_url, get_service
from fhirstudy.server.write import fhir_response, read_body

bp = Blueprint("fhir_operations", __name__)
MATCHER_EXTENSION = "fhirstudy.matcher"
STRUCTURE_DEFINITIONS = "structure-definitions-local.json"
EXPORT_OPERATION = "export-operation.json"   # ResearchStudy/$export (fhirstudy.server.bulk)


def get_matcher() -> Matcher:
    """The app's matcher (its study profiles kept between requests), made on first use for the
    app's search service."""
    matcher = current_app.extensions.get(MATCHER_EXTENSION)
    if matcher is None or matcher.service is not get_service():
        matcher = current_app.extensions[MATCHER_EXTENSION] = Matcher(get_service())
    return matcher


@bp.post("/ResearchStudy/$match")
def match() -> Response:
    """The searchset of studies for the patient in the body's ``trialMatchClinicalData``."""
    return fhir_response(orjson.dumps(run_match(get_matcher(), read_body("Parameters"), base_url(), date.today())))


@bp.get("/ResearchStudy/$match")
def match_get() -> Response:
    """``$match`` needs a Bundle, which a query string cannot carry."""
    raise MethodNotAllowed("ResearchStudy/$match takes a Parameters body: use POST")


def _definitions(kind: str) -> list[dict]:
    if kind == "OperationDefinition":
        return [match_operation_definition(), mappings.load(EXPORT_OPERATION)]
    return mappings.load(STRUCTURE_DEFINITIONS)["definitions"]


@bp.get("/OperationDefinition/<rid>", defaults={"kind": "OperationDefinition"})
@bp.get("/StructureDefinition/<rid>", defaults={"kind": "StructureDefinition"})
def definition(kind: str, rid: str) -> Response:
    """A definition fhirstudy publishes."""
    for found in _definitions(kind):
        if found["id"] == rid:
            return fhir_response(found)
    raise NotFound(f"{kind}/{rid} is not known")


@bp.get("/OperationDefinition", defaults={"kind": "OperationDefinition"})
@bp.get("/StructureDefinition", defaults={"kind": "StructureDefinition"})
def definitions(kind: str) -> Response:
    """Every definition of ``kind`` fhirstudy publishes, as a searchset (no criteria taken)."""
    base, found = base_url(), _definitions(kind)
    return fhir_response({
        "resourceType": "Bundle", "type": "searchset", "total": len(found),
        "link": [{"relation": "self", "url": f"{base}/{kind}"}],
        "entry": [{"fullUrl": f"{base}/{kind}/{d['id']}", "resource": d, "search": {"mode": "match"}}
                  for d in found]})
