"""The CapabilityStatement, generated from the search-parameter registry: it claims only what works
(read, vread, history and search-type on the served types, with the parameters the registry could
compile, and the _include/_revinclude values its reference parameters allow; create, update, delete, conditional ones, transaction and batch only when writes are
enabled, i.e. a write token is configured), and the Bulk Data exports: it ``instantiates`` the
IG's bulk-data CapabilityStatement, with ``$export`` at the system level, on Group and on
ResearchStudy (fhirstudy's own OperationDefinition, ``mappings/export-operation.json``)."""
from __future__ import annotations

from flask import current_app, has_app_context

from fhirstudy import __version__
from fhirstudy.search.registry import Registry

FHIR_VERSION = "5.0.0"
FORMATS = ["json", "application/fhir+json"]
READ_INTERACTIONS = ("read", "vread", "history-instance", "history-type", "search-type")
WRITE_INTERACTIONS = ("create", "update", "delete")
WRITE_TOKEN_CONFIG = "WRITE_TOKEN"  # fhirstudy.server.auth.TOKEN_CONFIG (auth imports Flask request state)
VALIDATE_OPERATION = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
MATCH_OPERATION = {"name": "match", "definition": "https://fhirstudy.org/fhir/OperationDefinition/ResearchStudy-match",
                   "documentation": "POST a Parameters body with trialMatchClinicalData (the patient's Bundle): "
                                    "the studies the patient could join, best first, with a verdict per criterion."}
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
EXPORT_OPERATION = {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                    "documentation": "Bulk Data export of every served type (Prefer: respond-async; NDJSON files)."}
GROUP_EXPORT_OPERATION = {"name": "export",
                          "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
                          "documentation": "Bulk Data export of the studies the Group lists and what they reference."}
STUDY_EXPORT_OPERATION = {"name": "export",
                          "definition": "https://fhirstudy.org/fhir/OperationDefinition/ResearchStudy-export",
                          "documentation": "Bulk Data export of every study, what the studies reference and their "
                                           "Provenance."}
# What a Bundle posted to the base may hold (fhirstudy.server.bundle), said where clients look.
BUNDLE_DOCUMENTATION = {
    "transaction": "All or nothing: entries GET (read, or search: Type?params answers a searchset Bundle, "
                   "run after the writes), POST, PUT, DELETE, conditional ones; urn:uuid references resolved.",
    "batch": "Each entry on its own: GET (read, or search: Type?params answers a searchset Bundle), POST, PUT, "
             "DELETE, conditional ones; a failing entry is an OperationOutcome in its response.",
}
# A fixed date: the statement describes this software version, not the moment it was asked for.
STATEMENT_DATE = "2025-01-01"


def capability_statement(registry: Registry, base_url: str, writable: bool | None = None) -> dict:
    """A CapabilityStatement (R5) for the server at ``base_url``; ``writable`` (default: whether
    the current app has a write token) adds the write interactions."""
    if writable is None:
        writable = has_app_context() and bool(current_app.config.get(WRITE_TOKEN_CONFIG))
    rest = {
        "mode": "server",
        "resource": [_resource(registry, rtype, writable) for rtype in registry.served_types],
        "interaction": [{"code": code, **({"documentation": BUNDLE_DOCUMENTATION[code]}
                                          if code in BUNDLE_DOCUMENTATION else {})}
                        for code in (("transaction", "batch") if writable else ()) + ("history-system",)],
    }
    rest["operation"] = [EXPORT_OPERATION]
    if writable:
        rest["security"] = {"description": "Writes and Bulk Data exports need 'Authorization: Bearer <token>'; "
                                           "reads are open."}
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "fhirstudy",
        "kind": "instance",
        "instantiates": [BULK_DATA],
        "software": {"name": "fhirstudy", "version": __version__},
        "implementation": {"description": "fhirstudy FHIR R5 server (read, search, history"
                                          + (", write" if writable else "") + ")", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": FORMATS,
        "rest": [rest],
    }


def _resource(registry: Registry, rtype: str, writable: bool) -> dict:
    params = registry.params(rtype)
    interactions = READ_INTERACTIONS + (WRITE_INTERACTIONS if writable else ())
    resource = {
        "type": rtype,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update" if writable else "versioned",
        "readHistory": True,
        "updateCreate": writable,
        "conditionalRead": "not-match",
    }
    if writable:
        resource.update(conditionalCreate=True, conditionalUpdate=True, conditionalDelete="single")
    resource["searchInclude"] = [f"{rtype}:{code}" for code in sorted(params) if params[code].type == "reference"]
    resource["searchRevInclude"] = sorted(
        f"{other}:{code}" for other in registry.served_types
        for code, param in registry.params(other).items()
        if param.type == "reference" and (not param.target or rtype in param.target))
    resource["searchParam"] = [
        {"name": code, "definition": params[code].url, "type": params[code].type}
        for code in sorted(params)
    ]
    resource["operation"] = [VALIDATE_OPERATION] + {"ResearchStudy": [MATCH_OPERATION, STUDY_EXPORT_OPERATION],
                                                    "Group": [GROUP_EXPORT_OPERATION]}.get(rtype, [])
    return resource
