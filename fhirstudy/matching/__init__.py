"""Patient-to-trial matching ($match): which stored studies a patient could join, and why.

    Parameters body -> request.MatchRequest (patient.read_patient: the patient's facts)
      -> engine: candidates from the search service -> criteria / conditions: a verdict per
         criterion -> score -> searchset Bundle

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
from .engine import judged_studies, match
from .request import MatchRequest, parse_parameters

OPERATION_FILE = "match-operation.json"


def run_match(service, body, base: str, today: date) -> dict:
    """``$match`` of a ``Parameters`` body: the searchset Bundle (InvalidRequest for a bad body)."""
    return match(service, parse_parameters(body, today), base)


def match_operation_definition() -> dict:
    """The OperationDefinition of ``ResearchStudy/$match`` (served, and listed in the
    CapabilityStatement)."""
    return terminology.load_mapping(OPERATION_FILE)


__all__ = ["MatchRequest", "judged_studies", "match", "match_operation_definition", "parse_parameters", "run_match"]
