"""The CapabilityStatement, generated from the search-parameter registry: it claims only what works
(read and search-type on the served types, and the parameters the registry could compile)."""
from __future__ import annotations

from fhirstudy import __version__
from fhirstudy.search.registry import Registry

FHIR_VERSION = "5.0.0"
FORMATS = ["json", "application/fhir+json"]
INTERACTIONS = ("read", "search-type")
# A fixed date: the statement describes this software version, not the moment it was asked for.
STATEMENT_DATE = "2025-01-01"


def capability_statement(registry: Registry, base_url: str) -> dict:
    """A CapabilityStatement (R5) for the server at ``base_url``."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "fhirstudy",
        "kind": "instance",
        "software": {"name": "fhirstudy", "version": __version__},
        "implementation": {"description": "fhirstudy FHIR R5 server (read and search)", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": FORMATS,
        "rest": [{
            "mode": "server",
            "resource": [_resource(registry, rtype) for rtype in registry.served_types],
        }],
    }


def _resource(registry: Registry, rtype: str) -> dict:
    params = registry.params(rtype)
    return {
        "type": rtype,
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": False,
        "searchParam": [
            {"name": code, "definition": params[code].url, "type": params[code].type}
            for code in sorted(params)
        ],
    }
