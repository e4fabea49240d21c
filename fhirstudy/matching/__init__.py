"""Patient-to-trial matching ($match): which stored studies a patient could join, and why.

    Parameters body -> request.MatchRequest (patient.read_patient: the patient's facts)
      -> engine.Matcher: candidate searches -> profile (per study version, cached) screened by
         criteria / conditions -> the best judged in full -> searchset Bundle

The room reads stored FHIR (ResearchStudy, its eligibility EvidenceVariable, Location) and the
patient's Bundle; it knows nothing of Flask or SQL (the search service it is given does the
searching). What it reads in a patient's data (codes, units, windows) is data in
``fhirstudy/mappings/`` (``match-patient.json``, ``match-policy.json``, ``eligibility-facts.json``).
The room may import only the foundation (errors, limits, config, mappings, terminology) and
``fhirstudy.search`` (places and distances).
"""
from __future__ import annotations

from datetime import date

from .. import terminology
from .engine import Matcher, judge_study
from .request import MatchRequest, parse_parameters

OPERATION_FILE = "match-operation.json"


def run_match(matcher, body, base: str, today: date) -> dict:
    """``$match`` of a ``Parameters`` body with ``matcher`` (a :class:`Matcher`, or a search
    service to make a fresh one for): the searchset Bundle (InvalidRequest for a bad body)."""
    if not isinstance(matcher, Matcher):
        matcher = Matcher(matcher)
    return matcher.match(parse_parameters(body, today), base)


def match_operation_definition() -> dict:
    """The OperationDefinition of ``ResearchStudy/$match`` (served, and listed in the
    CapabilityStatement)."""
    return terminology.load_mapping(OPERATION_FILE)


__all__ = ["MatchRequest", "Matcher", "judge_study", "match_operation_definition", "parse_parameters", "run_match"]
