"""Operations on studies: ``POST /ResearchStudy/$match`` (the studies a patient could join,
:mod:`fhirstudy.matching`) and the OperationDefinitions fhirstudy defines
(``GET /OperationDefinition/{id}``, ``GET /OperationDefinition``).

``$match`` is open to everyone, as searches are: it writes nothing. Its body is a ``Parameters``
resource (read as every FHIR body is: size, depth and media type checked by
:func:`fhirstudy.server.write.read_body`); a mistake in it is a 400 OperationOutcome naming the
parameter or the patient Bundle's entry.
"""
from __future__ import annotations

from datetime import date

import orjson
from flask import Blueprint, Response, current_app

from fhirstudy.errors import MethodNotAllowed, NotFound
from fhirstudy.matching import Matcher, match_operation_definition, run_match
from fhirstudy.server.routes import base_url, get_service
from fhirstudy.server.write import fhir_response, read_body

bp = Blueprint("fhir_operations", __name__)
MATCHER_EXTENSION = "fhirstudy.matcher"


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


@bp.get("/OperationDefinition/<rid>")
def operation_definition(rid: str) -> Response:
    """An OperationDefinition fhirstudy defines itself."""
    definition = match_operation_definition()
    if rid != definition["id"]:
        raise NotFound(f"OperationDefinition/{rid} is not known")
    return fhir_response(definition)


@bp.get("/OperationDefinition")
def operation_definitions() -> Response:
    """Every OperationDefinition fhirstudy defines, as a searchset (no criteria taken)."""
    base, definition = base_url(), match_operation_definition()
    return fhir_response({
        "resourceType": "Bundle", "type": "searchset", "total": 1,
        "link": [{"relation": "self", "url": f"{base}/OperationDefinition"}],
        "entry": [{"fullUrl": f"{base}/OperationDefinition/{definition['id']}", "resource": definition,
                   "search": {"mode": "match"}}]})
