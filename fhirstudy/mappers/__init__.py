"""Trial -> FHIR R5 resources, one module per resource type, and the per-trial transaction Bundle.

Mappers are pure functions of the Trial: the same Trial gives the same resources, byte for byte.
Adding a resource type means one module with ``map_trial(trial) -> dict | list[dict]`` added to
``MAPPERS``.
"""
from __future__ import annotations

from ..trial import Trial
from . import evidence_variable, ids, location, plan_definition, provenance, research_study

MAPPERS = (research_study, plan_definition, evidence_variable, location)


def map_resources(trial: Trial) -> list[dict]:
    """Every FHIR resource of a trial, the ResearchStudy first and its Provenance last."""
    out: list[dict] = []
    for mapper in MAPPERS:
        result = mapper.map_trial(trial)
        out.extend(result if isinstance(result, list) else [result])
    out.append(provenance.map_resources(trial, out))
    return out


def transaction_bundle(resources: list[dict]) -> dict:
    """A transaction Bundle that PUTs each resource by id (idempotent: send it twice, same state)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": ids.full_url(r["resourceType"], r["id"]),
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        } for r in resources],
    }


def map_trial(trial: Trial) -> dict:
    """The transaction Bundle of one trial."""
    return transaction_bundle(map_resources(trial))
