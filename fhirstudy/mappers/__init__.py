"""Trial -> FHIR R5 resources, one module per resource type, and the per-trial transaction Bundle.

Mappers are pure functions of the Trial: the same Trial gives the same resources, byte for byte.
The resource types, their mapper modules and the bundle order are one table,
``mappings/resource-types.json`` (read by :mod:`.registry`, which says what a mapper module
declares); adding a resource type is one mapper module and one row there. Child resource ids come
from :mod:`.ids`; the R4 down-conversion is :mod:`.r4`, each type's part in its mapper module.

May import: ``fhirstudy.trial``, ``fhirstudy.terminology``, ``fhirstudy.mappings``, the standard
library and orjson; never sources, validation, store, search, server, push or cli.
"""
from __future__ import annotations

from ..trial import Trial
from . import ids
from .registry import load_mappers

MAPPERS = load_mappers()  # the mapper modules, in bundle order (ResearchStudy first, Provenance last)
RESOURCE_ORDER: tuple[str, ...] = tuple(m.RESOURCE_TYPE for m in MAPPERS)  # the R5 types, in bundle order


def map_resources(trial: Trial) -> list[dict]:
    """Every FHIR resource of a trial, in bundle order: the ResearchStudy first, its Provenance last."""
    out: list[dict] = []
    for mapper in MAPPERS:
        result = mapper.map_resources(trial, out) if hasattr(mapper, "map_resources") else mapper.map_trial(trial)
        out.extend(result if isinstance(result, list) else [result])
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
