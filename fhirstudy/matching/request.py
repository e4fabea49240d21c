"""The ``$match`` input: a FHIR ``Parameters`` resource -> :class:`MatchRequest`.

Parameters (the CodeX ``clinicalTrialMatchService`` operation, plus fhirstudy's own; the served
OperationDefinition, ``mappings/match-operation.json``, is the reference):

- ``trialMatchClinicalData`` (resource, a Bundle): the patient (Patient, Condition, Observation,
  MedicationStatement/Request, Procedure);
- ``zipCode`` (string) with ``travelRadius`` (string or decimal, miles; default 50), or
  ``latitude`` + ``longitude`` (decimal) with ``distance`` (Quantity, a distance unit);
- ``phase`` and ``recruitmentStatus`` (string, comma-separated; FHIR codes ``phase-2``,
  ``recruiting`` or ClinicalTrials.gov's ``PHASE2``, ``RECRUITING``); status default: recruiting
  and not yet recruiting;
- ``includeIneligible`` (boolean), ``count`` (integer, default 20, at most 500), ``date`` (the day
  ages and result windows are reckoned on; default today).

Anything else, or a value of the wrong type, is InvalidRequest naming the parameter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .. import terminology
from ..errors import InvalidRequest
from ..search import geo
from ..search.places import zip_position
from .patient import PatientFacts, read_patient

DEFAULT_COUNT, MAX_COUNT = 20, 500
DEFAULT_RADIUS_MILES = 50.0
DEFAULT_STATUSES = ("recruiting", "not-yet-recruiting")
VALUE_TYPES = {   # parameter -> the value[x] it takes
    "zipCode": ("valueString",), "travelRadius": ("valueString", "valueDecimal", "valueInteger"),
    "phase": ("valueString", "valueCode"), "recruitmentStatus": ("valueString", "valueCode"),
    "latitude": ("valueDecimal",), "longitude": ("valueDecimal",), "distance": ("valueQuantity", "valueDistance"),
    "includeIneligible": ("valueBoolean",), "count": ("valueInteger", "valuePositiveInt"), "date": ("valueDate",),
}


@dataclass
class MatchRequest:
    """What to match: the patient, where (``near``: latitude, longitude, km), which studies."""

    patient: PatientFacts
    on: date
    near: tuple[float, float, float] | None = None
    phases: tuple[str, ...] = ()
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    include_ineligible: bool = False
    count: int = DEFAULT_COUNT
    echo: list = field(default_factory=list)


def _codes(text: str, section: str, name: str) -> tuple[str, ...]:
    """FHIR codes for a comma-separated list of FHIR or ClinicalTrials.gov codes."""
    table = terminology.load_mapping("ctgov-to-fhir.json")[section]["codes"]
    known = {v["code"]: v["code"] for v in table.values()} | {k.upper(): v["code"] for k, v in table.items()}
    out = []
    for word in (w.strip() for w in text.split(",")):
        code = known.get(word) or known.get(word.upper().replace(" ", "_"))
        if code is None:
            raise InvalidRequest(f"{name}: {word!r} is not one of {', '.join(sorted(set(known.values())))}",
                                 expression=f"Parameters.parameter.where(name='{name}')")
        out.append(code)
    return tuple(dict.fromkeys(out))


def _value(parameter: dict, name: str):
    for key in VALUE_TYPES[name]:
        if key in parameter:
            return parameter[key]
    raise InvalidRequest(f"{name} takes {' or '.join(VALUE_TYPES[name])}",
                         expression=f"Parameters.parameter.where(name='{name}')")


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, not {value!r}",
                             expression=f"Parameters.parameter.where(name='{name}')") from None
    if isinstance(value, bool) or number != number or number in (float("inf"), float("-inf")):
        raise InvalidRequest(f"{name} must be a number, not {value!r}",
                             expression=f"Parameters.parameter.where(name='{name}')")
    return number


def parse_parameters(body, today: date) -> MatchRequest:
    """The request a ``Parameters`` body asks for; InvalidRequest naming what is wrong."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("$match takes a Parameters resource", expression="resourceType")
    given: dict = {}
    for n, parameter in enumerate(body.get("parameter") or []):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name != "trialMatchClinicalData" and name not in VALUE_TYPES:
            raise InvalidRequest(f"unknown parameter {name!r} (takes trialMatchClinicalData, "
                                 f"{', '.join(VALUE_TYPES)})", expression=f"Parameters.parameter[{n}]")
        if name in given:
            raise InvalidRequest(f"{name} is given twice", expression=f"Parameters.parameter[{n}]")
        given[name] = parameter.get("resource") if name == "trialMatchClinicalData" else _value(parameter, name)
    if given.get("trialMatchClinicalData") is None:
        raise InvalidRequest("trialMatchClinicalData (a Bundle with the patient's data) is required",
                             expression="Parameters.parameter")
    request = MatchRequest(read_patient(given["trialMatchClinicalData"]), today)
    if "date" in given:
        try:
            request.on = date.fromisoformat(str(given["date"]))
        except ValueError:
            raise InvalidRequest(f"date must be YYYY-MM-DD, not {given['date']!r}", expression="date") from None
    request.near = _near(given)
    if "phase" in given:
        request.phases = _codes(str(given["phase"]), "phase", "phase")
    if "recruitmentStatus" in given:
        request.statuses = _codes(str(given["recruitmentStatus"]), "overallStatus", "recruitmentStatus")
    if "includeIneligible" in given:
        if not isinstance(given["includeIneligible"], bool):
            raise InvalidRequest("includeIneligible must be true or false", expression="includeIneligible")
        request.include_ineligible = given["includeIneligible"]
    if "count" in given:
        count = given["count"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise InvalidRequest(f"count must be an integer from 1 to {MAX_COUNT}", expression="count")
        request.count = count
    request.echo = [(k, v) for k, v in given.items() if k != "trialMatchClinicalData"]
    return request


def _near(given: dict) -> tuple[float, float, float] | None:
    if "zipCode" in given:
        if "latitude" in given or "longitude" in given:
            raise InvalidRequest("give zipCode or latitude/longitude, not both", expression="zipCode")
        latitude, longitude = zip_position(str(given["zipCode"]), "zipCode")
        miles = _number(given.get("travelRadius", DEFAULT_RADIUS_MILES), "travelRadius")
        km = _km(miles, "[mi_i]", "travelRadius")
    elif "latitude" in given or "longitude" in given:
        if "latitude" not in given or "longitude" not in given:
            raise InvalidRequest("latitude and longitude go together", expression="latitude")
        latitude, longitude = _number(given["latitude"], "latitude"), _number(given["longitude"], "longitude")
        distance = given.get("distance") or {"value": geo.DEFAULT_NEAR_KM, "code": "km"}
        if not isinstance(distance, dict):
            raise InvalidRequest("distance must be a Quantity", expression="distance")
        km = _km(_number(distance.get("value"), "distance"), distance.get("code") or "km", "distance")
    else:
        if "travelRadius" in given or "distance" in given:
            raise InvalidRequest("a travel radius needs zipCode (or latitude and longitude)", expression="travelRadius")
        return None
    try:
        geo.position(latitude, longitude)
    except geo.PositionError as exc:
        raise InvalidRequest(str(exc), expression="latitude") from None
    return latitude, longitude, km


def _km(value: float, unit: str, name: str) -> float:
    try:
        return geo.to_km(value, unit)
    except geo.PositionError as exc:
        raise InvalidRequest(f"{name}: {exc}", expression=name) from None
